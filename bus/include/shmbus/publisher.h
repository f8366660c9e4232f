// Publisher: writes messages into a topic's ring. Lock-free with any number of publishers per
// topic; nothing on the publish path allocates or makes a system call unless a subscriber sleeps.
//
//   auto pub = client.publisher("prices");
//   if (!pub) { /* pub.error().message says why */ }
//   if (pub->publish("EURUSD 1.0841") != shmbus::PublishStatus::ok) { /* full or too large */ }
//
//   shmbus::Loan loan;                       // zero copy: write straight into the ring
//   if (pub->loan(sizeof(Quote), loan) == shmbus::PublishStatus::ok) {
//       new (loan.data().data()) Quote{...};
//       loan.commit();
//   }
//
// Threads: one Publisher is used by one thread at a time (it caches the readers' positions);
// any number of Publishers of one topic, on any threads of any processes, publish at once
// without locks. A Loan belongs to the thread of its Publisher (docs/threads.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "shmbus/headers.h"
#include "shmbus/layout/record.h"
#include "shmbus/topic.h"

namespace shmbus {

namespace detail {
class Segment;
class ControlChannel;
struct PublisherCore;
struct Access;
struct Conversation;
}  // namespace detail

enum class PublishStatus : uint8_t {
    ok,           // committed (or, for loan(), claimed)
    would_block,  // on-full `fail`: the ring is full of unacked data
    timed_out,    // on-full `block`: still full when the deadline passed
    too_large,    // payload above the topic's max_message
    aborted,      // the loan was already committed or abandoned
    revoked,      // not published: the claim stayed open past the topic's unblock-timeout and
                  // shmbusd turned it into a skip record so subscribers could move on
    corrupt,      // not published: the topic's shared state failed a check (damaged or hostile segment)
    deleted,      // not published: the topic was deleted (`topic delete --force`); this publisher is dead
    bad_headers,  // not published: a header breaks the rules of validate_headers() (shmbus/headers.h)
    duplicate,    // not published: a named producer's sequence is not above the last one committed
                  // under its name on this topic (the message is there already)
    no_producer,  // not published: publish_sequence() needs a named producer (PublisherOptions::producer)
    bad_key,      // not published: the key is longer than kMaxKey bytes
};
[[nodiscard]] const char* to_string(PublishStatus status) noexcept;

struct PublisherOptions {
    TopicConfig create_config{};  // used only if the topic does not exist yet
    // How long publish() waits on a full `block` topic before returning timed_out.
    std::chrono::nanoseconds block_timeout = std::chrono::seconds(30);
    // An idempotent producer: a stable name (validate_producer_name). Its messages carry the name
    // and a sequence number (Message::producer, Message::sequence); a publish whose sequence is not
    // above the last one committed under the name on this topic returns `duplicate` and writes
    // nothing, whatever crashed in between (this process, or shmbusd). One live publisher per name
    // and topic; the topic remembers a name until it is deleted, or until 4 x max_producers other
    // names were used after it (docs/guarantees.md). Empty: an anonymous publisher.
    std::string producer;
    // Reuse the ring's warm memory for large messages: messages of kReuseSpaceFrom bytes or more
    // cycle through the ring's first kReuseSpaceWindow bytes (or two messages' worth, if more)
    // instead of the whole ring. A message that would end past that window goes to the ring's
    // start, into memory recent messages used, which the shared cache still holds, whenever every
    // reader present has read everything published (docs/architecture.md, "Large messages").
    // Readers present lose nothing; a subscription that starts later finds at most the window's
    // worth of messages, not a ring's. Pays where the publisher and its readers share a last-level
    // cache; across caches, memory is faster to write fresh from DRAM (docs/benchmarks.md). Off:
    // every message follows the last one in the ring.
    bool reuse_space = false;
};

// The smallest message PublisherOptions::reuse_space places at the ring's start, and the part of
// the ring such messages then cycle through: beyond a core's own cache (so that writing a line
// does not first take it from the reading core), within the cache the cores share.
inline constexpr std::size_t kReuseSpaceFrom = 256 * 1024;
inline constexpr std::size_t kReuseSpaceWindow = 4u << 20;

// The longest message key, in bytes.
inline constexpr std::size_t kMaxKey = layout::kMaxKey;

// What a message carries besides its payload (Publisher::publish(payload, options)).
struct MessageOptions {
    std::span<const Header> headers{};
    // Any bytes up to kMaxKey (Message::key); empty: no key. Counted against max_message, with the
    // headers and the payload. A consumer group ordered by key processes the messages of one key
    // one at a time, in publish order.
    std::string_view key{};
    // The message expires this long after it is published: no consumer group member and no durable
    // subscription is given it after that (Message::expires_at_ns). 0: the topic's default TTL
    // (TopicConfig::ttl; none unless set).
    std::chrono::nanoseconds ttl{0};
    // A consumer group delivers the message no earlier than this long after it is published, or
    // than deliver_at_ns (CLOCK_REALTIME nanoseconds; wins when set). Other subscribers see it at
    // once, with Message::deliver_at_ns. Publishers are never held back by a waiting message.
    std::chrono::nanoseconds delay{0};
    uint64_t deliver_at_ns = 0;
};

// What publish_batch() did: how many of the messages it published (in order, from the first),
// and `ok`, or why it stopped.
struct BatchResult {
    PublishStatus status = PublishStatus::ok;
    std::size_t published = 0;
};

// Space claimed in the ring. Write the payload into data(), then commit(). A Loan destroyed
// without commit() is published as a skip record: subscribers step over it, nothing is stuck.
class Loan {
public:
    Loan() noexcept = default;
    Loan(Loan&& other) noexcept;
    Loan& operator=(Loan&& other) noexcept;
    Loan(const Loan&) = delete;
    Loan& operator=(const Loan&) = delete;
    ~Loan();

