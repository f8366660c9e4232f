// Client: the connection of one process to shmbusd. It opens topics, creates subscriptions and
// keeps the control connection open for as long as any Publisher or Subscriber lives, which is
// how the daemon knows this process is alive.
//
//   auto client = shmbus::Client::connect();   // $SHMBUS_DIR or the per-user default
//   if (!client) { std::cerr << client.error().message << "\n"; return 1; }
//   auto pub = client->publisher("prices");
//
// Threads: a Client may be used by any number of threads at once (its requests to shmbusd are
// serialized). Publishers and Subscribers it makes are each used by one thread at a time
// (docs/threads.md).
#pragma once

#include <cstdint>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/archive.h"
#include "shmbus/pattern.h"
#include "shmbus/publisher.h"
#include "shmbus/request.h"
#include "shmbus/result.h"
#include "shmbus/subscriber.h"
#include "shmbus/topic.h"

namespace shmbus {

namespace detail {
class ControlChannel;
class Conversations;
struct Inbox;
}

struct ClientOptions {
    std::string dir;           // empty: default_bus_dir()
    std::string name;          // shown by the daemon in its logs
    // Deadline of each control request (open, subscribe, list...), including the time spent
    // reconnecting when shmbusd went away: it is retried with exponential backoff until then.
    std::chrono::milliseconds timeout{5000};
    // How long connect() waits for shmbusd to appear (it may be starting or restarting, as right
    // after `shmbusd &`), retrying with the same backoff: 2 s, as the `shmbus` CLI waits by default
    // (its --wait). 0: fail at once with daemon_not_running.
    std::chrono::milliseconds connect_wait{2000};
    // A background thread that notices at once when shmbusd goes away and reconnects (with
    // exponential backoff) before anything needs it. Off: the next request reconnects instead.
    bool reconnect_in_background = true;
};

// One thing `collect_garbage` removed.
struct RemovedItem {
    std::string what;  // "segment /dev/shm/..." or "socket /path"
    std::string why;
};

// The supervisor a Client talks to.
struct BusInfo {
    int32_t daemon_pid = 0;
    std::string version;
    std::chrono::system_clock::time_point started;
    uint32_t clients = 0;  // connections open now, the asking one included
    uint32_t topics = 0;   // topics the caller may see
    uint32_t pattern_subscriptions = 0;  // pattern subscriptions the caller may see
};

// What `Client::collect_garbage` does, without a shmbusd (for when none runs): removes the
// segments and sockets of buses that no longer run. A bus whose directory still holds its bus id
// keeps everything (its shmbusd may start again), and so does every other user's.
[[nodiscard]] Result<std::vector<RemovedItem>> collect_garbage_without_daemon() noexcept;

// $SHMBUS_DIR, else $XDG_RUNTIME_DIR/shmbus, else /run/shmbus for root, else /tmp/shmbus-<uid>.
[[nodiscard]] std::string default_bus_dir();
[[nodiscard]] std::string socket_path(const std::string& dir);

class Client {
public:
    [[nodiscard]] static Result<Client> connect(ClientOptions options = {}) noexcept;

    [[nodiscard]] Result<Publisher> publisher(std::string_view topic,
                                              PublisherOptions options = {}) noexcept;
    [[nodiscard]] Result<Subscriber> subscribe(std::string_view topic,
                                               SubscribeOptions options = {}) noexcept;
    // One subscription over every topic matching `pattern` ('*' one token, '>' one or more),
    // topics created later included (shmbus/pattern.h, docs/patterns.md).
    [[nodiscard]] Result<PatternSubscriber> subscribe_pattern(std::string_view pattern,
                                                              SubscribeOptions options = {}) noexcept;

    // Request/reply (shmbus/request.h, docs/requests.md). request(): the one reply, or why there is
    // none (no_responder, timed_out, responder_died, responder_error). gather(): the replies that
    // came by max_replies or the deadline (timed_out only if none did).
    [[nodiscard]] Result<Reply> request(std::string_view topic, std::span<const std::byte> payload,
                                        const RequestOptions& options = {}) noexcept;
    [[nodiscard]] Result<Reply> request(std::string_view topic, std::string_view payload,
                                        const RequestOptions& options = {}) noexcept;
    [[nodiscard]] Result<std::vector<Reply>> gather(std::string_view topic, std::span<const std::byte> payload,
                                                    const GatherOptions& options = {}) noexcept;
    [[nodiscard]] Result<std::vector<Reply>> gather(std::string_view topic, std::string_view payload,
                                                    const GatherOptions& options = {}) noexcept;
    // Joins the service group options.group of `topic` as a responder (the topic is created if missing).
    [[nodiscard]] Result<Responder> serve(std::string_view topic, ServeOptions options = {}) noexcept;

