// Topic requests: open (and create), delete, list, set.
#include "handlers/handlers.h"
#include "handlers/support.h"

#include "archives/archives.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "control/control.h"
#include "supervisor/registration.h"
#include "supervisor/sequences.h"
#include "watchers.h"
#include "shmbus/names.h"

namespace shmbus::daemon {

Result<TopicEntry*> RequestHandlers::find_or_create(const std::string& name, const protocol::WireConfig& wire, bool create,
                                                    uint32_t flags) {
    if (auto st = validate_topic_or_inbox_name(name); !st) return st.error();
    if (TopicEntry* t = registry_.find(name)) return t;
    if (is_inbox_name(name)) {
        if (!create) return make_error(Errc::topic_not_found, "no inbox '" + name + "': its requester is gone");
        return registry_.create(name, inbox_config(from_wire(wire, flags)));
    }
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
    if (auto st = validate_topic_or_inbox_name(name); !st) return reply_error(c, id, st.error());
    if (is_inbox_name(name) && registry_.find(name) == nullptr)  // made by its requester's subscription alone
        return reply_error(c, id, make_error(Errc::topic_not_found, "no inbox '" + name + "': its requester is gone"));
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

}  // namespace shmbus::daemon
