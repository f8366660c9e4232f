#include "request/service.h"

#include <charconv>

#include "core/slots.h"
#include "shmbus/layout/group_region.h"

namespace shmbus::detail {

Responders live_responders(const Segment& seg) noexcept {
    Responders r;
    uint64_t service_slots = 0;  // bit i: consumer slot i is a service group's (slots of groups are few and low)
    uint32_t service_slot_list[layout::kDefaultMaxGroups * 16];
    uint32_t listed = 0;
    for (uint32_t i = 0; i < seg.max_groups() && listed < std::size(service_slot_list); ++i) {
        const layout::GroupBlock& b = seg.group_block(i);
        // acquire: pairs with the supervisor's release store of `state` after the settings and options.
        if (b.state.load(std::memory_order_acquire) != uint32_t(layout::GroupState::active)) continue;
        if ((b.options & layout::kService) == 0 || b.consumer_slot >= seg.max_consumers()) continue;
        service_slot_list[listed++] = b.consumer_slot;
        if (b.consumer_slot < 64) service_slots |= uint64_t(1) << b.consumer_slot;
    }
    if (listed == 0) return r;
    uint64_t groups_seen = 0;  // bit j: service_slot_list[j] has a member
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        const auto& s = seg.consumer_slot(i);
        // state_of: acquire, pairing with the supervisor's release store when it attached the slot
        // (kind and reserved0 are written before it).
        if (state_of(s) != SlotState::attached || s.kind != uint32_t(SlotKind::member)) continue;
        const uint32_t group = s.reserved0;
        if (group < 64 && (service_slots & (uint64_t(1) << group)) == 0) continue;
        for (uint32_t j = 0; j < listed; ++j)
            if (service_slot_list[j] == group) {
                ++r.members;
                groups_seen |= uint64_t(1) << j;
            }
    }
    r.groups = uint32_t(__builtin_popcountll(groups_seen));
    return r;
}

NumberText number_text(uint64_t n) noexcept {
    NumberText t{};
    const auto res = std::to_chars(t.text, t.text + sizeof t.text, n);
    t.size = uint8_t(res.ptr - t.text);
    return t;
}

std::optional<uint64_t> parse_number(std::string_view text) noexcept {
    uint64_t n = 0;
    const auto res = std::from_chars(text.data(), text.data() + text.size(), n);
    if (res.ec != std::errc{} || res.ptr != text.data() + text.size() || text.empty()) return std::nullopt;
    return n;
}

}  // namespace shmbus::detail