    [[nodiscard]] Status create_topic(std::string_view topic, const TopicConfig& config) noexcept;
    // Changes the settings a live topic may change; the others stay. on-full switches between
    // block and fail (overwrite changes how subscriptions gate publishers: not on a live topic);
    // unblock-timeout changes freely between non-zero values, and on or off only while no
    // publisher is registered; expire-detached changes freely.
    struct LiveSettings {
        std::optional<OnFull> on_full;
        std::optional<std::chrono::nanoseconds> unblock_timeout;  // 0: off
        std::optional<std::chrono::nanoseconds> expire_detached;  // 0: never
    };
    [[nodiscard]] Status set_topic(std::string_view topic, const LiveSettings& settings) noexcept;
    // Refused (busy) while live publishers or subscribers hold the topic, unless `force`: then
    // their next publish returns PublishStatus::deleted, and their subscriptions deliver what was
    // published and then return ReceiveStatus::deleted.
    [[nodiscard]] Status delete_topic(std::string_view topic, bool force = false) noexcept;
    [[nodiscard]] Result<std::vector<std::string>> list_topics() noexcept;
    // The pattern subscriptions clients hold now: the bus owner and root see everyone's, others
    // their own uid's (shown by `topic info`, bus-top and the metrics).
    [[nodiscard]] Result<std::vector<PatternSubscriptionInfo>> pattern_subscriptions() noexcept;
    [[nodiscard]] Result<TopicStats> topic_stats(std::string_view topic) noexcept;
    // Removes a durable subscription's cursor (it stops gating publishers).
    [[nodiscard]] Status delete_subscription(std::string_view topic, std::string_view name) noexcept;
    // Creates consumer group `group` of `topic` with `settings`, its first message the one `from`
    // names. A group that exists with the same settings is success; with others, an error naming
    // the difference. The topic is created (with the bus defaults) if missing.
    [[nodiscard]] Status create_group(std::string_view topic, std::string_view group, const GroupSettings& settings,
                                      StartFrom from = StartFrom::latest, uint64_t from_id = 0) noexcept;
    // Deletes a group with no members: its unsettled messages and position are gone, and it no
    // longer holds publishers back.
    [[nodiscard]] Status delete_group(std::string_view topic, std::string_view group) noexcept;

    // Archives `topic` from now on (docs/archive.md), or changes an archived topic's settings. The
    // archive starts with what the ring holds then; an archive is removed only with its topic.
    [[nodiscard]] Status set_archive(std::string_view topic, const ArchiveSettings& settings) noexcept;
    // An archived topic's archive settings (compacted or not, retention, fsync), without reading its files.
    [[nodiscard]] Result<ArchiveSettings> archive_settings(std::string_view topic) noexcept;
    // An archived topic's files: bytes, records, first and last id and time.
    [[nodiscard]] Result<ArchiveInfo> archive_info(std::string_view topic) noexcept;
    // Reads every record of the archive and checks its checksum and the order of ids.
    [[nodiscard]] Result<ArchiveVerifyReport> verify_archive(std::string_view topic) noexcept;

    // Asks shmbusd to remove the segments and sockets of buses that no longer run (it also does
    // so when it starts); returns what it removed.
    [[nodiscard]] Result<std::vector<RemovedItem>> collect_garbage() noexcept;

    // The supervisor: pid, version, uptime, clients, topics.
    [[nodiscard]] Result<BusInfo> bus_info() noexcept;

    [[nodiscard]] const std::string& dir() const noexcept;
    // The bus's random 64-bit id (bus.id in its directory): what names its segments, and what tells
    // this bus from another when messages travel between hosts (`shmbus bridge`).
    [[nodiscard]] uint64_t bus_id() const noexcept;
    // Times the control connection was re-established after shmbusd went away.
    [[nodiscard]] uint64_t reconnects() const noexcept;

private:
    friend struct detail::PatternCore;
    // Tells shmbusd a pattern subscription of this connection began (or ended, `stop`), to be shown.
    [[nodiscard]] Status watch_pattern(std::string_view pattern, bool stop) noexcept;
    [[nodiscard]] Result<Subscriber> join_group(std::string_view topic, SubscribeOptions options) noexcept;
    [[nodiscard]] static Result<Publisher> open_publisher(const std::shared_ptr<detail::ControlChannel>& channel,
                                                          std::string_view topic, PublisherOptions options) noexcept;
    // A publisher of `topic`, opened on the first call (nullptr while it cannot be opened).
    // `create`: the settings it is made with if it does not exist yet.
    [[nodiscard]] static std::function<Publisher*()> publisher_on_demand(const std::shared_ptr<detail::ControlChannel>& channel,
                                                                        std::string topic, TopicConfig create = {});
    // One request (max_replies 1) or a gather: the replies, or why there are none.
    [[nodiscard]] Result<std::vector<Reply>> call(std::string_view topic, std::span<const std::byte> payload,
                                                  const RequestOptions& options, uint32_t max_replies, bool gather) noexcept;
    [[nodiscard]] Result<std::unique_ptr<detail::Inbox>> open_inbox(const RequestOptions& options) noexcept;
    explicit Client(std::shared_ptr<detail::ControlChannel> channel) noexcept;
    std::shared_ptr<detail::ControlChannel> channel_;
    std::shared_ptr<detail::Conversations> conversations_;  // inboxes between calls
};

}  // namespace shmbus
