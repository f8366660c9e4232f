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

// A reader's side of a bucket: takes a token before a delivery and keeps one it took for a
// delivery that did not happen (the record was taken by another member, say) for the next; after
// a refusal, says when the next token comes. The bucket word itself is the caller's: a group's
// lives in its block, a subscription's in the subscription.
class RateGate {
public:
    RateGate() noexcept = default;
    RateGate(uint64_t interval_ns, uint32_t burst) noexcept : interval_ns_(interval_ns), burst_(burst) {}

    [[nodiscard]] bool take(std::atomic<uint64_t>& tat, uint64_t now) noexcept {
        if (interval_ns_ == 0 || has_token_) return true;
        if (const uint64_t wait = take_token(tat, interval_ns_, burst_, now); wait != 0) {
            ready_ns_ = now + wait;
            return false;
        }
        has_token_ = true;
        return true;
    }
    [[nodiscard]] bool limited() const noexcept { return interval_ns_ != 0; }
    void spend() noexcept { has_token_ = false; }   // the delivery happened
    void new_poll() noexcept { ready_ns_ = 0; }      // forget the last poll's refusal
    // When the next token comes (CLOCK_MONOTONIC) if this poll was refused one; 0 otherwise.
    [[nodiscard]] uint64_t ready_ns() const noexcept { return ready_ns_; }

private:
    uint64_t interval_ns_ = 0;  // 0: unlimited
    uint32_t burst_ = 1;
    bool has_token_ = false;
    uint64_t ready_ns_ = 0;
};

}  // namespace shmbus::detail
