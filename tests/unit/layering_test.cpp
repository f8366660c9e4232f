// The folders of bus/src and what each may include (docs/architecture.md, "What may include
// what"): read from the sources, so a new include that crosses a line fails here, not in review.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

const fs::path kRoot = fs::path(SHMBUS_SOURCE_DIR);

// The folders of bus/src each folder may include (besides itself and the public headers).
const std::map<std::string, std::set<std::string>> kAllowed = {
    {"core", {}},
    {"record", {}},
    {"archive", {"core"}},
    {"publish", {"core", "control", "groups"}},
    {"groups", {"core", "record", "publish"}},
    {"read", {"core", "record", "control", "groups", "archive"}},
    {"control", {"core", "record", "archive", "publish", "read", "groups"}},
    {"supervisor", {"core", "record", "archive", "publish", "read", "groups", "control"}},
    {"request", {"core", "record", "publish", "read", "groups", "control"}},
    {"c_api", {}},  // the C API is built on the public C++ API alone
};

// The first path component of each quoted include in `file`.
std::vector<std::string> included_folders(const fs::path& file) {
    std::ifstream in(file);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) {
        const auto hash = line.find_first_not_of(" \t");
        if (hash == std::string::npos || line.compare(hash, 8, "#include") != 0) continue;
        const auto quote = line.find('"', hash);
        const auto slash = quote == std::string::npos ? quote : line.find('/', quote);
        if (slash != std::string::npos) out.push_back(line.substr(quote + 1, slash - quote - 1));
    }
    return out;
}

std::vector<fs::path> sources_under(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file() && (e.path().extension() == ".h" || e.path().extension() == ".cpp")) out.push_back(e.path());
    return out;
}

std::string crossings(const std::vector<std::string>& found) {
    std::string all;
    for (const auto& f : found) all += "  " + f + "\n";
    return all;
}

TEST(Layering, EachFolderOfTheLibraryIncludesOnlyWhatItMay) {
    std::vector<std::string> found;
    std::size_t files = 0;
    for (const auto& [folder, allowed] : kAllowed) {
        for (const auto& file : sources_under(kRoot / "bus/src" / folder)) {
            ++files;
            for (const auto& inc : included_folders(file))
                if (inc != folder && inc != "shmbus" && allowed.count(inc) == 0)
                    found.push_back(fs::relative(file, kRoot).string() + " includes " + inc + "/");
        }
    }
    EXPECT_GT(files, 40u);
    EXPECT_TRUE(found.empty()) << crossings(found);
}

TEST(Layering, EveryFolderOfTheLibraryIsKnown) {
    for (const auto& e : fs::directory_iterator(kRoot / "bus/src")) {
        if (!e.is_directory()) continue;
        EXPECT_EQ(kAllowed.count(e.path().filename().string()), 1u) << e.path();
    }
}

// Public headers are all an application sees; the clients are applications.
TEST(Layering, PublicHeadersAndClientsIncludeNothingInternal) {
    std::vector<std::string> found;
    for (const char* dir : {"bus/include", "clients", "examples", "bindings"}) {
        for (const auto& file : sources_under(kRoot / dir)) {
            for (const auto& inc : included_folders(file))
                if (kAllowed.count(inc) != 0) found.push_back(fs::relative(file, kRoot).string() + " includes " + inc + "/");
        }
    }
    EXPECT_TRUE(found.empty()) << crossings(found);
}

}  // namespace
