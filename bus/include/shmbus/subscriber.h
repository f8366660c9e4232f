// Subscriber: reads a topic from its own cursor.
//
// Ephemeral (at most once): never slows publishers; if overrun it skips to the oldest record
// still whole and tells how many messages it lost (Message::lost_before, lost()).
// Durable (at least once, by name): its ack cursor lives in the segment and survives the
// process; on reattach delivery resumes after the last ack. On a `block` or `fail` topic it
// gates publishers, so nothing unacked is ever overwritten.
//
//   shmbus::SubscribeOptions opts;
//   opts.durable_name = "basket";            // omit for an ephemeral subscription
//   auto sub = client.subscribe("prices", opts);
//   sub->receive([](const shmbus::Message& m) { apply(m.text()); },
//                std::chrono::seconds(1));   // auto-ack after the handler returns
//
// Threads: one Subscriber is used by one thread at a time: calls on it (poll, receive, ack,
// nack, seek...) must not overlap. A Message may be copied and handed to another thread, which
// acks it through the subscriber under the same lock the polling thread takes; its payload is
// valid only until the handler returns, so copy the bytes first (docs/threads.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "shmbus/function_ref.h"
#include "shmbus/headers.h"
#include "shmbus/topic.h"

namespace shmbus {

namespace detail {
struct SubscriberCore;
struct Access;
struct Conversation;
struct RawRecord;
class GroupMember;
}

enum class WaitStrategy : uint8_t { busy_spin, spin_then_sleep };

struct SubscribeOptions {
    std::string durable_name;          // empty: ephemeral
    // A consumer group (work queue): each message goes to one live member at a time; acks are per
    // message (auto_ack acks each after its handler); nack() retries after a backoff; after
    // max_deliveries, or on reject(), the message goes to the topic `<topic>.dlq`. The group is
    // durable and gates publishers like a durable subscription. Not with durable_name.
    std::string group;
    GroupSettings group_settings{};
    StartFrom from = StartFrom::latest;  // for a new subscription only; durable ones resume
    uint64_t from_id = 0;              // with StartFrom::id
    uint64_t from_time_ns = 0;         // with StartFrom::time: CLOCK_REALTIME nanoseconds
    WaitStrategy wait = WaitStrategy::spin_then_sleep;
    uint32_t spin_polls = 2000;        // spin_then_sleep: empty polls before sleeping (0: sleep at once)
    // receive() with max above 1: in a dense stream (5 M messages a second or more, found two or
    // more at a time right after catching up), wait up to this long after catching up before
    // polling again, so that the publisher writes a run of records without the reader pulling each
    // line away from it. A message of such a stream may wait that long (less where `max` messages
    // come sooner); one that comes alone never does. 0: always poll at once.
    std::chrono::nanoseconds stream_backoff = std::chrono::microseconds(32);
    bool auto_ack = true;              // ack each poll's messages after the handler returns
    RateLimit rate{};                  // this subscription's deliveries (a group's: group_settings.rate)
    // An ephemeral subscription to a block or fail topic reads a message this large or larger in
    // place, without copying it: while its handler runs, publishers do not overwrite that message
    // (if the ring fills meanwhile they wait, or fail, as for a durable subscriber), so the view
    // is whole. Smaller messages are copied (a reader that may be overrun validates its copy);
    // on overwrite and archive topics every message is. 0: always copy.
    uint32_t in_place_from = 64 * 1024;
    TopicConfig create_config{};       // used only if the topic does not exist yet
};

struct Message {
    uint64_t id = 0;
    uint64_t timestamp_ns = 0;          // publisher's CLOCK_REALTIME at claim
    uint64_t lost_before = 0;           // messages lost to an overrun just before this one
    uint32_t attempt = 1;               // group members: which delivery of this message this is
    std::span<const std::byte> payload; // valid until the handler returns
    Headers headers;                    // likewise
    // A named (idempotent) producer's message: the producer's name and its number for the message
    // (PublisherOptions::producer); empty and 0 otherwise. The name is valid as the payload is.
    std::string_view producer;
    uint64_t sequence = 0;
    // The message's key (MessageOptions::key); empty when it has none. Valid as the payload is.
    std::string_view key;
    // CLOCK_REALTIME nanoseconds after which the message is expired (MessageOptions::ttl, or the
    // topic's default TTL), and before which a consumer group does not deliver it
    // (MessageOptions::delay / deliver_at_ns); 0: never expires, due at once.
    uint64_t expires_at_ns = 0;
    uint64_t deliver_at_ns = 0;
    // A pattern subscription's message (shmbus/pattern.h): the topic it came from. Empty for a
    // subscription of one topic, which knows its own (Subscriber::topic()).
    std::string_view topic;
    [[nodiscard]] std::string_view text() const noexcept {
        return {reinterpret_cast<const char*>(payload.data()), payload.size()};
    }

private:
    // Which delivery this was, so that ack() takes only messages its own subscriber delivered
    // since its last seek. Copies keep it; the application cannot edit it.
    friend struct detail::SubscriberCore;
    friend struct detail::Access;
    friend class detail::GroupMember;
    friend struct detail::RawRecord;
    const void* delivered_by_ = nullptr;  // the subscriber's state
    uint64_t epoch_ = 0;                  // its seek count at delivery (group: the message's entry)
    uint64_t end_position_ = 0;           // where the next record starts (group: the entry's control word)
    uint64_t record_id_ = 0;              // group: the id of the record the entry holds
    bool from_archive_ = false;           // read from the topic's archive on disk, not the ring
    uint16_t record_flags_ = 0;           // the record as stored (archiver): its flags and body
    std::span<const std::byte> record_body_;
};

enum class AckStatus : uint8_t {
    ok,             // acked (or acked already by a later ack; an ephemeral subscription acks nothing)
    not_delivered,  // not a message this subscriber delivered: another subscriber's, or made by hand
    stale,          // delivered before the subscriber's last seek(): no longer in its stream;
                    // group: past its visibility timeout, given to a member again meanwhile
    not_group,      // nack and reject need a group subscription
};
[[nodiscard]] const char* to_string(AckStatus status) noexcept;

enum class ReceiveStatus : uint8_t {
    ok,         // at least one message delivered
    empty,      // nothing new (poll) or nothing before the deadline (receive)
    corrupt,    // the ring failed a bounds check: the segment is damaged or hostile
    deleted,    // every message was delivered and the topic was deleted (`topic delete --force`)
};

struct PollResult {
    ReceiveStatus status;
    uint32_t count;
};

using Handler = FunctionRef<void(const Message&)>;
// Takes every message of one poll at once, in order; the span and its messages are valid until it returns.
using BatchHandler = FunctionRef<void(std::span<const Message>)>;

class WaitSet;

class Subscriber {
public:
    Subscriber(Subscriber&&) noexcept;
    Subscriber& operator=(Subscriber&&) noexcept;
    ~Subscriber();  // ephemeral: frees its slot; durable: detaches, cursor kept

