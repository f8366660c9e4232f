#include "handlers.h"

#include "archives.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "control.h"
#include "cursor.h"
#include "futex.h"
#include "gc.h"
#include "group.h"
#include "sequences.h"
#include "slots.h"
#include "watchers.h"
#include "shmbus/names.h"
#include "shmbus/version.h"

namespace shmbus::daemon {

using detail::copy_name;
using detail::field_name;
using detail::Registration;
using detail::SlotKind;
using detail::SlotState;

namespace {

TopicConfig from_wire(const protocol::WireConfig& w, uint32_t flags) {
    TopicConfig c;
    c.single_producer = (flags & protocol::kSingleProducer) != 0;
    c.capacity = w.capacity;
    c.max_message = w.max_message;
    c.on_full = OnFull(w.on_full);
    c.max_producers = w.max_producers;
    c.max_consumers = w.max_consumers;
    c.unblock_timeout = detail::duration_from_ns(w.unblock_timeout_ns);
    c.expire_detached = detail::duration_from_ns(w.expire_detached_ns);
    return c;
}

Registration registration(const Conn& c, uint64_t token) { return {c.process, token, c.session}; }

// A durable cursor in use: attached, and its owner still runs (a dead one's is free to take over).
bool held_by_live_owner(const layout::ConsumerSlot& s, SlotState state) {
    return state == SlotState::attached && detail::process_alive(Process{s.pid, s.start_time});
}

// The processes that hold a topic now: registered publishers and (with `subscribers`) attached
// subscribers whose owners still run (a detached durable cursor has no one to tell).
std::vector<int32_t> live_users(const detail::Segment& seg, bool subscribers = true) {
    std::vector<int32_t> pids;
    auto note = [&](int32_t pid, uint64_t start_time) {
        if (std::find(pids.begin(), pids.end(), pid) == pids.end() && detail::process_alive(Process{pid, start_time}))
            pids.push_back(pid);
    };
    for (uint32_t i = 0; i < seg.max_producers(); ++i) {
        const auto& p = seg.producer_slot(i);
        if (detail::producer_active(p)) note(p.pid, p.start_time);
    }
    for (uint32_t i = 0; subscribers && i < seg.max_consumers(); ++i) {
        const auto& s = seg.consumer_slot(i);
        // The archiver is the topic's own: deleting the topic stops it.
        if (detail::state_of(s) == SlotState::attached && seg.archiver_slot() != i) note(s.pid, s.start_time);
    }
    return pids;
}

std::string pid_list(const std::vector<int32_t>& pids) {
    std::string out = pids.size() == 1 ? "pid " : "pids ";
    for (std::size_t i = 0; i < pids.size() && i < 8; ++i) out += (i > 0 ? ", " : "") + std::to_string(pids[i]);
    if (pids.size() > 8) out += " and " + std::to_string(pids.size() - 8) + " more";
    return out;
}

// Marks a topic deleted for the clients that still map it, and wakes those asleep on it: their
// next publish fails and their subscriptions end once drained.
void tell_deleted(const detail::Segment& seg) {
    seg.mark_deleted();
    detail::futex_signal(seg.producers().data_futex);
    detail::futex_signal(seg.consumers().space_futex);
}

const char* doing(Operation op) {
    switch (op) {
        case Operation::publish: return "publish to";
        case Operation::subscribe: return "subscribe to";
        case Operation::admin: return "administer (create, delete, settings)";
        case Operation::observe: return "see";
    }
    return "use";
}

Error not_yours(const char* what, uint32_t slot, const std::string& topic) {
    return make_error(Errc::invalid_argument, std::string(what) + " " + std::to_string(slot) + " of '" + topic + "' is not yours");
}

}  // namespace

std::optional<Error> RequestHandlers::refused(const Conn& c, const std::string& topic, Operation op) const {
    const Decision d = access_.check(c.who, topic, op);
    if (d.allowed) {
        // A topic of an older shmbusd keeps its cursors in its segment: no descriptor could give
        // a subscriber its cursor without the ring, so it is not shared beyond the bus owner.
        const TopicEntry* t = registry_.find(topic);
        if (t == nullptr || t->cursor_fd >= 0 || d.privileged) return std::nullopt;
        spdlog::warn("denied: uid {} pid {} may not {} topic '{}': it was made by an older shmbusd (no cursor object)",
                     c.who.uid, c.process.pid, operation_name(op), topic);
        return make_error(Errc::permission_denied, "topic '" + topic + "' was made by an older shmbusd and is served to "
                                                   "the bus owner alone; delete and create it again to share it");
    }
    uint64_t suppressed = 0;
    const std::string kind = std::to_string(c.who.uid) + " " + operation_name(op) + " " + topic;
    if (denials_.allow(kind, detail::monotonic_ns(), suppressed)) {
        if (suppressed == 0)
            spdlog::warn("denied: uid {} pid {} may not {} topic '{}' ({})", c.who.uid, c.process.pid, operation_name(op), topic, d.rule);
        else
            spdlog::warn("denied: uid {} pid {} may not {} topic '{}' ({}); {} more such denials in the last second not logged",
                         c.who.uid, c.process.pid, operation_name(op), topic, d.rule, suppressed);
    }
    return make_error(Errc::permission_denied, "permission denied: uid " + std::to_string(c.who.uid) + " may not " + doing(op) +
                                                   " topic '" + topic + "'");
}

Result<TopicEntry*> RequestHandlers::topic_to_administer(const Conn& c, const std::string& name) const {
    if (auto e = refused(c, name, Operation::admin)) return *e;
    TopicEntry* t = registry_.find(name);
    if (t == nullptr) return make_error(Errc::topic_not_found, "no topic named '" + name + "'");
    return t;
}

// Only the topics this client may see: names are not public beyond the access they come with.
std::vector<std::string> RequestHandlers::visible_topics(const Conn& c) const {
    auto names = registry_.names();
    std::erase_if(names, [&](const std::string& n) { return !access_.check(c.who, n, Operation::observe).allowed; });
    return names;
}

std::optional<Error> RequestHandlers::refused_unless(const Conn& c, const std::string& topic, Operation op,
                                                     bool would_create) const {
    if (would_create && registry_.find(topic) == nullptr)
        if (auto e = refused(c, topic, Operation::admin)) return e;
    return refused(c, topic, op);
}

bool RequestHandlers::on_hello(Conn& c, uint32_t id, const protocol::Hello& req) {
    if (req.protocol_version != protocol::kProtocolVersion) {
        (void)reply_error(c, id, make_error(Errc::protocol_error, "protocol version " + std::to_string(req.protocol_version) +
                                                                      " is not supported (shmbusd speaks " +
                                                                      std::to_string(protocol::kProtocolVersion) + ")"));
        return false;
    }
    c.said_hello = true;
    c.name = std::string(field_name(req.client_name));
    spdlog::debug("client pid {} uid {} '{}' connected", c.process.pid, c.who.uid, c.name);
    protocol::HelloOk ok{protocol::kProtocolVersion, getpid(), bus_id_};
    return reply(c, protocol::Type::hello_ok, id, &ok, sizeof ok);
}

bool RequestHandlers::reply_with_topic(Conn& c, uint32_t id, const TopicEntry& t, Role role, protocol::Type type,
                                       const void* body, std::size_t size, const Writer& writer) {
    auto fds = t.hand_out(role, writer);
    if (!fds) return reply_error(c, id, fds.error());
    return reply(c, type, id, body, size, fds->fds);
}

bool RequestHandlers::park(Conn& c, const std::string& topic) {
    spdlog::debug("pid {}: waits for topic '{}', whose pages are being reserved", c.process.pid, topic);
    c.parked = true;
    return true;
}

Result<TopicEntry*> RequestHandlers::find_or_create(const std::string& name, const protocol::WireConfig& wire, bool create,
                                                    uint32_t flags) {
    if (auto st = validate_topic_name(name); !st) return st.error();
    if (TopicEntry* t = registry_.find(name)) return t;
    if (!create)
        return make_error(Errc::topic_not_found, "no topic named '" + name + "' (create it with: shmbus topic create " + name + ")");
    // The configuration file's settings for this topic win; a client that asked for nothing in
    // particular gets the configured defaults.
    TopicConfig settings = from_wire(wire, flags);
    if (auto named = config_.topics.find(name); named != config_.topics.end()) settings = named->second;
    else if ((flags & protocol::kDefaultConfig) && config_.defaults) settings = *config_.defaults;
    if (settings.on_full == OnFull::archive || config_.archives.count(name) != 0)
        if (auto st = archives_.open(true); !st) return make_error(st.error().code, "topic '" + name + "' needs an archive: " + st.error().message);
    auto t = registry_.create(name, settings);
    if (!t || *t == nullptr) return t;  // nullptr: its pages are being reserved
    const auto c = t.value()->segment().config();
    spdlog::info("created topic '{}': capacity {} B, max message {} B, on-full {}, unblock-timeout {} ms, "
                 "expire-detached {} s{}",
                 name, c.capacity, c.max_message, to_string(c.on_full), c.unblock_timeout.count() / 1'000'000,
                 c.expire_detached.count() / 1'000'000'000, c.single_producer ? ", single-producer" : "");
    watchers_.rearm_timer();
    return t;
}

bool RequestHandlers::on_open_topic(Conn& c, uint32_t id, const protocol::OpenTopic& req) {
    const std::string name(field_name(req.topic));
    const bool as_publisher = req.flags & protocol::kAsPublisher;
    if (auto st = validate_topic_name(name); !st) return reply_error(c, id, st.error());
    const std::string producer(field_name(req.producer));
    if (!producer.empty()) {
        if (!as_publisher) return reply_error(c, id, make_error(Errc::invalid_argument, "a producer name needs a publisher"));
        if (auto st = validate_producer_name(producer); !st) return reply_error(c, id, st.error());
    }
    if (auto e = refused_unless(c, name, as_publisher ? Operation::publish : Operation::observe,
                                req.flags & protocol::kCreateIfMissing))
        return reply_error(c, id, *e);
    const bool existed = registry_.find(name) != nullptr;
    if (existed && (req.flags & protocol::kExclusive))
        return reply_error(c, id, make_error(Errc::topic_exists, "topic '" + name + "' already exists"));
    auto t = find_or_create(name, req.config, req.flags & protocol::kCreateIfMissing, req.flags);
    if (!t) return reply_error(c, id, t.error());
    if (*t == nullptr) return park(c, name);
    const auto& seg = t.value()->segment();
    if (!producer.empty() && seg.sequence_entries() == 0)
        return reply_error(c, id, make_error(Errc::bad_version, "topic '" + name +
                                                                    "' was made by an older shmbusd and has no room for named "
                                                                    "producers; delete and create it again to use them"));
    protocol::TopicOk ok{seg.size(), protocol::kNoSlot, existed ? 0u : 1u, protocol::kNoSlot, 0};
    if (as_publisher) {
        auto slot = detail::producer_by_token(seg, c.process, req.token);
        if (slot) {
            detail::restamp_producer_session(seg, *slot, c.session);  // a repeat: the first reply was lost
        } else {
            if (seg.single_producer())
                if (auto st = t.value()->supervisor.free_single_producer(); !st) return reply_error(c, id, st.error());
            if (!producer.empty())
                if (auto st = t.value()->supervisor.free_producer_name(producer); !st) return reply_error(c, id, st.error());
            slot = detail::register_producer(seg, registration(c, req.token));
        }
        if (!slot)
            return reply_error(c, id, make_error(Errc::no_free_slot, "topic '" + name + "' has no free producer slot (max " +
                                                                         std::to_string(seg.max_producers()) + ")"));
        ok.producer_slot = *slot;
        if (!producer.empty()) {
            auto entry = detail::hold_sequence_entry(seg, producer, *slot);
            if (!entry) {
                detail::free_producer(seg, *slot);
                return reply_error(c, id, entry.error());
            }
            ok.sequence_entry = *entry;
        }
    }
    return reply_with_topic(c, id, *t.value(), as_publisher ? Role::publish : Role::observe, protocol::Type::topic_ok, &ok,
                            sizeof ok);
}

bool RequestHandlers::on_delete_topic(Conn& c, uint32_t id, const protocol::DeleteTopic& req) {
    const std::string name(field_name(req.topic));
    if (auto st = validate_topic_name(name); !st) return reply_error(c, id, st.error());
    auto administered = topic_to_administer(c, name);
    if (!administered) return reply_error(c, id, administered.error());
    TopicEntry* t = *administered;
    const std::vector<int32_t> users = live_users(t->segment());
    if (!users.empty() && !(req.flags & protocol::kForce))
        return reply_error(c, id, make_error(Errc::busy, "topic '" + name + "' is in use by " + pid_list(users) +
                                                             "; stop them first, or delete it anyway with --force"));
    if (!users.empty()) tell_deleted(t->segment());
    archives_.forget(name);  // its archiver stopped and its archive removed, before the topic goes
    if (auto st = registry_.remove(name); !st) return reply_error(c, id, st.error());
    if (users.empty()) spdlog::info("deleted topic '{}'", name);
    else spdlog::warn("deleted topic '{}' under {} (forced; they were told)", name, pid_list(users));
    watchers_.rearm_timer();
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool RequestHandlers::on_list_topics(Conn& c, uint32_t id, const protocol::ListTopics& req) {
    const auto names = visible_topics(c);
    const uint32_t total = uint32_t(names.size());
    const uint32_t first = std::min(req.offset, total);
    const uint32_t count = std::min(protocol::kNamesPerList, total - first);
    std::vector<std::byte> body(sizeof(protocol::TopicList) + std::size_t(count) * protocol::kNameField);
    protocol::TopicList head{total, count};
    std::memcpy(body.data(), &head, sizeof head);
    for (uint32_t i = 0; i < count; ++i) {
        const auto& n = names[first + i];
        std::memcpy(body.data() + sizeof head + std::size_t(i) * protocol::kNameField, n.data(),
                    std::min(n.size(), protocol::kNameField - 1));
    }
    return reply(c, protocol::Type::topic_list, id, body.data(), body.size());
}

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
    if (auto st = validate_topic_name(topic); !st) return reply_error(c, id, st.error());
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
    StartFrom from{};
    if (!protocol::start_from_wire(req.from, from))
        return reply_error(c, id, make_error(Errc::invalid_argument, "unknown start position"));
    const bool existed = registry_.find(topic) != nullptr;
    auto t = find_or_create(topic, req.config, true, req.flags);
    if (!t) return reply_error(c, id, t.error());
    if (*t == nullptr) return park(c, topic);
    const auto& seg = t.value()->segment();
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
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool RequestHandlers::on_close_producer(Conn& c, uint32_t id, const protocol::Unsubscribe& req) {
    TopicEntry* t = topic_of_own_slot(req, c.process, false);
    if (t == nullptr) return reply_error(c, id, not_yours("producer slot", req.slot, std::string(field_name(req.topic))));
    t->supervisor.release_producer(req.slot, c.process, kClosed);
    watchers_.rearm_timer();  // a claim left to settle is re-checked on the timer
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool RequestHandlers::on_gc(Conn& c, uint32_t id, const protocol::NoBody&) {
    // gc touches no topic of this bus, only what dead buses left: any admin may run it.
    if (!access_.holds_anywhere(c.who, Operation::admin)) {
        spdlog::warn("denied: uid {} pid {} may not run gc (no admin rights)", c.who.uid, c.process.pid);
        return reply_error(c, id, make_error(Errc::permission_denied, "permission denied: uid " + std::to_string(c.who.uid) +
                                                                          " may not run gc (it needs admin rights)"));
    }
    const auto removed = detail::collect_stale(bus_id_, 60);
    for (const auto& r : removed) spdlog::warn("gc: removed {} ({})", r.what, r.why);
    const uint32_t count = uint32_t(std::min<std::size_t>(removed.size(), protocol::kGcEntriesPerReply));
    std::vector<std::byte> body(sizeof(protocol::GcReport) + count * sizeof(protocol::GcEntry));
    const protocol::GcReport head{uint32_t(removed.size()), count};
    std::memcpy(body.data(), &head, sizeof head);
    for (uint32_t i = 0; i < count; ++i) {
        protocol::GcEntry e{};
        copy_name(e.what, removed[i].what);
        copy_name(e.why, removed[i].why);
        std::memcpy(body.data() + sizeof head + i * sizeof e, &e, sizeof e);
    }
    return reply(c, protocol::Type::gc_report, id, body.data(), body.size());
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
        const std::string diff = (req.flags & protocol::kGroupSettingsGiven)
                                     ? detail::settings_difference(seg.group_block(place->block).settings, asked)
                                     : std::string();
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
        auto made = detail::create_group(seg, group, asked, from, req.from_id, registration(c, 0), block, *scope);
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

bool RequestHandlers::on_set_topic(Conn& c, uint32_t id, const protocol::SetTopic& req) {
    const std::string name(field_name(req.topic));
    if (auto st = validate_topic_name(name); !st) return reply_error(c, id, st.error());
    auto administered = topic_to_administer(c, name);
    if (!administered) return reply_error(c, id, administered.error());
    TopicEntry* t = *administered;
    const auto& seg = t->segment();
    OnFull on_full = seg.live_on_full();
    uint64_t unblock = seg.unblock_timeout_ns(), expire = seg.expire_detached_ns();
    auto bad = [&](const std::string& why) { return reply_error(c, id, make_error(Errc::invalid_argument, why)); };
    if (req.which & protocol::kSetOnFull) {
        const bool switchable = req.on_full == uint32_t(OnFull::block) || req.on_full == uint32_t(OnFull::fail);
        if (seg.on_full() == OnFull::overwrite || !switchable)
            return bad("on-full of topic '" + name + "' can change between block and fail only: overwrite changes how "
                       "subscriptions hold publishers back; delete and create the topic to change it");
        on_full = OnFull(req.on_full);
    }
    if (req.which & protocol::kSetUnblockTimeout) {
        if (req.unblock_timeout_ns != 0 && req.unblock_timeout_ns < uint64_t(std::chrono::nanoseconds(kMinUnblockTimeout).count()))
            return bad("unblock-timeout must be off or at least " + std::to_string(kMinUnblockTimeout.count()) + "ms");
        // Publishers settle their claims one way or the other depending on whether the topic has
        // an unblock-timeout, chosen when they attach: switching it needs none attached.
        const auto publishers = live_users(seg, /*subscribers=*/false);
        if ((req.unblock_timeout_ns == 0) != (unblock == 0) && !publishers.empty())
            return reply_error(c, id, make_error(Errc::busy, "unblock-timeout of topic '" + name + "' can be switched " +
                                                                 (unblock == 0 ? "on" : "off") + " only while no publisher is "
                                                                 "registered (now: " + pid_list(publishers) + ")"));
        unblock = req.unblock_timeout_ns;
    }
    if (req.which & protocol::kSetExpireDetached) expire = req.expire_detached_ns;
    t->supervisor.set_live_settings(on_full, unblock, expire);
    spdlog::info("topic '{}' settings changed: on-full {}, unblock-timeout {} ms, expire-detached {} s", name, to_string(on_full),
                 unblock / 1'000'000, expire / 1'000'000'000);
    watchers_.rearm_timer();  // the supervisor's tick depends on the timeouts
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool RequestHandlers::on_bus_info(Conn& c, uint32_t id, const protocol::NoBody&) {
    protocol::BusInfoOk ok{};
    ok.daemon_pid = getpid();
    ok.clients = uint32_t(clients_);
    ok.started_ns = started_ns_;
    ok.topics = uint32_t(visible_topics(c).size());
    copy_name(ok.version, kVersion);
    return reply(c, protocol::Type::bus_info_ok, id, &ok, sizeof ok);
}

void RequestHandlers::on_disconnect(const Conn& c) {
    --clients_;
    std::size_t released = 0;
    registry_.for_each([&](TopicEntry& t) { released += t.supervisor.release_connection(c.process, c.session, kClientGone); });
    if (released != 0) {
        spdlog::info("client pid {} '{}' disconnected; released {} slot(s)", c.process.pid, c.name, released);
        watchers_.rearm_timer();
    }
}

}  // namespace shmbus::daemon

namespace shmbus::daemon {

bool RequestHandlers::on_set_archive(Conn& c, uint32_t id, const protocol::SetArchive& req) {
    const std::string name(field_name(req.topic));
    auto administered = topic_to_administer(c, name);
    if (!administered) return reply_error(c, id, administered.error());
    ArchiveSettings s;
    s.retain_bytes = req.settings.retain_bytes;
    s.retain_time = std::chrono::nanoseconds(int64_t(std::min<uint64_t>(req.settings.retain_ns, INT64_MAX)));
    s.file_bytes = req.settings.file_bytes;
    if (req.settings.fsync > uint32_t(ArchiveFsync::always))
        return reply_error(c, id, make_error(Errc::invalid_argument, "unknown fsync policy"));
    s.fsync = ArchiveFsync(req.settings.fsync);
    if (auto st = archives_.enable(**administered, s); !st) return reply_error(c, id, st.error());
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool RequestHandlers::on_open_archive(Conn& c, uint32_t id, const protocol::TopicName& req) {
    const std::string name(field_name(req.topic));
    if (auto st = validate_topic_name(name); !st) return reply_error(c, id, st.error());
    if (auto e = refused_unless(c, name, Operation::subscribe, false)) return reply_error(c, id, *e);
    if (registry_.find(name) == nullptr) return reply_error(c, id, make_error(Errc::topic_not_found, "no topic named '" + name + "'"));
    auto settings = archives_.settings(name);
    auto fd = archives_.open_dir(name);
    if (!fd || !settings) return reply_error(c, id, fd ? make_error(Errc::invalid_argument, "topic '" + name + "' is not archived") : fd.error());
    protocol::ArchiveOk ok{};
    ok.settings = {settings->retain_bytes, uint64_t(settings->retain_time.count()), settings->file_bytes,
                   uint32_t(settings->fsync), 0};
    detail::PassedFds fds;
    fds.segment = *fd;
    const bool sent = reply(c, protocol::Type::archive_ok, id, &ok, sizeof ok, fds);
    ::close(*fd);
    return sent;
}

}  // namespace shmbus::daemon
