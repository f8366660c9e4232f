// What publishers and subscribers ask of producer and consumer slots: whether one is live, whether
// it gates publishers, which owner object it lies in. Only shmbusd (and the in-process test topic
// that stands in for it) changes a slot's owner or state: supervisor/registration.h.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/proc.h"
#include "core/segment.h"

namespace shmbus::detail {

using layout::ProducerState;
using layout::SlotKind;
using layout::SlotState;

// Who registers a slot: the process, the request's token (so a request repeated after shmbusd
// died mid-reply finds the slot it registered) and the shmbusd connection it came through.
struct Registration {
    Process owner;
    uint64_t token = 0;
    uint64_t session = 0;  // 0: none (a test topic without a daemon)
};

// ---- consumer slots ----

[[nodiscard]] inline SlotState state_of(const layout::ConsumerSlot& s,
                                        std::memory_order order = std::memory_order_acquire) noexcept {
    return SlotState(s.state.load(order));
}
// Attached or detached: the slot holds a cursor (a detached one is a durable cursor kept for
// its owner's return).
[[nodiscard]] constexpr bool holds_cursor(SlotState state) noexcept {
    return state == SlotState::attached || state == SlotState::detached;
}
[[nodiscard]] inline bool is_durable(const layout::ConsumerSlot& s) noexcept { return s.kind == uint32_t(SlotKind::durable); }
// A durable cursor, attached or not: on a block/fail topic it holds producers back. `order` is the
// caller's: a producer refreshing its gate needs seq_cst (see PublisherCore::min_gating_ack).
[[nodiscard]] inline bool holds_durable_cursor(const layout::ConsumerSlot& s,
                                               std::memory_order order = std::memory_order_acquire) noexcept {
    return holds_cursor(state_of(s, order)) && is_durable(s);
}

// A cursor that holds producers back on a block/fail topic: a durable subscription's, or a
// consumer group's dispatch word (whose unsettled messages gate too: group.h). `order` as above.
[[nodiscard]] inline bool holds_gating_cursor(const layout::ConsumerSlot& s,
                                              std::memory_order order = std::memory_order_acquire) noexcept {
    return holds_cursor(state_of(s, order)) && (is_durable(s) || s.kind == uint32_t(SlotKind::group));
}
// Whether a cursor of `kind` in slot `index` holds producers back, if it is held: on block and
// fail topics every durable cursor and group; on archive topics groups and the archiver's cursor
// alone (the others read on from the disk when they fall a ring behind); on overwrite topics none.
[[nodiscard]] inline bool gates_producers(const Segment& seg, uint32_t index, SlotKind kind,
                                          std::memory_order order = std::memory_order_acquire) noexcept {
    switch (seg.on_full()) {
        case OnFull::overwrite: return false;
        case OnFull::archive: return kind == SlotKind::group || (kind == SlotKind::durable && seg.archiver_slot(order) == index);
        default: return kind == SlotKind::durable || kind == SlotKind::group;
    }
}
// The owner objects (layout 1.9; bit k: object k) whose slots a principal uses: its slots are
// reserved and its durable cursors found there alone, so a slot another principal forged in its
// own object is never taken for one of ours. kAnyOwner: every slot (a topic without owner
// objects, or shmbusd itself looking).
using OwnerMask = uint64_t;
inline constexpr OwnerMask kAnyOwner = ~OwnerMask{0};
[[nodiscard]] inline bool in_scope(const Segment& seg, uint32_t slot, OwnerMask scope) noexcept {
    return seg.owner_objects() == 0 || ((scope >> seg.owner_object_of(slot)) & 1) != 0;
}
// ---- producer slots ----

[[nodiscard]] inline bool producer_active(const layout::ProducerSlot& p) noexcept {
    // acquire: pairs with the release store of state in register_producer (ours, or an earlier daemon's).
    return ProducerState(p.state.load(std::memory_order_acquire)) == ProducerState::active;
}
}  // namespace shmbus::detail
