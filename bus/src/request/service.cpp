#include "request/service.h"

#include <array>
#include <charconv>

#include "core/slots.h"
#include "shmbus/layout/group_region.h"

namespace shmbus::detail {

Responders live_responders(const Segment& seg) noexcept {
    Responders r;
    // The consumer slots of the topic's service groups (few: one per group block).
    std::array<uint32_t, 64> groups{};
    std::size_t listed = 0;
    for (uint32_t i = 0; i < seg.max_groups() && listed < groups.size(); ++i) {
        const layout::GroupBlock& b = seg.group_block(i);
        // acquire: pairs with the supervisor's release store of `state` after the settings and options.
        if (b.state.load(std::memory_order_acquire) != uint32_t(layout::GroupState::active)) continue;
        if ((b.options & layout::kService) != 0 && b.consumer_slot < seg.max_consumers()) groups[listed++] = b.consumer_slot;
    }
    uint64_t served = 0;  // bit j: groups[j] has a member
    for (uint32_t i = 0; i < seg.max_consumers() && listed != 0; ++i) {
        const auto& s = seg.consumer_slot(i);
        // state_of: acquire, pairing with the supervisor's release store when it attached the slot
        // (kind and reserved0 are written before it).
        if (state_of(s) != SlotState::attached || s.kind != uint32_t(SlotKind::member)) continue;
        for (std::size_t j = 0; j < listed; ++j)
            if (groups[j] == s.reserved0) {
                ++r.members;
                served |= uint64_t(1) << j;
            }
    }
    r.groups = uint32_t(__builtin_popcountll(served));
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
