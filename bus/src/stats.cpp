#include "stats.h"

#include <cstring>

#include "ring.h"

namespace shmbus::detail {

using layout::SlotKind;
using layout::SlotState;

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
    for (uint32_t i = 0; i < seg.max_producers(); ++i)
        if (seg.producer_slot(i).state.load(std::memory_order_acquire) != 0) ++t.producers;
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        auto& s = seg.consumer_slot(i);
        const auto state = SlotState(s.state.load(std::memory_order_acquire));
        if (state != SlotState::attached && state != SlotState::detached) continue;
        SubscriptionStats sub;
        sub.slot = i;
        sub.durable = s.kind == uint32_t(SlotKind::durable);
        sub.name = sub.durable ? std::string(s.name, strnlen(s.name, sizeof s.name)) : std::string();
        sub.attached = state == SlotState::attached;
        sub.pid = s.pid;
        sub.next_id = sub.durable ? s.ack_id.load(std::memory_order_relaxed) : s.read_id.load(std::memory_order_relaxed);
        sub.lag = t.published > sub.next_id ? t.published - sub.next_id : 0;
        sub.delivered = s.delivered.load(std::memory_order_relaxed);
        sub.lost = s.lost.load(std::memory_order_relaxed);
        t.subscriptions.push_back(std::move(sub));
    }
    return t;
}

}  // namespace shmbus::detail
