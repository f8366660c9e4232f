// How a consumer group's member waits for work (the sleeping protocol of GroupMember, group.h):
// the member that becomes the group's watcher sleeps on the topic's data futex, every other member
// on the group's wake word until a watcher hands over. Subscriber::receive() runs this for members.
#pragma once

#include <atomic>

#include "core/data_wait.h"
#include "core/futex.h"
#include "core/segment.h"
#include "groups/group.h"
#include "shmbus/subscriber.h"

namespace shmbus::detail {

// `poll_once` polls the member once; `sleep_for` says how long the next sleep may last;
// `expired` whether the caller's deadline has passed. Returns the first poll that is not empty,
// or the last one when the deadline passes.
template <class PollOnce, class SleepFor, class Expired>
[[nodiscard]] PollResult wait_as_member(GroupMember& group, const Segment& seg, PollOnce&& poll_once, SleepFor&& sleep_for,
                                        Expired&& expired) noexcept {
    PollResult r{ReceiveStatus::empty, 0};
    for (;;) {
        auto& sleepers = group.wake_sleepers();
        // SYNC: seq_cst, before the load of the wake word; pairs with stop_watching's increment
        // of it and then load of wake_sleepers: either it sees us, or we see its increment.
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        // SYNC: seq_cst, before try_watch; pairs with stop_watching's seq_cst store and increment.
        const uint32_t seen_wake = group.wake_word().load(std::memory_order_seq_cst);
        if (!group.try_watch()) {
            r = poll_once();
            if (r.status == ReceiveStatus::empty && !expired()) futex_wait(group.wake_word(), seen_wake, sleep_for());
            sleepers.fetch_sub(1, std::memory_order_relaxed);  // relaxed: only a hint for the waker
            if (r.status == ReceiveStatus::empty) r = poll_once();
            if (r.status == ReceiveStatus::ok) group.wake_another_if_backlog();
            if (r.status != ReceiveStatus::empty || expired()) return r;
            continue;
        }
        sleepers.fetch_sub(1, std::memory_order_relaxed);  // relaxed: only a hint for the waker
        // The watcher: it sleeps on the topic's data futex as any subscriber does.
        r = sleep_on_data(seg, poll_once, sleep_for, expired);
        group.stop_watching();  // awake: another member watches while we work
        if (r.status == ReceiveStatus::empty) r = poll_once();
        if (r.status == ReceiveStatus::ok) group.wake_another_if_backlog();
        if (r.status != ReceiveStatus::empty || expired()) return r;
    }
}

}  // namespace shmbus::detail
