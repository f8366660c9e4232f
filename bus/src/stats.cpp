#include "stats.h"

#include <cstring>

#include "ring.h"
#include "slots.h"
#include "wall_clock.h"

namespace shmbus::detail {


TopicStats collect_stats(const Segment& seg) {
    TopicStats t;
    t.name = seg.topic();
    t.config = seg.config();
    t.segment_bytes = seg.size();
    const TailSnapshot tail = Ring(seg).read_tail();
    t.published = tail.next_id;
    t.tail_position = tail.position;
    auto& p = seg.producers();
    // relaxed loads throughout: a snapshot for humans, each figure may be a moment old.
    t.skip_records = p.skip_records.load(std::memory_order_relaxed);
    t.aborted_loans = p.aborted_loans.load(std::memory_order_relaxed);
    t.full_refusals = p.full_refusals.load(std::memory_order_relaxed);
    const auto& r = seg.recovery();
    t.recovery.dead_claims_sealed = r.dead_claims_sealed.load(std::memory_order_relaxed);
    t.recovery.stalled_claims_unblocked = r.stalled_claims_unblocked.load(std::memory_order_relaxed);
    t.recovery.late_commits_refused = p.late_commits.load(std::memory_order_relaxed);
    t.recovery.producers_released = r.producers_released.load(std::memory_order_relaxed);
    t.recovery.subscribers_freed = r.subscribers_freed.load(std::memory_order_relaxed);
    t.recovery.subscribers_detached = r.subscribers_detached.load(std::memory_order_relaxed);
    t.recovery.cursors_expired = r.cursors_expired.load(std::memory_order_relaxed);
    t.recovery.owners_dead_at_restart = r.owners_dead_at_restart.load(std::memory_order_relaxed);
    const uint64_t now_ns = WallClock::system_ns();
    const uint64_t expire_ns = seg.expire_detached_ns();
    for (uint32_t i = 0; i < seg.max_producers(); ++i)
        if (producer_active(seg.producer_slot(i))) ++t.producers;
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        auto& s = seg.consumer_slot(i);
        // SYNC: acquire pairs with the release (or seq_cst) stores of state in slots.cpp and
        // place_cursor(): the owner fields read below are the ones published with it.
        const SlotState state = state_of(s);
        if (!holds_cursor(state)) continue;
        SubscriptionStats sub;
        sub.slot = i;
        sub.durable = is_durable(s);
        sub.name = sub.durable ? std::string(s.name, strnlen(s.name, sizeof s.name)) : std::string();
        sub.attached = state == SlotState::attached;
        sub.pid = s.pid;
        sub.next_id = sub.durable ? s.ack_id.load(std::memory_order_relaxed) : s.read_id.load(std::memory_order_relaxed);
        sub.lag = t.published > sub.next_id ? t.published - sub.next_id : 0;
        sub.delivered = s.delivered.load(std::memory_order_relaxed);
        sub.lost = s.lost.load(std::memory_order_relaxed);
        if (!sub.attached) {
            sub.detached_ns = s.detached_ns;
            if (sub.durable && expire_ns != 0) {
                const uint64_t gone = now_ns > sub.detached_ns ? now_ns - sub.detached_ns : 0;
                sub.expires_in = duration_from_ns(gone >= expire_ns ? 0 : expire_ns - gone);
            }
        }
        t.subscriptions.push_back(std::move(sub));
    }
    return t;
}

}  // namespace shmbus::detail
