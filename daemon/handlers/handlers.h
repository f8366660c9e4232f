// shmbusd's request handlers: one function per request type, each given a decoded, size-checked
// body (the server's routing table does that) and answering with one reply. A false return
// closes the connection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "access_control.h"
#include "config.h"
#include "connection.h"
#include "log_limit.h"
#include "control/protocol.h"
#include "registry.h"
#include "core/wall_clock.h"

namespace shmbus::daemon {

class Watchers;
class Archives;

class RequestHandlers {
public:
    // `access` may be replaced while serving (a configuration reload): it is read per request.
    // `config` supplies the settings of topics it names and the defaults; read per request too.
    RequestHandlers(Registry& registry, Watchers& watchers, const AccessControl& access, const Config& config, uint64_t bus_id,
                    Archives& archives)
        : registry_(registry), watchers_(watchers), access_(access), config_(config), bus_id_(bus_id), archives_(archives) {}

    bool on_hello(Conn& c, uint32_t id, const protocol::Hello& req);
    bool on_open_topic(Conn& c, uint32_t id, const protocol::OpenTopic& req);
    bool on_delete_topic(Conn& c, uint32_t id, const protocol::DeleteTopic& req);
    bool on_list_topics(Conn& c, uint32_t id, const protocol::ListTopics& req);
    bool on_subscribe(Conn& c, uint32_t id, const protocol::Subscribe& req);
    bool on_unsubscribe(Conn& c, uint32_t id, const protocol::Unsubscribe& req);
    bool on_close_producer(Conn& c, uint32_t id, const protocol::Unsubscribe& req);
    bool on_delete_subscription(Conn& c, uint32_t id, const protocol::SubscriptionName& req);
    bool on_delete_group(Conn& c, uint32_t id, const protocol::SubscriptionName& req);
    bool on_gc(Conn& c, uint32_t id, const protocol::NoBody& req);
    bool on_bus_info(Conn& c, uint32_t id, const protocol::NoBody& req);
    bool on_set_topic(Conn& c, uint32_t id, const protocol::SetTopic& req);
    bool on_join_group(Conn& c, uint32_t id, const protocol::JoinGroup& req);
    bool on_set_archive(Conn& c, uint32_t id, const protocol::SetArchive& req);
    bool on_open_archive(Conn& c, uint32_t id, const protocol::TopicName& req);
    bool on_watch_pattern(Conn& c, uint32_t id, const protocol::PatternWatch& req);
    bool on_list_patterns(Conn& c, uint32_t id, const protocol::ListTopics& req);
    // A pattern subscription some connection said it holds (shmbus/pattern.h): shown, never acted on.
    struct PatternRecord {
        std::string pattern;
        uint64_t session;
        int32_t pid;
        uid_t uid;
    };
    [[nodiscard]] const std::vector<PatternRecord>& patterns() const noexcept { return patterns_; }
    static constexpr std::size_t kMaxPatternsPerConnection = 256;
    void on_connect(const Conn&) { ++clients_; }
    [[nodiscard]] std::size_t clients() const noexcept { return clients_; }
    [[nodiscard]] uint64_t started_ns() const noexcept { return started_ns_; }
    // The connection closed: what it registered is released (its slots say which).
    void on_disconnect(const Conn& c);

private:
    // An error, logged with the rule that decided (a repeated denial at most once a second, with a
    // count of those left out), unless `c` may do `op` to `topic`.
    [[nodiscard]] std::optional<Error> refused(const Conn& c, const std::string& topic, Operation op) const;
    // The same for a reply inbox (shmbus/names.h), whose rules are its own.
    [[nodiscard]] std::optional<Error> refused_inbox(const Conn& c, const std::string& inbox, Operation op) const;
    // Why `c` may not make another inbox, if it may not.
    [[nodiscard]] std::optional<Error> refused_new_inbox(const Conn& c) const;
    static constexpr std::size_t kMaxInboxesPerConnection = 64;
    // Removes an inbox whose reader is gone.
    void remove_inbox(TopicEntry& t);
    // The access a request needs for `topic`, checked: `op`, and admin too if it would create it.
    [[nodiscard]] std::optional<Error> refused_unless(const Conn& c, const std::string& topic, Operation op,
                                                      bool would_create) const;
    // An existing topic `c` may administer (create, delete, settings), or the error saying why not.
    [[nodiscard]] Result<TopicEntry*> topic_to_administer(const Conn& c, const std::string& name) const;
    [[nodiscard]] std::vector<std::string> visible_topics(const Conn& c) const;
    // The topic of the slot a request names, if that slot exists and is `p`'s; else nullptr.
    [[nodiscard]] TopicEntry* topic_of_own_slot(const protocol::Unsubscribe& req, const Process& p, bool consumer);
    // Replies `type` with `body` and the topic's descriptors for `role` (a subscriber: writing
    // only what `writer` may write).
    [[nodiscard]] bool reply_with_topic(Conn& c, uint32_t id, const TopicEntry& t, Role role, protocol::Type type,
                                        const void* body, std::size_t size, const Writer& writer = {});
    // Leaves the request unanswered until the topic it needs has been created (Server::resume_parked).
    [[nodiscard]] bool park(Conn& c, const std::string& topic);
    // `flags`: the request's OpenFlags (kDefaultConfig: the client left its settings as constructed).
    // A value of nullptr: the topic is being created (large: its pages are being reserved); park.
    [[nodiscard]] Result<TopicEntry*> find_or_create(const std::string& name, const protocol::WireConfig& wire, bool create,
                                                     uint32_t flags);
    // Resumes an existing cursor (a reattach, or a repeated request): reading goes on from its last ack.
    [[nodiscard]] protocol::SubscribeOk resume(const detail::Segment& seg, uint32_t slot) const;
    [[nodiscard]] Result<protocol::SubscribeOk> place_new(TopicEntry& t, const Conn& c, const protocol::Subscribe& req,
                                                         StartFrom from, const std::string& principal);

    Registry& registry_;
    Watchers& watchers_;
    const AccessControl& access_;
    const Config& config_;
    uint64_t started_ns_ = detail::WallClock::system_ns();
    std::size_t clients_ = 0;
    uint64_t bus_id_;
    Archives& archives_;
    std::vector<PatternRecord> patterns_;
    mutable LogLimit denials_;  // refused() is const: a denial changes no state but the log's
};

}  // namespace shmbus::daemon
