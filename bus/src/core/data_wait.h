// One sleep on a topic's data futex, the way every subscriber sleeps: counted in data_waiters, so
// that a publisher that commits meanwhile wakes it (PublisherCore::commit_record).
#pragma once

#include <atomic>

#include "core/futex.h"
#include "core/segment.h"
#include "shmbus/subscriber.h"

namespace shmbus::detail {

// Polls once after announcing the wait and sleeps only if that poll was empty and the deadline
// (`expired`) has not passed, for at most `sleep_for()`. Returns the poll's result: the caller
// polls again if it was empty.
template <class PollOnce, class SleepFor, class Expired>
[[nodiscard]] PollResult sleep_on_data(const Segment& seg, PollOnce& poll_once, SleepFor& sleep_for, Expired& expired) noexcept {
    auto& waiters = seg.consumers().data_waiters;
    auto& futex = seg.producers().data_futex;
    waiters.fetch_add(1, std::memory_order_seq_cst);
    // SYNC: seq_cst increment pairs with the fence in PublisherCore::commit_record: either the
    // poll below sees the commit, or the producer sees us waiting and bumps data_futex.
    const uint32_t seen = futex.load(std::memory_order_seq_cst);
    PollResult r = poll_once();
    if (r.status == ReceiveStatus::empty && !expired()) futex_wait(futex, seen, sleep_for());
    waiters.fetch_sub(1, std::memory_order_relaxed);  // relaxed: only a hint for producers
    return r;
}

}  // namespace shmbus::detail