    // Delivers up to `max` ready messages without waiting.
    [[nodiscard]] PollResult poll(Handler handler, std::size_t max = 256) noexcept;
    // Like poll, but waits up to `timeout` for the first message (busy-spin or futex sleep).
    [[nodiscard]] PollResult receive(Handler handler, std::chrono::nanoseconds timeout,
                                     std::size_t max = 256) noexcept;

    // poll() and receive() handing the messages of one poll to `handler` at once (at most 1024):
    // the same messages, checks and acks (auto_ack covers the batch once the handler returns). A
    // reader that producers may overrun copies each message once, side by side, ending a batch
    // early where 256 KiB (or max_message) of copies are full. A consumer group's member, and a
    // reader replaying the archive, get batches of one message.
    [[nodiscard]] PollResult poll_batch(BatchHandler handler, std::size_t max = 256) noexcept;
    [[nodiscard]] PollResult receive_batch(BatchHandler handler, std::chrono::nanoseconds timeout,
                                           std::size_t max = 256) noexcept;

    // Cumulative acks (durable; harmless on ephemeral): everything up to and including `m`,
    // which must be a message this subscriber delivered since its last seek.
    [[nodiscard]] AckStatus ack(const Message& m) noexcept;
    // Group members: acks are per message and in any order. A member may hold `window`
    // unsettled messages; one not settled within the visibility timeout (or held by a member that
    // died) is delivered again, to any member, with Message::attempt raised.
    // nack: deliver again after the group's backoff (or `delay`); on the last allowed attempt it
    // goes to the dead-letter topic instead. reject: to the dead-letter topic now.
    [[nodiscard]] AckStatus nack(const Message& m) noexcept;
    [[nodiscard]] AckStatus nack(const Message& m, std::chrono::nanoseconds delay) noexcept;
    // With the reason the dead letter carries (shmbus-reason) if this was its last allowed attempt.
    [[nodiscard]] AckStatus nack(const Message& m, std::string_view reason) noexcept;
    [[nodiscard]] AckStatus reject(const Message& m, std::string_view reason) noexcept;
    // Everything delivered so far (not groups: their acks are per message).
    void ack_delivered() noexcept;
    [[nodiscard]] bool in_group() const noexcept;
    [[nodiscard]] uint32_t in_flight() const noexcept;  // group: unsettled messages this member holds

    // Re-positions the read cursor within what the ring still holds (an archived topic: within
    // what its archive and ring hold). Not for group members.
    [[nodiscard]] Status seek(StartFrom from, uint64_t id = 0) noexcept;

    [[nodiscard]] uint64_t next_id() const noexcept;   // id of the next message to deliver
    [[nodiscard]] uint64_t lost() const noexcept;      // total messages lost to overruns
    [[nodiscard]] uint64_t delivered() const noexcept;
    [[nodiscard]] bool durable() const noexcept;
    [[nodiscard]] bool resumed() const noexcept;       // durable: reattached to an existing cursor
    [[nodiscard]] uint32_t max_message() const noexcept;
    [[nodiscard]] const std::string& topic() const noexcept;

private:
    friend class Client;
    friend class WaitSet;
    friend struct detail::Access;  // tests build one over a segment without a daemon
    friend struct detail::Conversation;  // a responder answers the requests of a member that died
    explicit Subscriber(std::unique_ptr<detail::SubscriberCore> core) noexcept;
    std::unique_ptr<detail::SubscriberCore> core_;
};

}  // namespace shmbus
