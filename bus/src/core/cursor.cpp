#include "core/cursor.h"

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

}  // namespace shmbus::detail
