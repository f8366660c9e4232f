#include "python_peers.h"

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "harness.h"
#include "links.h"

namespace bench {
namespace {

// Runs peers.py for one transport and mode; its one JSON line, or an object with "error".
nlohmann::json run_peers(const std::string& transport, const std::string& mode) {
    // timeout(1): a peer that hangs fails its run instead of the whole benchmark.
    const std::string cmd = "PYTHONPATH='" SHMBUS_BENCH_PYTHON_DIR "' timeout 300 '" SHMBUS_BENCH_PYTHON "' '" SHMBUS_BENCH_PEERS_SCRIPT
                            "' --transport " + transport + " --mode " + mode + " --dir '" + shmbus_dir() + "' 2>&1";
    std::unique_ptr<FILE, int (*)(FILE*)> out(popen(cmd.c_str(), "r"), pclose);
    if (!out) return {{"error", "cannot run " SHMBUS_BENCH_PYTHON}};
    std::string text;
    std::array<char, 4096> buf{};
    while (std::fgets(buf.data(), int(buf.size()), out.get())) text += buf.data();
    const auto last = text.find_last_of('{');
    if (last != std::string::npos) {
        auto j = nlohmann::json::parse(text.substr(last), nullptr, false);
        if (!j.is_discarded()) return j;
    }
    return {{"error", "peers.py said: " + text.substr(0, 400)}};
}

void python_run(benchmark::State& state, const std::string& transport, const std::string& mode) {
    std::string why;
    if (!ensure_shmbusd(why)) return fail_run(state, why);
    const nlohmann::json r = run_peers(transport, mode);
    if (r.contains("error")) return fail_run(state, r["error"].get<std::string>());
    if (r.contains("skipped")) return fail_run(state, "skipped: " + r["skipped"].get<std::string>());
    for (auto _ : state) state.SetIterationTime(mode == "latency" ? r["p50_ns"].get<double>() / 1e9 : 1.0 / r["msgs_per_s"].get<double>());
    if (mode == "latency") {
        state.counters["p50_ns"] = r["p50_ns"].get<double>();
        state.counters["p99_ns"] = r["p99_ns"].get<double>();
    } else {
        state.counters["msgs_per_s"] = r["msgs_per_s"].get<double>();
    }
}

}  // namespace

std::vector<std::string> missing_python_peers() {
    if (!std::filesystem::exists(SHMBUS_BENCH_PYTHON_DIR "/shmbus")) return {"Python: the shmbus module was not built"};
    return {};
}

void register_python_benchmarks() {
    if (!missing_python_peers().empty()) return;
    for (const char* t : {"shmbus", "shmbus_batch", "mp_queue", "mp_pipe", "zmq_ipc", "redis"})
        benchmark::RegisterBenchmark(("Python/" + std::string(t) + "/64/throughput").c_str(),
                                     [t](benchmark::State& st) { python_run(st, t, "throughput"); })
            ->Iterations(1)
            ->UseManualTime()
            ->Unit(benchmark::kNanosecond);
    for (const char* t : {"shmbus", "shmbus_sleep", "mp_queue", "mp_pipe", "zmq_ipc", "redis"})
        benchmark::RegisterBenchmark(("Python/" + std::string(t) + "/64/latency").c_str(),
                                     [t](benchmark::State& st) { python_run(st, t, "latency"); })
            ->Iterations(1)
            ->UseManualTime()
            ->Unit(benchmark::kNanosecond);
}

}  // namespace bench
