// Subscription and producer requests: subscribe (new or resumed), unsubscribe, close a producer,
// delete a durable subscription.
#include "handlers/handlers.h"
#include "handlers/support.h"

#include "archives/archives.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "control/control.h"
#include "supervisor/registration.h"
#include "core/slots.h"
#include "watchers.h"
#include "shmbus/names.h"

namespace shmbus::daemon {

protocol::SubscribeOk RequestHandlers::resume(const detail::Segment& seg, uint32_t slot) const {
    const auto& s = seg.consumer_slot(slot);
    // acquire: pairs with the subscriber's release store of ack_position in store_ack.
    return {seg.size(), slot, 1, s.ack_position.load(std::memory_order_acquire), s.ack_id.load(std::memory_order_acquire)};
}

Result<protocol::SubscribeOk> RequestHandlers::place_new(TopicEntry& t, const Conn& c, const protocol::Subscribe& req,
                                                         StartFrom from, const std::string& principal) {
    const auto& seg = t.segment();
    const std::string durable_name(field_name(req.durable_name));
    auto scope = t.scope_with_room(principal);
    if (!scope) return scope.error();
    auto slot = detail::reserve_consumer_slot(seg, *scope);
    if (!slot)
        return make_error(Errc::no_free_slot, "topic '" + t.name() + "' has no free subscription slot (max " +
                                                  std::to_string(seg.max_consumers()) + ")");
    const SlotKind kind = durable_name.empty() ? SlotKind::ephemeral : SlotKind::durable;
    auto start = detail::attach_new_cursor(seg, *slot, kind, durable_name, registration(c, req.token), from, req.from_id);
    if (!start) return start.error();
    return protocol::SubscribeOk{seg.size(), *slot, 0, start->position, start->id};
}

bool RequestHandlers::on_subscribe(Conn& c, uint32_t id, const protocol::Subscribe& req) {
    const std::string topic(field_name(req.topic));
    const std::string durable_name(field_name(req.durable_name));
    const bool durable = !durable_name.empty();
    if (auto st = validate_topic_or_inbox_name(topic); !st) return reply_error(c, id, st.error());
    const bool inbox = is_inbox_name(topic);
    if (inbox && durable) return reply_error(c, id, make_error(Errc::invalid_argument, "an inbox has no durable subscriptions"));
    // The archiver's cursor: its name is none a client may choose, and only the archiver shmbusd
    // started for this topic may take it.
    const bool archiver = durable_name == kArchiverSubscription;
    if (archiver && !archives_.is_archiver(topic, c.process.pid))
        return reply_error(c, id, make_error(Errc::permission_denied, "only shmbusd's archiver of '" + topic + "' may use '" +
                                                                          durable_name + "'"));
    if (durable && !archiver)
        if (auto st = validate_subscription_name(durable_name); !st) return reply_error(c, id, st.error());
    if (auto e = refused_unless(c, topic, Operation::subscribe, !archiver)) return reply_error(c, id, *e);
    if (archiver && registry_.find(topic) == nullptr)
        return reply_error(c, id, make_error(Errc::topic_not_found, "no topic named '" + topic + "'"));
    if (inbox && registry_.find(topic) == nullptr)
        if (auto e = refused_new_inbox(c)) return reply_error(c, id, *e);
    StartFrom from{};
    if (!protocol::start_from_wire(req.from, from))
        return reply_error(c, id, make_error(Errc::invalid_argument, "unknown start position"));
    const bool existed = registry_.find(topic) != nullptr;
    auto t = find_or_create(topic, req.config, true, req.flags);
    if (!t) return reply_error(c, id, t.error());
    if (*t == nullptr) return park(c, topic);
    if (inbox && !existed) {
        t.value()->inbox_session = c.session;
        spdlog::debug("pid {} made inbox '{}'", c.process.pid, topic);
    }
    const auto& seg = t.value()->segment();
    if ((req.flags & protocol::kFromTime) != 0)
        if (auto st = seg.require_timestamps("it cannot be read from a time"); !st) return reply_error(c, id, st.error());
    // Whose owner objects its slot lives in (layout 1.9): the archiver's own, else its uid's. A
    // durable name is found there alone: each uid has its own names.
    const std::string principal = archiver ? std::string(kArchiverPrincipal) : user_principal(c.who.uid);
    const detail::OwnerMask scope = t.value()->scope_of(principal);

    std::optional<protocol::SubscribeOk> ok;
    auto again = detail::consumer_by_token(seg, c.process, req.token);
    if (again && !detail::in_scope(seg, *again, scope)) again.reset();
    if (again) {
        detail::restamp_consumer_session(seg, *again, c.session);  // a repeat: the first reply was lost
        ok = resume(seg, *again);
    } else if (auto existing = durable ? detail::find_durable(seg, durable_name, scope) : std::nullopt) {
        const auto& s = seg.consumer_slot(*existing);
        const SlotState state = detail::state_of(s);
        if (held_by_live_owner(s, state))
            return reply_error(c, id, make_error(Errc::busy, "durable subscription '" + durable_name + "' on '" + topic +
                                                                 "' is attached by pid " + std::to_string(s.pid)));
        if (!detail::reattach_durable(seg, *existing, state, registration(c, req.token)))
            return reply_error(c, id, make_error(Errc::busy, "durable subscription '" + durable_name + "' on '" + topic +
                                                                 "' changed hands; try again"));
        ok = resume(seg, *existing);
    } else {
        auto placed = place_new(*t.value(), c, req, from, principal);
        if (!placed) {
            // A subscription that cannot start does not leave behind the topic it created.
            if (!existed && registry_.remove(topic)) {
                spdlog::info("removed topic '{}' again: its first subscription failed", topic);
                watchers_.rearm_timer();
            }
            return reply_error(c, id, placed.error());
        }
        ok = placed.value();
    }
    spdlog::info("pid {} subscribed to '{}' ({}{}{}) slot {} at id {}", c.process.pid, topic,
                 durable ? "durable " : "ephemeral", durable_name, ok->resumed ? ", resumed" : "", ok->slot, ok->next_id);
    return reply_with_topic(c, id, *t.value(), Role::subscribe, protocol::Type::subscribe_ok, &*ok, sizeof *ok, Writer{principal, std::nullopt});
}

// Unsubscribe and close: the slot must be this process's, through any of its connections (one
// registered before shmbusd restarted names an earlier connection).
TopicEntry* RequestHandlers::topic_of_own_slot(const protocol::Unsubscribe& req, const Process& p, bool consumer) {
    TopicEntry* t = registry_.find(std::string(field_name(req.topic)));
    if (t == nullptr) return nullptr;
    const auto& seg = t->segment();
    const bool ours = consumer ? req.slot < seg.max_consumers() && detail::owned_by(seg.consumer_slot(req.slot), p)
                               : req.slot < seg.max_producers() && detail::owned_by(seg.producer_slot(req.slot), p);
    return ours ? t : nullptr;
}

bool RequestHandlers::on_unsubscribe(Conn& c, uint32_t id, const protocol::Unsubscribe& req) {
    TopicEntry* t = topic_of_own_slot(req, c.process, true);
    if (t == nullptr) return reply_error(c, id, not_yours("slot", req.slot, std::string(field_name(req.topic))));
    t->supervisor.release_consumer(req.slot, c.process, kUnsubscribed);
    drop_unserved_services(*t);
    if (t->inbox_session == c.session) remove_inbox(*t);  // its one reader left: nobody waits for its replies
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool RequestHandlers::on_close_producer(Conn& c, uint32_t id, const protocol::Unsubscribe& req) {
    TopicEntry* t = topic_of_own_slot(req, c.process, false);
    if (t == nullptr) return reply_error(c, id, not_yours("producer slot", req.slot, std::string(field_name(req.topic))));
    t->supervisor.release_producer(req.slot, c.process, kClosed);
    watchers_.rearm_timer();  // a claim left to settle is re-checked on the timer
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool RequestHandlers::on_delete_subscription(Conn& c, uint32_t id, const protocol::SubscriptionName& req) {
    const std::string topic(field_name(req.topic));
    const std::string name(field_name(req.name));
    auto administered = topic_to_administer(c, topic);
    if (!administered) return reply_error(c, id, administered.error());
    TopicEntry* t = *administered;
    const auto& seg = t->segment();
    // Names are per uid (layout 1.9): the caller's own first, else the first of any uid's (an admin's
    // right), but never the archiver's.
    auto slot = detail::find_durable(seg, name, t->scope_of(user_principal(c.who.uid)));
    if (!slot && name != kArchiverSubscription) slot = detail::find_durable(seg, name);
    if (!slot) return reply_error(c, id, make_error(Errc::invalid_argument, "no durable subscription '" + name + "' on '" + topic + "'"));
    const auto& s = seg.consumer_slot(*slot);
    const SlotState state = detail::state_of(s);
    if (held_by_live_owner(s, state))
        return reply_error(c, id, make_error(Errc::busy, "durable subscription '" + name + "' is attached by pid " +
                                                             std::to_string(s.pid)));
    if (!detail::free_consumer(seg, *slot, state))
        return reply_error(c, id, make_error(Errc::busy, "durable subscription '" + name + "' changed hands; try again"));
    spdlog::info("deleted durable subscription '{}' of '{}'", name, topic);
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

}  // namespace shmbus::daemon
