// Placing a subscription's cursor: shared by the daemon (new subscriptions, through
// attach_new_cursor in supervisor/registration.h) and subscribers (seek), so the join protocol
// against producers' gate caches lives in one place.
#pragma once

#include <optional>
#include <string_view>

#include "core/ring.h"
#include "core/segment.h"
#include "core/slots.h"
#include "shmbus/subscriber.h"

namespace shmbus::detail {

// Moves the ack cursor of `slot` to a resolved start. For a gating cursor this is a join:
// the cursor is published (seq_cst), then checked against the tail, so no producer that missed
// it can overwrite what it needs (docs/architecture.md, "Gating"). `attach` also publishes the
// slot's state as attached.
[[nodiscard]] Result<Ring::Start> place_cursor(const Segment& seg, layout::ConsumerSlot& slot, StartFrom from,
                                               uint64_t id, bool gating, bool attach) noexcept;

}  // namespace shmbus::detail
