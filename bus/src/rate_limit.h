// Rate limits as a generic cell rate algorithm (GCRA): a token bucket kept in one word, the
// "theoretical arrival time" (TAT). A delivery is allowed while TAT - now <= (burst - 1) ×
// interval, and each one raises TAT by the interval (from now, if TAT lies in the past). One word
// changed by CAS makes the bucket lock free and shareable: a group's members take from one bucket
// in shared memory, and a member that dies mid-take leaves the word whole.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace shmbus::detail {

// 0 if a delivery may happen now (and it is counted), else how many ns until one may.
// `now` is CLOCK_MONOTONIC, which every process on the host shares.
[[nodiscard]] inline uint64_t take_token(std::atomic<uint64_t>& tat, uint64_t interval_ns, uint32_t burst,
                                         uint64_t now) noexcept {
    const uint64_t allowance = uint64_t(std::max<uint32_t>(burst, 1) - 1) * interval_ns;
    // relaxed: the word orders nothing else; the CAS alone decides who took the token.
    uint64_t seen = tat.load(std::memory_order_relaxed);
    for (;;) {
        const uint64_t base = std::max(seen, now);
        if (base - now > allowance) return base - now - allowance;
        if (tat.compare_exchange_weak(seen, base + interval_ns, std::memory_order_relaxed)) return 0;
    }
}

}  // namespace shmbus::detail
