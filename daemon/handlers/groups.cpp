// Consumer group requests: join (and create), delete.
#include "handlers/handlers.h"
#include "handlers/support.h"

#include <spdlog/spdlog.h>

#include "control/control.h"
#include "supervisor/group_admin.h"
#include "supervisor/registration.h"
#include "groups/group.h"
#include "core/slots.h"
#include "shmbus/names.h"

namespace shmbus::daemon {

namespace {

std::optional<Error> bad_group_settings(const layout::GroupSettingsRecord& s) {
    auto bad = [](const std::string& why) { return make_error(Errc::invalid_argument, "group settings: " + why); };
    if (s.window == 0 || s.window > layout::kGroupEntries)
        return bad("window must be 1.." + std::to_string(layout::kGroupEntries) + " (is " + std::to_string(s.window) + ")");
    if (s.max_deliveries > layout::kMaxAttempt)
        return bad("max-deliveries must be at most " + std::to_string(layout::kMaxAttempt) + " (0: unlimited)");
    if (s.visibility_ns < 1'000'000) return bad("visibility must be at least 1 ms");
    if (s.backoff_initial_ns == 0 || s.backoff_max_ns < s.backoff_initial_ns) return bad("backoff must be INITIAL..MAX with 0 < INITIAL <= MAX");
    if (s.backoff_factor_x100 < 100 || s.backoff_factor_x100 > 10000) return bad("backoff factor must be 1..100");
    if (s.rate_interval_ns != 0 && s.rate_burst == 0) return bad("a rate limit needs a burst of at least 1");
    return std::nullopt;
}

}  // namespace

bool RequestHandlers::on_join_group(Conn& c, uint32_t id, const protocol::JoinGroup& req) {
    const std::string topic(field_name(req.topic));
    const std::string group(field_name(req.group));
    if (auto st = validate_topic_name(topic); !st) return reply_error(c, id, st.error());
    if (auto st = validate_subscription_name(group); !st) return reply_error(c, id, st.error());
    if (auto e = refused_unless(c, topic, Operation::subscribe, true)) return reply_error(c, id, *e);
    layout::GroupSettingsRecord asked = req.settings;
    if (asked.rate_interval_ns == 0) asked.rate_burst = 0;  // no limit: the burst means nothing
    if (auto e = bad_group_settings(asked)) return reply_error(c, id, *e);
    const uint32_t options = req.flags >> protocol::kGroupOptionsShift;
    if ((options & ~layout::kKnownGroupOptions) != 0)
        return reply_error(c, id, make_error(Errc::invalid_argument, "unknown group options " + std::to_string(options)));
    StartFrom from{};
    if (!protocol::start_from_wire(req.from, from))
        return reply_error(c, id, make_error(Errc::invalid_argument, "unknown start position"));
    auto t = find_or_create(topic, req.config, true, req.flags);
    if (!t) return reply_error(c, id, t.error());
    if (*t == nullptr) return park(c, topic);
    const auto& seg = t.value()->segment();
    if (seg.max_groups() == 0)
        return reply_error(c, id, make_error(Errc::invalid_argument, "topic '" + topic + "' was made by an older shmbusd "
                                                                     "and has no room for groups; delete and create it again"));
    if (seg.on_full() == OnFull::overwrite)
        return reply_error(c, id, make_error(Errc::invalid_argument, "topic '" + topic + "' is on-full overwrite: a group "
                                                                     "needs a block or fail topic, so that no unsettled "
                                                                     "message is overwritten"));
    if (seg.single_producer())
        return reply_error(c, id, make_error(Errc::invalid_argument, "topic '" + topic + "' is single-producer: a group moves "
                                                                     "messages waiting for a retry to the tail as a second "
                                                                     "publisher; use a topic without --single-producer"));
    const bool create_only = (req.flags & protocol::kCreateGroupOnly) != 0;
    // A member writes its group's object and the group's owner objects (layout 1.9), where its
    // group's slot and every member slot live: members of one group trust each other.
    auto writer_of = [](const detail::GroupPlace& p) { return Writer{group_principal(p.block), p.block}; };
    auto place = detail::find_group(seg, group);
    if (auto again = create_only || !place ? std::nullopt : detail::consumer_by_token(seg, c.process, req.token)) {
        if (detail::in_scope(seg, *again, t.value()->scope_of(group_principal(place->block)))) {  // a repeat: the first reply was lost
            detail::restamp_consumer_session(seg, *again, c.session);
            const protocol::SubscribeOk ok{seg.size(), *again, 1, 0, 0};
            return reply_with_topic(c, id, *t.value(), Role::subscribe, protocol::Type::subscribe_ok, &ok, sizeof ok, writer_of(*place));
        }
    }
    const bool created = !place;
    if (place) {
        const auto& existing = seg.group_block(place->block);
        std::string diff = (req.flags & protocol::kGroupSettingsGiven) ? detail::settings_difference(existing.settings, asked)
                                                                       : std::string();
        if (diff.empty() && (req.flags & protocol::kGroupSettingsGiven)) diff = detail::options_difference(existing.options, options);
        if (!diff.empty())
            return reply_error(c, id, make_error(Errc::invalid_argument, "group '" + group + "' of '" + topic +
                                                                             "' exists with other settings: " + diff));
    } else {
        if (auto st = validate_topic_name(topic + ".dlq"); !st)
            return reply_error(c, id, make_error(Errc::invalid_name, "topic name '" + topic + "' leaves no room for its "
                                                                     "dead-letter topic '" + topic + ".dlq': " + st.error().message));
        const auto block = detail::free_group_block(seg);
        if (!block)
            return reply_error(c, id, make_error(Errc::no_free_slot, "topic '" + topic + "' has no room for another group (max " +
                                                                         std::to_string(seg.max_groups()) + ")"));
        auto scope = t.value()->scope_with_room(group_principal(*block));
        if (!scope) return reply_error(c, id, scope.error());
        auto made = detail::create_group(seg, group, asked, from, req.from_id, registration(c, 0), block, *scope, options);
        if (!made) return reply_error(c, id, made.error());
        place = *made;
        spdlog::info("created group '{}' of '{}' (window {}, visibility {} ms, max-deliveries {})", group, topic, asked.window,
                     asked.visibility_ns / 1'000'000, asked.max_deliveries);
    }
    if (create_only) return reply(c, protocol::Type::ok, id, nullptr, 0);
    auto scope = t.value()->scope_with_room(group_principal(place->block));
    if (!scope) return reply_error(c, id, scope.error());
    auto slot = detail::reserve_consumer_slot(seg, *scope);
    if (!slot)
        return reply_error(c, id, make_error(Errc::no_free_slot, "topic '" + topic + "' has no free subscription slot (max " +
                                                                     std::to_string(seg.max_consumers()) + ")"));
    seg.consumer_slot(*slot).reserved0 = place->slot;  // published by the state store in attach_new_cursor
    auto start = detail::attach_new_cursor(seg, *slot, SlotKind::member, group, registration(c, req.token), StartFrom::latest, 0);
    if (!start) return reply_error(c, id, start.error());
    spdlog::info("pid {} joined group '{}' of '{}' (slot {}{})", c.process.pid, group, topic, *slot, created ? ", new group" : "");
    const protocol::SubscribeOk ok{seg.size(), *slot, created ? 0u : 1u, start->position, start->id};
    return reply_with_topic(c, id, *t.value(), Role::subscribe, protocol::Type::subscribe_ok, &ok, sizeof ok, writer_of(*place));
}

bool RequestHandlers::on_delete_group(Conn& c, uint32_t id, const protocol::SubscriptionName& req) {
    const std::string topic(field_name(req.topic));
    const std::string group(field_name(req.name));
    auto administered = topic_to_administer(c, topic);
    if (!administered) return reply_error(c, id, administered.error());
    const auto& seg = (*administered)->segment();
    const auto place = detail::find_group(seg, group);
    if (!place) return reply_error(c, id, make_error(Errc::invalid_argument, "no group '" + group + "' on '" + topic + "'"));
    if (const auto members = detail::group_member_pids(seg, place->slot); !members.empty())
        return reply_error(c, id, make_error(Errc::busy, "group '" + group + "' of '" + topic + "' has members: " + pid_list(members)));
    if (auto st = detail::delete_group(seg, *place); !st) return reply_error(c, id, st.error());
    spdlog::info("deleted group '{}' of '{}'", group, topic);
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

}  // namespace shmbus::daemon
