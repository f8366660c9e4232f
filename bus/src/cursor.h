// Placing a subscription's cursor: shared by the daemon (new subscriptions) and subscribers
// (seek), so the join protocol against producers' gate caches lives in one place.
#pragma once

#include <optional>
#include <string_view>

#include "ring.h"
#include "segment.h"
#include "slots.h"
#include "shmbus/subscriber.h"

namespace shmbus::detail {

// Fills a slot reserved with reserve_consumer_slot (slots.h) and publishes it attached, with its
// cursor at the resolved start. On failure the slot is freed again.
[[nodiscard]] Result<Ring::Start> attach_new_cursor(const Segment& seg, uint32_t slot, layout::SlotKind kind,
                                                    std::string_view name, const Registration& owner, StartFrom from,
                                                    uint64_t id) noexcept;
// Moves the ack cursor of `slot` to a resolved start. For a gating cursor this is a join:
// the cursor is published (seq_cst), then checked against the tail, so no producer that missed
// it can overwrite what it needs (docs/architecture.md, "Gating"). `attach` also publishes the
// slot's state as attached.
[[nodiscard]] Result<Ring::Start> place_cursor(const Segment& seg, layout::ConsumerSlot& slot, StartFrom from,
                                               uint64_t id, bool gating, bool attach) noexcept;

}  // namespace shmbus::detail
