// A driver for the fuzz targets in builds without libFuzzer (GCC, the test suite): runs every file
// of a corpus directory, then random mutations of them (byte flips, inserts, truncations, splices)
// for a bounded time from a fixed seed, so a run is repeatable. A crash or a sanitizer report
// fails the test; clang builds link the same targets with -fsanitize=fuzzer instead
// (scripts/fuzz.sh).
//   fuzz_<target> CORPUS_DIR [SECONDS] [SEED]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr uint8_t kInteresting[] = {0, 1, 0x1f, 0x20, 0x7f, 0x80, 0xff};

std::vector<std::vector<uint8_t>> load_corpus(const std::filesystem::path& dir) {
    std::vector<std::vector<uint8_t>> corpus{{}};  // the empty input is always tried
    if (!std::filesystem::is_directory(dir)) return corpus;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        std::ifstream in(e.path(), std::ios::binary);
        corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    return corpus;
}

std::vector<uint8_t> mutate(const std::vector<std::vector<uint8_t>>& corpus, std::mt19937_64& rng) {
    std::vector<uint8_t> in = corpus[rng() % corpus.size()];
    const int edits = 1 + int(rng() % 8);
    for (int e = 0; e < edits; ++e) {
        switch (rng() % 5) {
            case 0:  // flip a byte
                if (!in.empty()) in[rng() % in.size()] ^= uint8_t(1u << (rng() % 8));
                break;
            case 1:  // set a byte to an interesting value
                if (!in.empty()) in[rng() % in.size()] = kInteresting[rng() % std::size(kInteresting)];
                break;
            case 2:  // insert random bytes
                for (int n = int(rng() % 8); n > 0; --n) in.insert(in.begin() + long(in.empty() ? 0 : rng() % (in.size() + 1)), uint8_t(rng()));
                break;
            case 3:  // truncate
                if (!in.empty()) in.resize(rng() % in.size());
                break;
            default: {  // splice in part of another input
                const auto& other = corpus[rng() % corpus.size()];
                if (other.empty()) break;
                const std::size_t from = rng() % other.size();
                in.insert(in.end(), other.begin() + long(from), other.end());
            }
        }
    }
    return in;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR [SECONDS] [SEED]\n", argv[0]);
        return 2;
    }
    const double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
    std::mt19937_64 rng(argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 20261128);
    const auto corpus = load_corpus(argv[1]);
    for (const auto& input : corpus) LLVMFuzzerTestOneInput(input.data(), input.size());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    uint64_t runs = corpus.size();
    while (std::chrono::steady_clock::now() < deadline) {
        const auto input = mutate(corpus, rng);
        LLVMFuzzerTestOneInput(input.data(), input.size());
        ++runs;
    }
    std::printf("%s: %llu inputs, no crash\n", argv[0], (unsigned long long)runs);
    return 0;
}
