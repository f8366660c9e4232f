// A consumer group's settings: as the public GroupSettings, as the record its block keeps (and the
// wire carries), and the options beside that record.
#include <algorithm>

#include "groups/group.h"

namespace shmbus::detail {

using layout::GroupBlock;
using layout::GroupEntry;

layout::GroupSettingsRecord settings_record(const GroupSettings& g) noexcept {
    auto ns = [](std::chrono::nanoseconds d) { return uint64_t(std::max<int64_t>(0, d.count())); };
    layout::GroupSettingsRecord r{};
    r.window = g.window;
    r.max_deliveries = g.max_deliveries;
    r.visibility_ns = ns(g.visibility);
    r.backoff_initial_ns = ns(g.backoff_initial);
    r.backoff_max_ns = ns(g.backoff_max);
    r.backoff_factor_x100 = uint32_t(std::clamp(g.backoff_factor, 0.0, 1000.0) * 100 + 0.5);
    r.rate_interval_ns = rate_interval_ns(g.rate);
    r.rate_burst = r.rate_interval_ns == 0 ? 0 : std::max<uint32_t>(1, g.rate.burst);
    return r;
}

GroupSettings group_settings_of(const layout::GroupSettingsRecord& r) noexcept {
    GroupSettings g;
    g.window = r.window;
    g.max_deliveries = r.max_deliveries;
    g.visibility = std::chrono::nanoseconds(r.visibility_ns);
    g.backoff_initial = std::chrono::nanoseconds(r.backoff_initial_ns);
    g.backoff_max = std::chrono::nanoseconds(r.backoff_max_ns);
    g.backoff_factor = r.backoff_factor_x100 / 100.0;
    g.rate = r.rate_interval_ns == 0 ? RateLimit{} : RateLimit{1e9 / double(r.rate_interval_ns), r.rate_burst};
    return g;
}

uint32_t group_options_of(const GroupSettings& g) noexcept {
    return (g.dead_letter_expired ? layout::kDeadLetterExpired : 0u) | (g.ordered_by_key ? layout::kOrderedByKey : 0u) |
           (g.service ? layout::kService : 0u);
}

void apply_group_options(uint32_t options, GroupSettings& g) noexcept {
    g.dead_letter_expired = (options & layout::kDeadLetterExpired) != 0;
    g.ordered_by_key = (options & layout::kOrderedByKey) != 0;
    g.service = (options & layout::kService) != 0;
}

GroupSettings group_settings_of(const GroupBlock& b) noexcept {
    GroupSettings g = group_settings_of(b.settings);
    apply_group_options(b.options, g);
    return g;
}

uint64_t rate_interval_ns(const RateLimit& rate) noexcept {
    if (!(rate.per_second > 0)) return 0;
    return uint64_t(std::clamp(1e9 / rate.per_second, 1.0, 1e18));
}

}  // namespace shmbus::detail
