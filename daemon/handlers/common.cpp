// Requests every client makes and what every handler shares: hello, access checks, replies that
// carry a topic's descriptors, parking, bus info, gc, a connection's end.
#include "handlers/handlers.h"
#include "handlers/support.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "control/control.h"
#include "core/futex.h"
#include "core/gc.h"
#include "watchers.h"
#include "shmbus/names.h"
#include "shmbus/version.h"

namespace shmbus::daemon {

std::optional<Error> RequestHandlers::refused_inbox(const Conn& c, const std::string& inbox, Operation op) const {
    const TopicEntry* t = registry_.find(inbox);
    // The name is the capability: whoever knows it may reply (publish); the connection that made
    // it alone may read it, look at it, or make it (subscribe to it first).
    const bool own = t != nullptr ? t->inbox_session == c.session : op == Operation::subscribe;
    if (op == Operation::publish || own) return std::nullopt;
    return make_error(Errc::permission_denied, "permission denied: inbox '" + inbox + "' belongs to another connection");
}

std::optional<Error> RequestHandlers::refused_new_inbox(const Conn& c) const {
    // An inbox is made without the access rules' say: only for a user who may call something
    // (publish somewhere), and a bounded number per connection, so that nobody fills /dev/shm with them.
    if (!access_.holds_anywhere(c.who, Operation::publish))
        return make_error(Errc::permission_denied, "permission denied: uid " + std::to_string(c.who.uid) +
                                                       " may publish to no topic, so it has nothing to call and needs no inbox");
    std::size_t held = 0;
    registry_.for_each([&](const TopicEntry& t) { held += t.inbox_session == c.session ? 1 : 0; });
    if (held >= kMaxInboxesPerConnection)
        return make_error(Errc::no_free_slot, "this connection already has " + std::to_string(held) +
                                                  " inboxes, one per call in flight at once, the most it may have");
    return std::nullopt;
}

std::optional<Error> RequestHandlers::refused(const Conn& c, const std::string& topic, Operation op) const {
    if (is_inbox_name(topic)) return refused_inbox(c, topic, op);
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
    std::erase_if(names, [&](const std::string& n) { return is_inbox_name(n) || !access_.check(c.who, n, Operation::observe).allowed; });
    return names;
}

std::optional<Error> RequestHandlers::refused_unless(const Conn& c, const std::string& topic, Operation op,
                                                     bool would_create) const {
    if (is_inbox_name(topic)) return refused_inbox(c, topic, op);
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

bool RequestHandlers::on_bus_info(Conn& c, uint32_t id, const protocol::NoBody&) {
    protocol::BusInfoOk ok{};
    ok.daemon_pid = getpid();
    ok.clients = uint32_t(clients_);
    ok.started_ns = started_ns_;
    ok.topics = uint32_t(visible_topics(c).size());
    ok.pattern_subscriptions = uint32_t(std::count_if(patterns_.begin(), patterns_.end(), [&](const PatternRecord& p) {
        return access_.privileged(c.who) || p.uid == c.who.uid;
    }));
    copy_name(ok.version, kVersion);
    return reply(c, protocol::Type::bus_info_ok, id, &ok, sizeof ok);
}

void RequestHandlers::on_disconnect(const Conn& c) {
    --clients_;
    std::size_t released = 0;
    std::vector<TopicEntry*> inboxes;
    registry_.for_each([&](TopicEntry& t) {
        const std::size_t freed = t.supervisor.release_connection(c.process, c.session, kClientGone);
        if (freed != 0) drop_unserved_services(t);
        released += freed;
        if (t.inbox_session == c.session) inboxes.push_back(&t);
    });
    for (TopicEntry* t : inboxes) remove_inbox(*t);
    std::erase_if(patterns_, [&](const PatternRecord& p) { return p.session == c.session; });
    if (released != 0) {
        spdlog::info("client pid {} '{}' disconnected; released {} slot(s)", c.process.pid, c.name, released);
        watchers_.rearm_timer();
    }
}

void RequestHandlers::remove_inbox(TopicEntry& t) {
    const std::string name = t.name();
    // Responders that still map it see `deleted` at their next reply, and let it go.
    if (!live_users(t.segment()).empty()) tell_deleted(t.segment());
    if (auto st = registry_.remove(name); !st) spdlog::warn("cannot remove inbox '{}': {}", name, st.error().message);
    else spdlog::debug("removed inbox '{}'", name);
    watchers_.rearm_timer();
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

}  // namespace shmbus::daemon
