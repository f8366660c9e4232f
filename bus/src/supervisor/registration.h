// The life cycle of producer and consumer slots: how one is allocated, reattached and released.
// Only shmbusd (and the in-process test topic that stands in for it) changes a slot's owner or
// state; publishers and subscribers only ask (core/slots.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/cursor.h"
#include "core/slots.h"

namespace shmbus::detail {

// ---- consumer slots ----
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

// Fills a slot reserved with reserve_consumer_slot  and publishes it attached, with its
// cursor at the resolved start. On failure the slot is freed again.
[[nodiscard]] Result<Ring::Start> attach_new_cursor(const Segment& seg, uint32_t slot, layout::SlotKind kind,
                                                    std::string_view name, const Registration& owner, StartFrom from,
                                                    uint64_t id) noexcept;

// ---- producer slots ----
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
