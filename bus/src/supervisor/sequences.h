// The sequence table's life cycle (layout/sequence_table.h): which entry a producer name holds,
// how shmbusd gives a name to a new publisher, and how it settles what a dead holder left
// half-done. Only shmbusd (and the in-process test topic that stands in for it) calls these; a
// named publisher only writes its own entry's line 0.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "core/segment.h"
#include "shmbus/result.h"

namespace shmbus::detail {

// The entry that remembers `name`, held or not.
[[nodiscard]] std::optional<uint32_t> find_sequence_entry(const Segment& seg, std::string_view name) noexcept;

// The producer slot (+ 1) holding entry `i`; 0: none.
[[nodiscard]] uint32_t sequence_holder(const Segment& seg, uint32_t i) noexcept;

// Gives `name` to the publisher in producer slot `slot`: its own entry if the topic remembers the
// name (the caller made sure no live publisher holds it, and settled it), else a free entry, else
// the entry let go longest ago, forgetting that name. Fails when every entry is held.
[[nodiscard]] Result<uint32_t> hold_sequence_entry(const Segment& seg, std::string_view name, uint32_t slot) noexcept;

// After a holder died or let go: decides a publish it left pending (committed if its record's
// commit word is there, with its stamp) and frees the name for the next holder. Returns the
// entries whose pending publish was found committed (for the daemon's log).
std::vector<uint32_t> release_sequence_entries(const Segment& seg, uint32_t slot, uint64_t now_wall_ns);

// Decides the pending publish of entry `i`, whose holder is gone: if its record was committed,
// `committed` takes its sequence; either way nothing is pending afterwards. True if it changed
// `committed`.
bool settle_pending(const Segment& seg, uint32_t i) noexcept;

}  // namespace shmbus::detail
