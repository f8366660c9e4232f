// shmbusd: the supervisor of one bus directory. A single-threaded epoll loop over a
// SOCK_SEQPACKET listening socket and its clients; it is never on the data path.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "gc.h"
#include "protocol.h"
#include "registry.h"
#include "shmbus/result.h"

namespace shmbus::daemon {

struct Options {
    std::string dir;
};

class Daemon {
public:
    explicit Daemon(Options options);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Prepares the directory, takes the lock, re-adopts segments and listens.
    [[nodiscard]] Status start();
    // Serves clients until SIGTERM or SIGINT. Returns the process exit code.
    int run();

private:
    struct Owned {
        std::string topic;
        uint32_t slot;
        bool consumer;  // false: a producer slot
    };
    struct Owner {
        pid_t pid = 0;
        uint64_t start_time = 0;
    };
    // Why a slot is released: the text is for the log; only a death counts as a recovery.
    struct Release {
        const char* text;
        bool death;
    };
    static constexpr Release kUnsubscribed{"unsubscribed", false};
    static constexpr Release kClosed{"closed", false};
    static constexpr Release kClientGone{"client gone", true};
    static constexpr Release kExited{"process exited", true};
    static constexpr Release kDiedWhileDown{"died while shmbusd was down", true};
    struct Conn {
        int fd = -1;
        pid_t pid = 0;
        uid_t uid = 0;
        gid_t gid = 0;
        uint64_t start_time = 0;
        bool said_hello = false;
        std::string name;
        std::vector<Owned> owned;
    };

    [[nodiscard]] Status prepare_dir();
    [[nodiscard]] Status take_lock();
    [[nodiscard]] Status load_bus_id();
    [[nodiscard]] Status listen_socket();
    // --- recovery (daemon/supervise.cpp) ---
    void reconcile(TopicEntry& topic);
    void watch_owner(pid_t pid, uint64_t start_time);  // a live owner with no connection
    void owner_died(int pidfd);
    void on_tick();
    void rearm_timer();
    void unblock_stalled_claims(TopicEntry& t, uint64_t now_ns);
    void expire_detached(TopicEntry& t, uint64_t now_wall_ns);
    void retry_dying(TopicEntry& t);
    void free_producer_slot(TopicEntry& t, uint32_t slot, detail::SealOutcome outcome, Release why);
    [[nodiscard]] bool owned_by(const layout::ConsumerSlot& s, const Owner& o) const noexcept;
    [[nodiscard]] bool owned_by(const layout::ProducerSlot& p, const Owner& o) const noexcept;

    void accept_clients();
    void serve(Conn& c);  // one readable event
    void disconnect(int fd);
    [[nodiscard]] bool dispatch(Conn& c, const protocol::FrameHeader& h, const std::byte* body, std::size_t size);

    bool on_hello(Conn& c, uint32_t id, const protocol::Hello& req);
    bool on_open_topic(Conn& c, uint32_t id, const protocol::OpenTopic& req);
    bool on_delete_topic(Conn& c, uint32_t id, const protocol::TopicName& req);
    bool on_list_topics(Conn& c, uint32_t id, const protocol::ListTopics& req);
    bool on_subscribe(Conn& c, uint32_t id, const protocol::Subscribe& req);
    bool on_unsubscribe(Conn& c, uint32_t id, const protocol::Unsubscribe& req);
    bool on_delete_subscription(Conn& c, uint32_t id, const protocol::SubscriptionName& req);
    bool on_gc(Conn& c, uint32_t id);
    bool on_close_producer(Conn& c, uint32_t id, const protocol::Unsubscribe& req);
    [[nodiscard]] uint32_t retried_consumer(const detail::Segment& seg, const Conn& c, uint64_t token) const;
    [[nodiscard]] uint32_t retried_producer(const detail::Segment& seg, const Conn& c, uint64_t token) const;

    [[nodiscard]] Result<TopicEntry*> find_or_create(const std::string& name, const protocol::WireConfig& wire, bool create);
    // Each acts only if the slot still belongs to `owner`: the same death may be seen twice
    // (connection closed, pidfd readable), and a slot may have changed hands in between.
    void release_consumer(TopicEntry& t, uint32_t slot, const Owner& owner, Release why);
    void release_producer(TopicEntry& t, uint32_t slot, const Owner& owner, Release why);
    bool reply(Conn& c, protocol::Type type, uint32_t id, const void* body, std::size_t size, int fd = -1);
    bool reply_error(Conn& c, uint32_t id, const Error& e);

    Options options_;
    uint64_t bus_id_ = 0;
    int lock_fd_ = -1;
    int listen_fd_ = -1;
    int epoll_fd_ = -1;
    int signal_fd_ = -1;
    int timer_fd_ = -1;
    uint64_t tick_ns_ = 0;  // current timer period; 0: disarmed
    std::unordered_map<int, Owner> watched_;  // pidfd -> live owner of slots, without a connection
    std::string socket_path_;
    std::unique_ptr<Registry> registry_;
    std::unordered_map<int, Conn> conns_;
};

}  // namespace shmbus::daemon