    [[nodiscard]] std::span<std::byte> data() const noexcept { return data_; }
    [[nodiscard]] uint64_t id() const noexcept { return id_; }
    // A named producer's loan: the sequence its message will carry; 0 for an anonymous publisher.
    [[nodiscard]] uint64_t sequence() const noexcept { return sequence_; }
    [[nodiscard]] bool active() const noexcept { return core_ != nullptr; }
    // Makes the message visible to subscribers (release store of the commit word).
    PublishStatus commit() noexcept;
    // Gives the space back as a skip record; subscribers never see it.
    void abandon() noexcept;

private:
    friend class Publisher;
    detail::PublisherCore* core_ = nullptr;
    uint64_t position_ = 0;
    uint64_t id_ = 0;
    uint64_t sequence_ = 0;
    std::span<std::byte> data_{};
};

class Publisher {
public:
    Publisher(Publisher&&) noexcept;
    Publisher& operator=(Publisher&&) noexcept;
    ~Publisher();

    // Copies `payload` into the ring and commits it. Waits on a full `block` topic up to
    // options.block_timeout (or `timeout`).
    [[nodiscard]] PublishStatus publish(std::span<const std::byte> payload) noexcept;
    [[nodiscard]] PublishStatus publish(std::string_view payload) noexcept;
    [[nodiscard]] PublishStatus publish(std::span<const std::byte> payload,
                                        std::chrono::nanoseconds timeout) noexcept;
    [[nodiscard]] PublishStatus publish(std::string_view payload, std::chrono::nanoseconds timeout) noexcept;
    // With headers: they travel in the record before the payload, and max_message bounds both
    // together (too_large); headers that break the rules give bad_headers.
    [[nodiscard]] PublishStatus publish(std::span<const std::byte> payload, std::span<const Header> headers) noexcept;
    [[nodiscard]] PublishStatus publish(std::string_view payload, std::span<const Header> headers) noexcept;
    [[nodiscard]] PublishStatus publish(std::span<const std::byte> payload, std::span<const Header> headers,
                                        std::chrono::nanoseconds timeout) noexcept;
    // With a key (MessageOptions::key): bad_key if it is longer than kMaxKey.
    [[nodiscard]] PublishStatus publish(std::span<const std::byte> payload, std::span<const Header> headers,
                                        std::string_view key) noexcept;
    [[nodiscard]] PublishStatus publish(std::string_view payload, std::span<const Header> headers,
                                        std::string_view key) noexcept;
    // With everything a message may carry (MessageOptions); waits on a full topic up to
    // options.block_timeout (or `timeout`).
    [[nodiscard]] PublishStatus publish(std::span<const std::byte> payload, const MessageOptions& message) noexcept;
    [[nodiscard]] PublishStatus publish(std::string_view payload, const MessageOptions& message) noexcept;
    [[nodiscard]] PublishStatus publish(std::span<const std::byte> payload, const MessageOptions& message,
                                        std::chrono::nanoseconds timeout) noexcept;
    [[nodiscard]] PublishStatus publish(std::string_view payload, const MessageOptions& message,
                                        std::chrono::nanoseconds timeout) noexcept;
    // A named producer's publish with the sequence the caller chose (above the last committed one;
    // gaps are allowed): `duplicate` if it is not above it, `no_producer` on an anonymous
    // publisher. publish() and loan() on a named producer number their messages themselves: one
    // past the highest sequence committed or loaned so far.
    [[nodiscard]] PublishStatus publish_sequence(uint64_t sequence, std::span<const std::byte> payload,
                                                 std::span<const Header> headers = {}) noexcept;
    [[nodiscard]] PublishStatus publish_sequence(uint64_t sequence, std::string_view payload,
                                                 std::span<const Header> headers = {}) noexcept;
    [[nodiscard]] PublishStatus publish_sequence(uint64_t sequence, std::span<const std::byte> payload,
                                                 const MessageOptions& message) noexcept;
    // Publishes `payloads` in order as consecutive messages, batched: one claim, one timestamp and
    // one wake-up check for as many as fit in an eighth of the ring, so each costs a fraction of a
    // publish(). Ids within one claim are consecutive; all carry the claim's timestamp. Stops at the
    // first message that cannot be published: `published` says how many were, `status` why not
    // (too_large for a payload above max_message, or what publish() would return). A named producer,
    // and a topic with an unblock-timeout, publish them one by one (same result, no batching).
    [[nodiscard]] BatchResult publish_batch(std::span<const std::span<const std::byte>> payloads) noexcept;
    [[nodiscard]] BatchResult publish_batch(std::span<const std::span<const std::byte>> payloads,
                                            std::chrono::nanoseconds timeout) noexcept;
    // Claims `size` bytes for zero-copy writing; commit through the Loan.
    [[nodiscard]] PublishStatus loan(std::size_t size, Loan& out) noexcept;
    [[nodiscard]] PublishStatus loan(std::size_t size, Loan& out,
                                     std::chrono::nanoseconds timeout) noexcept;
    // A loan of a message with a key, headers, a time to live or a delivery time: they are written
    // at the claim, and `size` bytes of payload follow them (Loan::data).
    [[nodiscard]] PublishStatus loan(std::size_t size, Loan& out, const MessageOptions& message) noexcept;
    [[nodiscard]] PublishStatus loan(std::size_t size, Loan& out, const MessageOptions& message,
                                     std::chrono::nanoseconds timeout) noexcept;

    // Id of the last message this publisher claimed (ids grow in log order across publishers).
    [[nodiscard]] uint64_t last_id() const noexcept;
    // A named producer: the highest sequence committed under its name on this topic, by this
    // publisher or an earlier holder of the name (0: none). What a restarted producer resumes after.
    [[nodiscard]] uint64_t last_sequence() const noexcept;
    // The producer name (PublisherOptions::producer); empty for an anonymous publisher.
    [[nodiscard]] const std::string& producer() const noexcept;
    [[nodiscard]] uint32_t max_message() const noexcept;
    [[nodiscard]] OnFull on_full() const noexcept;
    [[nodiscard]] const std::string& topic() const noexcept;

private:
    friend class Client;
    friend struct detail::Conversation;  // request/reply counts its outcomes in the topic's segment
    friend struct detail::Access;  // tests build one over a segment without a daemon
    explicit Publisher(std::unique_ptr<detail::PublisherCore> core) noexcept;
    std::unique_ptr<detail::PublisherCore> core_;
};

}  // namespace shmbus
