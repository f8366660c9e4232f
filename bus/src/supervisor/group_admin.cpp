#include "supervisor/group_admin.h"

#include <algorithm>
#include <cstring>

#include "core/cursor.h"
#include "supervisor/registration.h"

namespace shmbus::detail {

using layout::GroupBlock;

std::optional<uint32_t> free_group_block(const Segment& seg) noexcept {
    for (uint32_t i = 0; i < seg.max_groups(); ++i)
        // relaxed: only shmbusd changes a block's state, and it is the caller.
        if (seg.group_block(i).state.load(std::memory_order_relaxed) == uint32_t(layout::GroupState::free)) return i;
    return std::nullopt;
}

Result<GroupPlace> create_group(const Segment& seg, std::string_view name, const layout::GroupSettingsRecord& settings,
                                StartFrom from, uint64_t from_id, const Registration& creator, std::optional<uint32_t> block,
                                OwnerMask scope, uint32_t options) noexcept {
    if (!block) block = free_group_block(seg);
    if (!block || *block >= seg.max_groups() ||
        seg.group_block(*block).state.load(std::memory_order_relaxed) != uint32_t(layout::GroupState::free))
        return make_error(Errc::no_free_slot, "topic '" + seg.topic() + "' has no room for another group (max " +
                                                  std::to_string(seg.max_groups()) + ")");
    auto slot = reserve_consumer_slot(seg, scope);
    if (!slot)
        return make_error(Errc::no_free_slot, "topic '" + seg.topic() + "' has no free subscription slot for a group (max " +
                                                  std::to_string(seg.max_consumers()) + ")");
    GroupBlock& b = seg.group_block(*block);
    // Nobody reads a free block: plain writes, published by the release store of `state` below.
    std::memset(static_cast<void*>(&b.entries), 0, sizeof b.entries);
    std::memset(b.name, 0, sizeof b.name);
    std::memcpy(b.name, name.data(), std::min(name.size(), sizeof b.name - 1));
    b.settings = settings;
    b.options = options;
    b.expired.store(0, std::memory_order_relaxed);
    b.consumer_slot = *slot;
    for (auto* c : {&b.delivered, &b.acked, &b.redelivered, &b.nacked, &b.dead_lettered, &b.ack_too_late, &b.rate_tat_ns, &b.reparked})
        c->store(0, std::memory_order_relaxed);
    seg.consumer_slot(*slot).reserved0 = *block;  // published by the slot's state store in attach_new_cursor
    auto start = attach_new_cursor(seg, *slot, SlotKind::group, name, creator, from, from_id);
    if (!start) return start.error();
    // The group belongs to no process: detached, it stays until deleted.
    auto& s = seg.consumer_slot(*slot);
    s.pid = 0;
    uint32_t attached = uint32_t(SlotState::attached);
    // SYNC: release pairs with the acquire state loads of readers (collect_stats, find_group's users).
    s.state.compare_exchange_strong(attached, uint32_t(SlotState::detached), std::memory_order_acq_rel);
    // SYNC: release pairs with the acquire load in find_group and group_of_member.
    b.state.store(uint32_t(layout::GroupState::active), std::memory_order_release);
    return GroupPlace{*block, *slot};
}

Status delete_group(const Segment& seg, GroupPlace place) noexcept {
    if (!free_consumer(seg, place.slot, state_of(seg.consumer_slot(place.slot))))
        return make_error(Errc::busy, "group changed hands; try again");
    // SYNC: release pairs with the acquire loads of state in find_group and group_of_member.
    seg.group_block(place.block).state.store(uint32_t(layout::GroupState::free), std::memory_order_release);
    return ok_status();
}

std::vector<std::string> free_half_made_groups(const Segment& seg) {
    std::vector<std::string> freed;
    auto slot_is_group_of = [&](uint32_t slot, uint32_t block) {
        if (slot >= seg.max_consumers()) return false;
        const auto& s = seg.consumer_slot(slot);
        const SlotState st = state_of(s);
        return (st == SlotState::attached || st == SlotState::detached) && s.kind == uint32_t(SlotKind::group) && s.reserved0 == block;
    };
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        const auto& s = seg.consumer_slot(i);
        const SlotState st = state_of(s);
        if ((st != SlotState::attached && st != SlotState::detached) || s.kind != uint32_t(SlotKind::group)) continue;
        // SYNC: acquire pairs with the release stores of state in create_group and delete_group.
        const bool complete = s.reserved0 < seg.max_groups() &&
                              seg.group_block(s.reserved0).state.load(std::memory_order_acquire) == uint32_t(layout::GroupState::active) &&
                              seg.group_block(s.reserved0).consumer_slot == i;
        if (!complete && free_consumer(seg, i, st)) freed.push_back("group slot " + std::to_string(i));
    }
    for (uint32_t b = 0; b < seg.max_groups(); ++b) {
        auto& block = seg.group_block(b);
        // SYNC: acquire pairs with the release store of state in create_group.
        if (block.state.load(std::memory_order_acquire) != uint32_t(layout::GroupState::active) || slot_is_group_of(block.consumer_slot, b))
            continue;
        // SYNC: release pairs with the acquire loads of state in find_group and group_of_member.
        block.state.store(uint32_t(layout::GroupState::free), std::memory_order_release);
        freed.push_back("group block " + std::to_string(b));
    }
    return freed;
}

std::string settings_difference(const layout::GroupSettingsRecord& a, const layout::GroupSettingsRecord& b) {
    std::string out;
    auto differs = [&](const char* what, uint64_t x, uint64_t y, const char* unit) {
        if (x == y) return;
        if (!out.empty()) out += ", ";
        out += std::string(what) + " " + std::to_string(x) + unit + " (asked: " + std::to_string(y) + unit + ")";
    };
    differs("window", a.window, b.window, "");
    differs("max-deliveries", a.max_deliveries, b.max_deliveries, "");
    differs("visibility", a.visibility_ns / 1'000'000, b.visibility_ns / 1'000'000, " ms");
    differs("backoff initial", a.backoff_initial_ns / 1'000'000, b.backoff_initial_ns / 1'000'000, " ms");
    differs("backoff max", a.backoff_max_ns / 1'000'000, b.backoff_max_ns / 1'000'000, " ms");
    differs("backoff factor x100", a.backoff_factor_x100, b.backoff_factor_x100, "");
    differs("rate interval", a.rate_interval_ns / 1000, b.rate_interval_ns / 1000, " us");
    differs("rate burst", a.rate_burst, b.rate_burst, "");
    if (out.empty() && std::memcmp(&a, &b, sizeof a) != 0) out = "sub-millisecond timings";
    return out;
}

std::string options_difference(uint32_t existing, uint32_t asked) {
    std::string out;
    auto differs = [&](uint32_t bit, const char* what) {
        if (((existing ^ asked) & bit) == 0) return;
        if (!out.empty()) out += ", ";
        out += std::string(what) + ((existing & bit) ? " on" : " off") + " (asked: " + ((asked & bit) ? "on" : "off") + ")";
    };
    differs(layout::kDeadLetterExpired, "dead-letter-expired");
    differs(layout::kOrderedByKey, "ordered-by-key");
    return out;
}

}  // namespace shmbus::detail
