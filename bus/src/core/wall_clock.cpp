#include "core/wall_clock.h"

#include <cstdint>
#include <ctime>
#include <fstream>
#include <mutex>
#include <string>

namespace shmbus::detail {
namespace {

constexpr uint64_t kReanchorNs = 2'000'000;     // extrapolate at most 2 ms of ticks
constexpr uint64_t kRefineAfterNs = 50'000'000;  // refine the rate once the baseline is 50 ms

struct TscRate {
    bool ok = false;
    double ns_per_tick = 1.0;
};

bool invariant_tsc() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("flags", 0) == 0)
            return line.find(" constant_tsc") != std::string::npos && line.find(" nonstop_tsc") != std::string::npos;
    return false;
}

#if defined(__x86_64__)
// One (tsc, CLOCK_REALTIME) pair, taken with the TSC read on both sides of clock_gettime so a
// preemption in between cannot skew it: the tightest of a few attempts wins.
struct Pair {
    uint64_t tsc, ns;
};
Pair read_pair() {
    Pair best{0, 0};
    uint64_t best_width = UINT64_MAX;
    for (int i = 0; i < 5; ++i) {
        const uint64_t t0 = __builtin_ia32_rdtsc();
        const uint64_t ns = WallClock::system_ns();
        const uint64_t t1 = __builtin_ia32_rdtsc();
        if (t1 >= t0 && t1 - t0 < best_width) {
            best_width = t1 - t0;
            best = {t0 + (t1 - t0) / 2, ns};
        }
    }
    return best;
}
#endif

// Once per process, about 1 ms: the TSC rate against CLOCK_REALTIME.
TscRate calibrate() {
    TscRate r;
#if defined(__x86_64__)
    if (!invariant_tsc()) return r;
    const Pair a = read_pair();
    Pair b;
    do b = read_pair();
    while (b.ns >= a.ns && b.ns - a.ns < 1'000'000);
    if (b.tsc <= a.tsc || b.ns <= a.ns) return r;
    r.ns_per_tick = double(b.ns - a.ns) / double(b.tsc - a.tsc);
    r.ok = r.ns_per_tick > 0.01 && r.ns_per_tick < 100.0;
#endif
    return r;
}

const TscRate& process_rate() {
    static std::once_flag once;
    static TscRate rate;
    std::call_once(once, [] { rate = calibrate(); });
    return rate;
}

}  // namespace

uint64_t WallClock::system_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

WallClock::WallClock() noexcept {
    const TscRate& r = process_rate();
    tsc_ok_ = r.ok;
    set_rate(r.ns_per_tick);
    reanchor_ticks_ = uint64_t(double(kReanchorNs) / ns_per_tick_);
}

uint64_t WallClock::reanchor() noexcept {
#if defined(__x86_64__)
    const Pair p = read_pair();
    anchor_ns_ = p.ns;
    anchor_tsc_ = p.tsc;
    if (first_ns_ == 0 || anchor_tsc_ < first_tsc_ || anchor_ns_ < first_ns_) {
        first_ns_ = anchor_ns_;
        first_tsc_ = anchor_tsc_;
    } else if (anchor_ns_ - first_ns_ > kRefineAfterNs) {
        set_rate(double(anchor_ns_ - first_ns_) / double(anchor_tsc_ - first_tsc_));  // a longer baseline
    }
    const uint64_t since = __builtin_ia32_rdtsc() - anchor_tsc_;
    return anchor_ns_ + (since <= reanchor_ticks_ ? scaled(since) : 0);
#else
    return system_ns();
#endif
}

}  // namespace shmbus::detail
