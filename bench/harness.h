// shmbus-bench harness: partner processes pinned to cores, a cycle timer, exact percentiles,
// and a small message format whose checksum each receiver verifies inside the timed loop.
#pragma once

#include <benchmark/benchmark.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace bench {

// Marks a run failed. Google Benchmark 1.7 aborts the whole program when one repetition reports
// fewer iterations than the others, which a SkipWithError before the timing loop does: so the
// loop is drained first (a failed run is left out of the aggregates anyway).
// One stream's outcome, apart from the benchmark that reports it (a Paired run alternates two).
struct StreamRate {
    std::string error;  // empty: it ran
    double secs = 0;    // first publish to last receive
    uint64_t received = 0;
    uint64_t lost = 0;
    [[nodiscard]] double per_second() const { return secs > 0 ? double(received) / secs : 0; }
};

inline void fail_run(benchmark::State& state, const std::string& why) {
    for (auto _ : state) state.SetIterationTime(0);
    state.SkipWithError(why.c_str());
}

// A stream's figures as every throughput benchmark reports them: per consumer, with what was lost.
inline void report_stream(benchmark::State& state, const StreamRate& o, std::size_t size, int consumers,
                          uint64_t expected_per_consumer) {
    if (!o.error.empty()) return fail_run(state, o.error);
    for (auto _ : state) state.SetIterationTime(o.secs);
    const double per_consumer = double(o.received) / consumers;
    state.counters["msgs_per_s"] = per_consumer / o.secs;
    state.counters["bytes_per_s"] = per_consumer * double(size) / o.secs;
    state.counters["lost"] = double(o.lost);
    state.counters["expected"] = double(expected_per_consumer);
}

inline int cpu_count() { return int(std::thread::hardware_concurrency()); }

// Pins the caller to `cpu` modulo the number of CPUs; silently a no-op where not allowed.
inline void pin_to_cpu(int cpu) {
    const int n = cpu_count();
    if (n <= 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % n, &set);
    sched_setaffinity(0, sizeof set, &set);
}

// Cycle-counter timer calibrated against steady_clock once per process.
class Clock {
public:
    static uint64_t ticks() {
#if defined(__x86_64__)
        unsigned aux;
        return __rdtscp(&aux);
#else
        return uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
    }
    static double ns_per_tick() {
        static const double v = calibrate();
        return v;
    }

private:
    static double calibrate() {
#if defined(__x86_64__)
        const auto t0 = std::chrono::steady_clock::now();
        const uint64_t c0 = ticks();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const uint64_t c1 = ticks();
        const auto t1 = std::chrono::steady_clock::now();
        return double(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()) / double(c1 - c0);
#else
        return 1.0;
#endif
    }
};

struct Percentiles {
    double p50, p99, p999, max;
};

// Exact percentiles of every sample (samples in ticks; result in ns; `scale` halves a round trip).
inline Percentiles percentiles(std::vector<uint64_t>& samples, double scale) {
    if (samples.empty()) return {0, 0, 0, 0};
    std::sort(samples.begin(), samples.end());
    const double k = Clock::ns_per_tick() * scale;
    auto at = [&](double q) { return double(samples[std::min(samples.size() - 1, std::size_t(q * double(samples.size())))]) * k; };
    return {at(0.50), at(0.99), at(0.999), double(samples.back()) * k};
}

// Message format: [seq u64][checksum u64][filler...]. 8-byte messages carry only seq.
inline uint64_t mix(uint64_t x) {
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 29);
}
inline void stamp(std::span<std::byte> msg, uint64_t seq) {
    std::memcpy(msg.data(), &seq, 8);
    if (msg.size() >= 16) {
        const uint64_t c = mix(seq ^ msg.size());
        std::memcpy(msg.data() + 8, &c, 8);
    }
}
inline bool verify(std::span<const std::byte> msg, uint64_t seq, std::size_t size) {
    if (msg.size() != size) return false;
    uint64_t s;
    std::memcpy(&s, msg.data(), 8);
    if (s != seq) return false;
    if (size < 16) return true;
    uint64_t c;
    std::memcpy(&c, msg.data() + 8, 8);
    return c == mix(seq ^ size);
}
inline uint64_t seq_of(std::span<const std::byte> msg) {
    uint64_t s = 0;
    if (msg.size() >= 8) std::memcpy(&s, msg.data(), 8);
    return s;
}
inline constexpr uint64_t kStop = ~0ull;

// A forked partner that runs `body` on its own core (with cpu -1: unpinned) and exits with its
// return value.
class Partner {
public:
    Partner() = default;
    Partner(int cpu, const std::function<int()>& body) {
        pid_ = fork();
        if (pid_ == 0) {
            sigset_t chld;  // a partner's own children (none today) would want SIGCHLD as usual
            sigemptyset(&chld);
            sigaddset(&chld, SIGCHLD);
            sigprocmask(SIG_UNBLOCK, &chld, nullptr);
            if (cpu >= 0) pin_to_cpu(cpu);  // -1: wherever the scheduler puts it
            int rc = 1;
            try {
                rc = body();
            } catch (...) {
            }
            _exit(rc);
        }
    }
    Partner(Partner&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
    ~Partner() {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    // Exit code, or -1 if it had to be killed after `timeout`. Sleeps in sigtimedwait until a
    // child exits (SIGCHLD is blocked by block_sigchld()), so the waiting parent never wakes up
    // on a core where a partner spins.
    int join(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        int status = 0;
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        while (waitpid(pid_, &status, WNOHANG) == 0) {
            const auto left = deadline - std::chrono::steady_clock::now();
            if (left <= std::chrono::nanoseconds::zero()) {
                kill(pid_, SIGKILL);
                waitpid(pid_, &status, 0);
                pid_ = -1;
                return -1;
            }
            const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
            timespec ts{time_t(ns / 1'000'000'000), long(ns % 1'000'000'000)};
            sigtimedwait(&chld, nullptr, &ts);
        }
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

private:
    pid_t pid_ = -1;
};

// Called once at start: SIGCHLD stays pending for Partner::join's sigtimedwait.
inline void block_sigchld() {
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, nullptr);
}

// Anonymous shared memory that survives fork: the floors' and raw ring's shared state.
template <class T>
T* shared_object() {
    void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : new (p) T{};
}
template <class T>
void release_shared(T* p) {
    if (p) munmap(p, sizeof(T));
}

// A one-shot go/ready signal between processes (a pipe; byte counts are the signal).
class Signal {
public:
    Signal() {
        if (pipe(fds_) != 0) fds_[0] = fds_[1] = -1;
    }
    ~Signal() {
        close(fds_[0]);
        close(fds_[1]);
    }
    void post(uint8_t v = 1) { (void)!write(fds_[1], &v, 1); }
    uint8_t wait() {
        uint8_t v = 0;
        (void)!read(fds_[0], &v, 1);
        return v;
    }

private:
    int fds_[2];
};

}  // namespace bench
