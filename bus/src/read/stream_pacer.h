// How long a spinning reader waits, after catching up, before it polls again: nothing in a sparse
// flow of messages, up to SubscribeOptions::stream_backoff in a dense stream (docs/architecture.md,
// "Waiting"). Reader-side only: nothing shared changes.
//
// Why: a reader that has caught up polls the very line its publisher is writing next. In a dense
// stream every such poll takes the line out of the publisher's cache while it writes the record
// (header, payload, commit word), so the line crosses between the cores two or three times per
// message and both sides slow down (64 B at a 16 MiB ring: 14-15 M messages a second against 21-24
// M with the pacing when the cores share a cache, 5-7 M against 14.5-15 M when they do not).
// Waiting a few microseconds lets the publisher write a run of records alone, which the reader
// then takes in one poll. A ping-pong never backs off: each poll finds one message, which is how a
// sparse flow is told from a stream.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "core/futex.h"

namespace shmbus::detail {

class StreamPacer {
public:
    // A poll that found messages within this many empty polls after catching up found a stream...
    static constexpr uint32_t kDensePolls = 3;
    // ...if they came at least this often during the wait before it (5 M messages a second): a
    // slower flow lets the wait shrink again, so that a burst leaves no long wait behind.
    static constexpr uint64_t kDenseGapNs = 200;
    // One that waited this many empty polls or more found none: the pacing starts over.
    static constexpr uint32_t kQuietPolls = 16;
    static constexpr uint64_t kFirstBackoffNs = 64;

    explicit StreamPacer(uint64_t max_backoff_ns) noexcept : max_ns_(max_backoff_ns) {}

    [[nodiscard]] uint64_t backoff_ns() const noexcept { return backoff_ns_; }

    // After a poll found the ring empty, before the reader spins on it: the current backoff, but
    // never past `limit_ns` (what is left of the caller's timeout). Returns the clock when the wait
    // began, 0 when it did not wait, so that the caller's deadline counts from the same reading.
    [[nodiscard]] uint64_t wait(uint64_t limit_ns) const noexcept {
        if (backoff_ns_ == 0) return 0;
        const uint64_t began = monotonic_ns();
        const uint64_t until = began + std::min(backoff_ns_, limit_ns);
        do {
            for (int i = 0; i < 4; ++i) cpu_relax();
        } while (monotonic_ns() < until);
        return began;
    }

    // The poll after `empty_polls` empty ones delivered `count` messages, of at most `max`.
    void arrived(uint32_t empty_polls, std::size_t count, std::size_t max) noexcept {
        if (count >= max) return;  // more may be waiting: the backoff is long enough, keep it
        if (count >= 2 && empty_polls < kDensePolls && count * kDenseGapNs >= backoff_ns_) {
            backoff_ns_ = std::min(max_ns_, backoff_ns_ == 0 ? kFirstBackoffNs : backoff_ns_ * 2);
        } else if (empty_polls >= kQuietPolls) {
            backoff_ns_ = 0;
        } else {
            backoff_ns_ = backoff_ns_ / 2 < kFirstBackoffNs ? 0 : backoff_ns_ / 2;
        }
    }

    // The reader spun out (it sleeps, or its timeout passed): no stream.
    void went_quiet() noexcept { backoff_ns_ = 0; }

private:
    uint64_t max_ns_;
    uint64_t backoff_ns_ = 0;
};

}  // namespace shmbus::detail
