// Publish timestamps (CLOCK_REALTIME nanoseconds) without a clock_gettime per message.
//
// clock_gettime costs 15-25 ns on bare metal and 64 ns on the VMs we measure on; a publish is
// meant to cost little more than a cache-line transfer. Where the TSC is invariant
// (constant_tsc and nonstop_tsc), a WallClock reads it (__rdtsc) and converts with a process-wide
// rate, re-anchoring on clock_gettime every couple of milliseconds of ticks and refining its
// rate over an ever longer baseline, so it stays within a microsecond of CLOCK_REALTIME and
// converges to a few nanoseconds. Elsewhere it simply calls clock_gettime.
#pragma once

#include <cstdint>

namespace shmbus::detail {

class WallClock {
public:
    WallClock() noexcept;
    [[nodiscard]] uint64_t now_ns() noexcept {
#if defined(__x86_64__)
        if (tsc_ok_) {
            const uint64_t t = __builtin_ia32_rdtsc();
            const uint64_t since = t - anchor_tsc_;  // huge if the TSC read went backwards: re-anchor
            if (since > reanchor_ticks_) return reanchor();
            return anchor_ns_ + scaled(since);
        }
#endif
        return system_ns();
    }
    [[nodiscard]] static uint64_t system_ns() noexcept;  // clock_gettime(CLOCK_REALTIME)

private:
    // Ticks to nanoseconds in fixed point (32 fractional bits): an integer multiply instead of two
    // conversions through double, which cost as much as the rdtsc. `ticks` is at most
    // reanchor_ticks_ (about 2 ms), so the product stays below 2^54.
    static constexpr unsigned kScaleBits = 32;
    [[nodiscard]] uint64_t scaled(uint64_t ticks) const noexcept { return (ticks * ns_per_tick_fixed_) >> kScaleBits; }
    void set_rate(double ns_per_tick) noexcept {
        ns_per_tick_ = ns_per_tick;
        ns_per_tick_fixed_ = uint64_t(ns_per_tick * double(uint64_t{1} << kScaleBits));
    }
    uint64_t reanchor() noexcept;  // a fresh (tsc, realtime) pair; returns the time now
    bool tsc_ok_ = false;
    double ns_per_tick_ = 1.0;
    uint64_t ns_per_tick_fixed_ = uint64_t{1} << kScaleBits;
    uint64_t reanchor_ticks_ = 0;
    uint64_t anchor_tsc_ = 0, anchor_ns_ = 0;
    uint64_t first_tsc_ = 0, first_ns_ = 0;
};

}  // namespace shmbus::detail
