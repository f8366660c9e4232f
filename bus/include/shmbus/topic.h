// Topic configuration and the read-only statistics view of a topic.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/layout/segment_header.h"
#include "shmbus/result.h"

namespace shmbus {

using OnFull = layout::OnFull;

[[nodiscard]] const char* to_string(OnFull policy) noexcept;
[[nodiscard]] bool parse_on_full(std::string_view text, OnFull& out) noexcept;

// Fixed at creation. Memory for a topic is allocated once; nothing grows later.
struct TopicConfig {
    uint64_t capacity = 4u << 20;      // ring bytes, rounded up to a power of two
    uint32_t max_message = 0;          // largest payload; 0: min(64 KiB, max_message_for(capacity))
    OnFull on_full = OnFull::block;
    uint32_t max_producers = 64;
    uint32_t max_consumers = 64;
    // Recovery (docs/architecture.md, "Crash recovery"). A producer that is alive but keeps a
    // claimed message uncommitted this long loses it: shmbusd turns it into a skip record so
    // subscribers move on, and the late commit returns PublishStatus::revoked. 0: never.
    std::chrono::nanoseconds unblock_timeout{0};
    // A durable subscription whose owner is gone is released after this long, so a forgotten
    // subscription cannot hold producers back forever. 0: kept until deleted.
    std::chrono::nanoseconds expire_detached{0};
    // One publisher at a time (shmbusd refuses a second while the first lives), which then claims
    // room with plain stores instead of a compare-and-swap: the fastest publish. Fixed at
    // creation; such a topic has no consumer groups (their retries would be a second producer).
    bool single_producer = false;
    // Whether every message carries its publish time (Message::timestamp_ns). Without, a publish
    // saves the clock read (about 10 ns, the largest single cost of a small publish), messages
    // carry 0, and what needs the times is refused: subscribing from a time, archiving. Fixed at
    // creation (layout 1.10; a shmbusd older than that makes the topic with timestamps).
    bool timestamps = true;
    // The time to live of a message that names none (MessageOptions::ttl): after it, no consumer
    // group member and no durable subscription is given the message. 0: messages do not expire
    // unless they say so. Fixed at creation (layout 1.11).
    std::chrono::nanoseconds ttl{0};

