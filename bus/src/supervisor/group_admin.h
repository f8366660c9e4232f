// Creating, deleting and repairing consumer groups in a segment: shmbusd's side (and the
// in-process test topic's). Members never run this code (groups/group.h is theirs).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "groups/group.h"

namespace shmbus::detail {

// The first group block no group holds, if any.
[[nodiscard]] std::optional<uint32_t> free_group_block(const Segment& seg) noexcept;
// Creates group `name` with `settings`, its dispatch word placed at `from` (a join, as for a new
// durable cursor), owned by no process: in `block` (a free one: free_group_block), its slot
// within `scope` (layout 1.9: the group's own owner objects), or wherever there is room.
// Errors: no free group block or consumer slot.
[[nodiscard]] Result<GroupPlace> create_group(const Segment& seg, std::string_view name,
                                              const layout::GroupSettingsRecord& settings, StartFrom from,
                                              uint64_t from_id, const Registration& creator,
                                              std::optional<uint32_t> block = std::nullopt, OwnerMask scope = kAnyOwner,
                                              uint32_t options = 0) noexcept;
// Deletes a group no member holds: its slot first (publishers stop counting it), then its block.
[[nodiscard]] Status delete_group(const Segment& seg, GroupPlace place) noexcept;
// Frees what a shmbusd that died inside create_group or delete_group left: a group slot whose
// block is not active for it (it would hold publishers back with no group to show), and an
// active block whose slot is no longer its group slot. Says what it freed. For shmbusd's start,
// when no member can be joining.
[[nodiscard]] std::vector<std::string> free_half_made_groups(const Segment& seg);
// "" if `a` and `b` are the same settings, else what differs, for an error message.
[[nodiscard]] std::string settings_difference(const layout::GroupSettingsRecord& existing,
                                              const layout::GroupSettingsRecord& asked);
// Likewise for the options beside them (GroupBlock::options).
[[nodiscard]] std::string options_difference(uint32_t existing, uint32_t asked);

}  // namespace shmbus::detail
