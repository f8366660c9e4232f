// Recovery actions the daemon takes for processes that died mid-operation.
#pragma once

#include "segment.h"

namespace shmbus::detail {

// Seals the open claim of a dead producer: its padding is committed and its record becomes a skip
// record, so readers step over it at once instead of waiting forever. Returns true if there was
// an uncommitted claim to seal. Call only once the owner is gone: a live owner may still commit.
bool seal_abandoned_claim(const Segment& seg, layout::ProducerSlot& slot) noexcept;

}  // namespace shmbus::detail
