#include "cursor.h"

#include <cstring>

namespace shmbus::detail {

using layout::SlotKind;
using layout::SlotState;

namespace {
constexpr int kJoinAttempts = 64;  // each retry means producers went a quarter ring meanwhile
}

Result<Ring::Start> place_cursor(const Segment& seg, layout::ConsumerSlot& slot, StartFrom from, uint64_t id,
                                 bool gating, bool attach) noexcept {
    const Ring ring(seg);
    for (int attempt = 0; attempt < kJoinAttempts; ++attempt) {
        auto start = ring.resolve_start(from, id, gating);
        if (!start) return start.error();
        slot.ack_id.store(start->id, std::memory_order_relaxed);   // relaxed: published by the seq_cst stores below
        slot.read_id.store(start->id, std::memory_order_relaxed);  // relaxed: statistics
        // SYNC: these seq_cst stores and the seq_cst tail load pair with the seq_cst loads in
        // PublisherCore::min_gating_ack: a producer that did not see this cursor claimed before
        // our tail load, which the join floor then accounts for.
        slot.ack_position.store(start->position, std::memory_order_seq_cst);
        if (attach) slot.state.store(uint32_t(SlotState::attached), std::memory_order_seq_cst);
        if (!gating || start->position >= gating_join_floor(ring.tail_position(std::memory_order_seq_cst), ring.capacity()))
            return start;
    }
    return make_error(Errc::timed_out, "publishers kept lapping the start position");
}

Result<Ring::Start> attach_new_cursor(const Segment& seg, uint32_t index, SlotKind kind, std::string_view name,
                                      const Registration& owner, StartFrom from, uint64_t id) noexcept {
    auto& s = seg.consumer_slot(index);
    s.kind = uint32_t(kind);
    stamp_consumer(seg, index, owner);
    std::memset(s.name, 0, sizeof s.name);
    std::memcpy(s.name, name.data(), std::min(name.size(), sizeof s.name - 1));
    s.delivered.store(0, std::memory_order_relaxed);  // relaxed: statistics
    s.lost.store(0, std::memory_order_relaxed);
    // relaxed: published by the seq_cst store that attaches the slot; a slot that is not attached holds nothing.
    if (seg.in_place_reads()) s.hold.store(0, std::memory_order_relaxed);
    if (seg.consumer_slot_has(sizeof(layout::ConsumerSlot))) {  // a new subscription's times start empty
        s.processing_count.store(0, std::memory_order_relaxed);
        s.processing_sum_ns.store(0, std::memory_order_relaxed);
        for (auto& b : s.processing) b.store(0, std::memory_order_relaxed);
    }
    const bool gating = gates_producers(seg, index, kind);
    auto start = place_cursor(seg, s, from, id, gating, true);
    // Failed before attaching (a bad start) or after (lapped every time): free it either way.
    if (!start && !free_consumer(seg, index, SlotState::attached)) (void)free_consumer(seg, index, SlotState::reserved);
    return start;
}

}  // namespace shmbus::detail
