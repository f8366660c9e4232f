// The life cycle of producer and consumer slots: who may hold one, how one is allocated,
// reattached and released, whether it is live and whether it gates publishers. Everything that
// reads or writes a slot's state goes through here, so a new slot kind (a consumer group) plugs
// in at one place. Only shmbusd (and the in-process test topic that stands in for it) changes a
// slot's owner or state; publishers and subscribers only ask.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

#include "proc.h"
#include "segment.h"

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
// The slot of the durable subscription `name`, attached or detached, within `scope`.
[[nodiscard]] std::optional<uint32_t> find_durable(const Segment& seg, std::string_view name, OwnerMask scope = kAnyOwner) noexcept;
// Finds a free consumer slot within `scope` and marks it reserved; the caller fills it and
// attaches it (attach_new_cursor) or frees it again.
[[nodiscard]] std::optional<uint32_t> reserve_consumer_slot(const Segment& seg, OwnerMask scope = kAnyOwner) noexcept;
// Writes the owner fields of a reserved slot; they are published by the store of its state.
void stamp_consumer(const Segment& seg, uint32_t slot, const Registration& r) noexcept;
// Gives an existing durable cursor (state `seen`, detached or attached by a dead owner) to a new
// owner. False if the state changed meanwhile.
[[nodiscard]] bool reattach_durable(const Segment& seg, uint32_t slot, SlotState seen, const Registration& r) noexcept;

// Attached and owned by `p`.
[[nodiscard]] bool owned_by(const layout::ConsumerSlot& s, const Process& p) noexcept;

enum class Released : uint8_t { not_owned, freed, detached };
// The owner `p` is gone or let go: an ephemeral slot is freed, a durable one detached with its
// cursor kept. not_owned if the slot is no longer `p`'s (released already, or given to someone
// else meanwhile), so the same death seen twice releases once.
[[nodiscard]] Released release_consumer(const Segment& seg, uint32_t slot, const Process& p, uint64_t now_wall_ns) noexcept;
// Frees a slot in state `from` (a detached cursor deleted or expired, a half-made reservation)
// and wakes producers it may have held back. False if its state was no longer `from`.
[[nodiscard]] bool free_consumer(const Segment& seg, uint32_t slot, SlotState from) noexcept;

// ---- producer slots ----

[[nodiscard]] inline bool producer_active(const layout::ProducerSlot& p) noexcept {
    // acquire: pairs with the release store of state in register_producer (ours, or an earlier daemon's).
    return ProducerState(p.state.load(std::memory_order_acquire)) == ProducerState::active;
}
// Takes a free producer slot for `r`, its claim words cleared.
[[nodiscard]] std::optional<uint32_t> register_producer(const Segment& seg, const Registration& r) noexcept;
[[nodiscard]] bool owned_by(const layout::ProducerSlot& p, const Process& owner) noexcept;
// Frees a producer slot once its claim words are settled (release_producer in the daemon).
void free_producer(const Segment& seg, uint32_t slot) noexcept;

// ---- both ----

// The connection a slot was registered through (layout 1.2); 0 where the segment's slots have no
// room for it (a 1.1 segment's producer slots) or it was registered before 1.2.
[[nodiscard]] uint64_t consumer_session(const Segment& seg, uint32_t slot) noexcept;
[[nodiscard]] uint64_t producer_session(const Segment& seg, uint32_t slot) noexcept;
// Registered by `p` through `session`. A slot that names no session belongs to the process as a
// whole, so any of its connections counts.
[[nodiscard]] bool consumer_registered_through(const Segment& seg, uint32_t slot, const Process& p, uint64_t session) noexcept;
[[nodiscard]] bool producer_registered_through(const Segment& seg, uint32_t slot, const Process& p, uint64_t session) noexcept;
// The slot of `p` registered by the request with `token`, if any (a repeated request).
[[nodiscard]] std::optional<uint32_t> consumer_by_token(const Segment& seg, const Process& p, uint64_t token) noexcept;
[[nodiscard]] std::optional<uint32_t> producer_by_token(const Segment& seg, const Process& p, uint64_t token) noexcept;
// Re-stamps a slot found by its token with the connection the repeated request came through.
void restamp_consumer_session(const Segment& seg, uint32_t slot, uint64_t session) noexcept;
void restamp_producer_session(const Segment& seg, uint32_t slot, uint64_t session) noexcept;

}  // namespace shmbus::detail
