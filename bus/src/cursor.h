// Placing a subscription's cursor: shared by the daemon (new subscriptions) and subscribers
// (seek), so the join protocol against producers' gate caches lives in one place.
#pragma once

#include <optional>
#include <string_view>

#include "ring.h"
#include "segment.h"
#include "shmbus/subscriber.h"

namespace shmbus::detail {

// Finds a free consumer slot and marks it reserved (only the daemon allocates).
[[nodiscard]] std::optional<uint32_t> reserve_consumer_slot(const Segment& seg) noexcept;

struct SlotOwner {
    int32_t pid;
    uint64_t start_time;
    uint64_t token;  // the request's token (protocol.h)
};
// Fills a reserved slot and publishes it attached, with its cursor at the resolved start.
// On failure the slot is freed again.
[[nodiscard]] Result<Ring::Start> attach_new_cursor(const Segment& seg, uint32_t slot, layout::SlotKind kind,
                                                    std::string_view name, SlotOwner owner, StartFrom from,
                                                    uint64_t id) noexcept;
// Moves the ack cursor of `slot` to a resolved start. For a gating cursor this is a join:
// the cursor is published (seq_cst), then checked against the tail, so no producer that missed
// it can overwrite what it needs (docs/architecture.md, "Gating"). `attach` also publishes the
// slot's state as attached.
[[nodiscard]] Result<Ring::Start> place_cursor(const Segment& seg, layout::ConsumerSlot& slot, StartFrom from,
                                               uint64_t id, bool gating, bool attach) noexcept;

}  // namespace shmbus::detail