    // A configuration left as constructed asks for the bus's defaults: shmbusd then applies its
    // configured [defaults] (or these very values when it has none).
    friend bool operator==(const TopicConfig&, const TopicConfig&) = default;
};

inline constexpr uint64_t kMinCapacity = 4096;
inline constexpr uint64_t kMaxCapacity = 1ull << 36;  // 64 GiB
inline constexpr uint32_t kMaxSlots = 4096;           // most producers, and most subscriptions, of a topic
// The ring a requested capacity gets: the next power of two, at least kMinCapacity and at most
// kMaxCapacity.
[[nodiscard]] constexpr uint64_t round_capacity(uint64_t capacity) noexcept {
    uint64_t c = kMinCapacity;
    while (c < capacity && c < kMaxCapacity) c <<= 1;
    return c;
}
// Largest max_message a ring of `capacity` bytes accepts: a claim (padding plus record) then
// stays under a quarter of the ring, which is what lets a new durable subscription join safely
// (docs/architecture.md, "Gating").
[[nodiscard]] constexpr uint64_t max_message_for(uint64_t capacity) noexcept {
    return capacity / 8 - 32;
}
inline constexpr uint32_t kDefaultMaxMessage = 64u << 10;
// Shorter unblock timeouts would take claims from producers that were merely descheduled.
inline constexpr std::chrono::milliseconds kMinUnblockTimeout{10};
[[nodiscard]] Status validate_config(const TopicConfig& config);
// Fills the fields left at 0 ("use the default").
[[nodiscard]] TopicConfig with_defaults(TopicConfig config) noexcept;

// A token bucket: at most `per_second` deliveries a second on average, `burst` at once after a
// quiet spell. A subscription's own (SubscribeOptions::rate), or a group's, which all its members
// share (GroupSettings::rate).
struct RateLimit {
    double per_second = 0;  // 0: unlimited
    uint32_t burst = 1;
    bool operator==(const RateLimit&) const = default;
};

// A consumer group's settings, fixed when the group is created (by its first member or
// `shmbus group create`); a member asking for others is refused with the difference named.
struct GroupSettings {
    uint32_t window = 64;                                  // unsettled messages one member may hold
    std::chrono::nanoseconds visibility = std::chrono::seconds(30);  // unsettled this long: redelivered
    uint32_t max_deliveries = 5;                           // then the dead-letter topic; 0: unlimited
    std::chrono::nanoseconds backoff_initial = std::chrono::milliseconds(100);
    std::chrono::nanoseconds backoff_max = std::chrono::seconds(30);
    double backoff_factor = 2.0;
    RateLimit rate{};                                      // shared by all members
    // A message whose time to live passes before a member is given it goes to the dead-letter
    // topic with the reason `expired`; without, it is dropped. Counted either way (GroupStats::expired).
    bool dead_letter_expired = false;
    // Messages of one key (MessageOptions::key) are processed one at a time and in id order across
    // all members, through redeliveries, member deaths and retries: a later message of a key waits
    // while an earlier one is unsettled (a retry's backoff included), other keys go on. Messages
    // without a key are unordered. At most 256 messages a group holds at once, waiting ones
    // included (docs/architecture.md, "Ordered by key").
    bool ordered_by_key = false;
    // A service group (shmbus/request.h): its members are responders. A request is delivered once:
    // one whose member dies before settling it is answered "responder died" to its caller, not
    // given to another member (use with max_deliveries 1; Client::serve makes such groups).
    bool service = false;
    bool operator==(const GroupSettings&) const = default;
};

// A consumer group, read racily from its block (counters are statistics).
struct GroupStats {
    std::string name;
    std::vector<int32_t> members;  // pids of the members holding a slot now
    uint64_t next_id = 0;          // the next message no member has taken
    uint64_t lag = 0;              // published, not yet taken
    uint64_t in_flight = 0;        // taken and not settled (delivered, or being taken)
    uint64_t waiting_retry = 0;    // nacked, waiting out their backoff (or their delivery time)
    uint64_t waiting_key = 0;      // ordered by key: taken, waiting for an earlier message of their key
    uint64_t dead_letters_refused = 0;  // of those, due for the dead-letter topic and refused by it (too large)
    uint64_t delivered = 0, acked = 0, redelivered = 0, nacked = 0, dead_lettered = 0;
    uint64_t ack_too_late = 0;     // acks refused: the message had been given to another member
    uint64_t reparked = 0;         // messages waiting out a backoff moved to the ring's tail
    uint64_t expired = 0;          // messages not delivered because their time to live had passed
    // How long ago the oldest unsettled message was first delivered; none when nothing is unsettled.
    std::optional<std::chrono::nanoseconds> oldest_unsettled_age;
    GroupSettings settings{};
};

struct SubscriptionStats {
    uint32_t slot = 0;
    std::string name;        // empty for an ephemeral subscription
    bool durable = false;
    bool attached = false;   // false: a durable subscription whose owner is gone
    int32_t pid = 0;
    uint64_t next_id = 0;    // durable: first unacked id; ephemeral: next id to read
    uint64_t lag = 0;        // messages published but not yet acked (durable) or read
    // Durable only (an ephemeral reader keeps its position to itself): the log position up to
    // which everything is acked, and the bytes published past it.
    std::optional<uint64_t> ack_position;
    std::optional<uint64_t> lag_bytes;
    uint64_t delivered = 0;
    uint64_t lost = 0;
    uint64_t expired = 0;    // durable: messages stepped over because their time to live had passed
    uint64_t detached_ns = 0;  // CLOCK_REALTIME when the owner went away; 0 while attached
    // Time left before shmbusd releases this detached cursor; empty when it never expires.
    std::optional<std::chrono::nanoseconds> expires_in;
    // Processing time of a durable subscription, from a message's delivery to the ack that covers
    // it, sampled (one delivering poll in 16). Percentiles at power-of-two resolution (the upper
    // edge of the bucket they fall in); empty before the first sample.
    uint64_t processing_samples = 0;
    uint64_t processing_sum_ns = 0;
    std::vector<uint64_t> processing_buckets;  // bucket i: times in [2^i, 2^(i+1)) ns
    std::optional<uint64_t> processing_p50_ns;
    std::optional<uint64_t> processing_p99_ns;
};

// What shmbusd repaired on this topic (layout::RecoveryCounters, plus the producers' own count
// of late commits it refused).
struct RecoveryStats {
    uint64_t dead_claims_sealed = 0;
    uint64_t stalled_claims_unblocked = 0;
    uint64_t late_commits_refused = 0;
    uint64_t producers_released = 0;
    uint64_t subscribers_freed = 0;
    uint64_t subscribers_detached = 0;
    uint64_t cursors_expired = 0;
    uint64_t owners_dead_at_restart = 0;
};

// A named (idempotent) producer the topic remembers (PublisherOptions::producer).
struct NamedProducerStats {
    std::string name;
    uint64_t last_sequence = 0;  // the highest sequence committed under the name
    int32_t pid = 0;             // the process holding the name now; 0: nobody (a restarted producer may take it)
};

// The topic as a service (shmbus/request.h): what its callers saw, and its responders.
struct RequestStats {
    uint64_t requests = 0;        // requests published
    uint64_t replies = 0;         // replies callers received before their deadline
    uint64_t timed_out = 0;       // not answered before their deadline
    uint64_t no_responder = 0;    // refused at once: no responder served the topic
    uint64_t responder_died = 0;  // their responder died (or every responder left) before replying
    uint64_t late_replies = 0;    // replies that came after their request had timed out: dropped
    uint32_t responders = 0;      // members of its service groups now
    uint32_t service_groups = 0;  // its service groups (ServeOptions::group)
};

// A racy snapshot: every figure is read without stopping producers or subscribers.
struct TopicStats {
    std::string name;
    TopicConfig config;
    bool archived = false;       // also kept on disk (docs/archive.md)
    uint64_t segment_bytes = 0;
    uint64_t published = 0;      // ids handed out so far (next message id)
    uint64_t tail_position = 0;  // bytes ever claimed
    uint32_t producers = 0;
    uint64_t skip_records = 0;
    uint64_t aborted_loans = 0;
    uint64_t full_refusals = 0;
    uint64_t full_wait_ns = 0;        // time publishers spent waiting for room on a full ring
    uint32_t waiting_publishers = 0;  // publishers waiting for room now
    uint64_t depth_bytes = 0;         // bytes the slowest durable subscription has yet to ack
    RecoveryStats recovery;
    RequestStats requests;
    std::vector<SubscriptionStats> subscriptions;  // durable and ephemeral (not groups and their members)
    std::vector<GroupStats> groups;
    std::vector<NamedProducerStats> named_producers;  // by name
};

// Where a subscription starts (SubscribeOptions::from, Subscriber::seek). earliest: the oldest
// message retained (an archived topic: the oldest on disk); latest: only new ones; id: from_id on;
// time: the first message (in id order) published at or after from_time_ns.
// latest_per_key (a compacted topic only): the latest message of every key the archive keeps, in
// id order, then everything after them (docs/archive.md, "Compacted topics").
enum class StartFrom : uint8_t { earliest, latest, id, time, latest_per_key };

}  // namespace shmbus
