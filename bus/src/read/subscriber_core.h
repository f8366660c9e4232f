// The state behind a Subscriber (the public class holds a unique_ptr). Internal.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "archive/archive.h"
#include "control/control.h"
#include "core/crash_point.h"
#include "core/ring.h"
#include "core/wall_clock.h"
#include "core/segment.h"
#include "core/slots.h"
#include "groups/group.h"
#include "core/rate_limit.h"
#include "read/stream_pacer.h"
#include "shmbus/subscriber.h"

namespace shmbus::detail {

struct WaitSetCore;

struct SubscriberCore {
    SubscriberCore(std::shared_ptr<ControlChannel> ch, Segment s, uint32_t slot_index, bool is_durable,
                   SubscribeOptions o) noexcept
        : channel(std::move(ch)), seg(std::move(s)), ring(seg), topic(seg.topic()), slot_index(slot_index),
          slot(&seg.consumer_slot(slot_index)), durable(is_durable),
          gated(is_durable && gates_producers(seg, slot_index, SlotKind::durable)),
          timed(is_durable && seg.consumer_slot_has(sizeof(layout::ConsumerSlot))), options(std::move(o)),
          crash_before_ack("before_ack") {
        count_as_sleeper();
        choose_ring_readers();
    }
    ~SubscriberCore();

    [[nodiscard]] PollResult poll(Handler& handler, std::size_t max) noexcept;
    // poll() handing every message of the poll to `handler` at once (Subscriber::poll_batch).
    [[nodiscard]] PollResult poll_batch(BatchHandler& handler, std::size_t max) noexcept;
    [[nodiscard]] PollResult receive_batch(BatchHandler& handler, std::chrono::nanoseconds timeout, std::size_t max) noexcept;
    // Acks everything delivered so far (auto-ack after a poll, ack_delivered()).
    void ack_all_delivered() noexcept;
    [[nodiscard]] PollResult receive(Handler& handler, std::chrono::nanoseconds timeout, std::size_t max) noexcept;
    void store_ack(uint64_t position, uint64_t next_id) noexcept;
    [[nodiscard]] AckStatus ack(const Message& m) noexcept;  // not a group member's: settle() decides
    [[nodiscard]] Status seek(StartFrom from, uint64_t id) noexcept;
    // Settles one message: ack for any subscriber; for a group member also nack (with a delay) and
    // reject (to the dead-letter topic).
    [[nodiscard]] AckStatus settle(const Message& m, GroupMember::Settle how, uint64_t delay_ns,
                                   std::string_view reason) noexcept;
    void start_at(uint64_t pos, uint64_t id, uint64_t deliver_from_id, uint64_t lost_now) noexcept;
    // Starts a new subscriber where the daemon placed it. A new subscription from an id that is no
    // longer retained starts later and counts the gap as lost. Allocates the copy buffer of a
    // reader that producers may lap, once, here.
    void begin(uint64_t pos, uint64_t id, bool was_resumed);
    // After the ring placed (or re-placed) this reader at `position`/`next_id` for `from`: an
    // archived topic's reader whose start lies before what the ring holds reads the archive first.
    // `placed_lost`: the ids the ring could not give (counted as lost only without an archive).
    void start_from(StartFrom from, uint64_t from_id, uint64_t from_time_ns, uint64_t placed_lost) noexcept;
    // When the rate limit allows the next delivery (CLOCK_MONOTONIC), if the last poll stopped
    // for it; 0 otherwise.
    [[nodiscard]] uint64_t rate_ready() const noexcept { return group ? group->rate_ready_ns() : rate.ready_ns(); }

    std::shared_ptr<ControlChannel> channel;
    Segment seg;
    Ring ring;
    std::string topic;
    uint32_t slot_index;
    layout::ConsumerSlot* slot;
    bool durable;
    bool gated;  // a durable cursor that gates (gates_producers): producers never overwrite what it has not acked
    bool timed;  // durable, and the slot has room for processing times (layout 1.3)
    bool resumed = false;
    bool corrupt = false;
    SubscribeOptions options;
    uint64_t position = 0;        // next record to read
    uint64_t next_id = 0;         // id expected there
    uint64_t deliver_from = 0;    // ids below are stepped over (seek to an id mid-walk)
    uint64_t lost_pending = 0;    // reported on the next delivered message
    uint64_t lost_total = 0;
    uint64_t delivered_total = 0;
    uint64_t expired_total = 0;  // durable: messages stepped over because they had expired
    uint64_t acked_position = 0;  // last ack stored in the slot
    uint64_t epoch = 0;           // seeks so far: a message delivered before the last one is stale
    uint32_t empty_polls = 0;
    // Lines past the header's that the next Ring::inspect loads together with the commit word:
    // as many as the last record spanned, when that was two to four (ring_readers.cpp).
    uint32_t touch_lines = 1;
    StreamPacer pacer{uint64_t(std::max<int64_t>(0, options.stream_backoff.count()))};
    // Processing-time sampling (durable subscriptions on timed topics: only they ack): one
    // delivering poll in kSampleEvery notes when it delivered its first message, id `sample_id`;
    // the ack that first covers it records the time taken. The clock is read as that message is
    // delivered (sample_armed), so a poll that finds nothing reads none: a spinning receive() is
    // made of such polls, and one clock read each would slow how soon it sees the next record.
    static constexpr uint32_t kSampleEvery = 16;
    static constexpr uint64_t kNoSample = UINT64_MAX;
    uint32_t delivering_polls = 0;
    bool sample_armed = false;
    uint64_t sample_id = kNoSample;
    uint64_t sample_t0_ns = 0;
    void take_sample(uint64_t id) noexcept {
        sample_armed = false;
        sample_id = id;
        sample_t0_ns = monotonic_ns();
    }
    // This subscription's rate limit (a group's lives in its block): its bucket word and gate.
    std::atomic<uint64_t> rate_tat{0};
    RateGate rate{detail::rate_interval_ns(options.rate), options.rate.burst};
    // The longest record a reader may copy: a named producer's stamp (and a retry's prefix) may take
    // a record past max_message (layout/record.h, record_allowance).
    [[nodiscard]] std::size_t largest_record() const noexcept {
        return std::size_t(seg.max_message()) + layout::record_allowance(layout::kRecordRetry | layout::kRecordHasProducer);
    }
    std::vector<std::byte> copy;  // largest_record() bytes, for readers that producers may overrun
    // poll_batch(): the messages of one poll, and for a reader that producers may overrun the
    // arena their validated copies lie in (allocated on the first batch).
    static constexpr std::size_t kMaxBatch = 1024;
    static constexpr std::size_t kBatchArenaBytes = 256 * 1024;
    struct Batch {
        std::vector<Message> messages;
        std::vector<std::byte> arena;
        std::size_t used = 0;
        bool ready = false;
    } batch;
    // What poll() hands the handler, reused: a Message's fields are valid until the handler returns.
    // A handler that polls its own subscriber again gets the same object rewritten (as the copy).
    Message scratch;
    // Archived topics (docs/archive.md): the archive directory shmbusd handed over (-1: none),
    // and, while the next message is older than what the ring holds, the reader of the archive
    // with the record it read but may not deliver yet (not archived below the archiver's ack).
    int archive_dir = -1;
    std::optional<archive::Reader> replay;
    std::optional<archive::StoredRecord> held;
    uint64_t ring_resume_id = 0;     // a gating reader: the id at `position`, where the ring takes over
    uint64_t acked_id = 0;           // last ack_id stored in the slot
    uint64_t deliver_from_time = 0;  // StartFrom::time: records before the first this late are stepped over
    // A compacted topic (docs/archive.md): the keys its archive keeps (0: not compacted). Started
    // from the latest message per key, the archive's records below `latest_below` are delivered
    // only if they are in `latest_ids` (sorted): each kept key's latest.
    uint32_t compacted_keys = 0;
    uint64_t latest_below = 0;
    std::vector<uint64_t> latest_ids;
    // Builds latest_ids over what the archive holds once the archiver has caught up with the ring,
    // and starts reading the archive. False if it cannot (then it starts at the ring's oldest).
    [[nodiscard]] bool start_latest_per_key() noexcept;
    // In the archive, below latest_below: whether record `id` is a key's latest.
    [[nodiscard]] bool superseded_below_latest(uint64_t id) const noexcept {
        return id < latest_below && !std::binary_search(latest_ids.begin(), latest_ids.end(), id);
    }
    std::unique_ptr<GroupMember> group;  // a member of a consumer group: it delivers instead
    CrashPoint crash_before_ack;  // fault injection (crash_point.h)

    // Wait sets (read/wait_set.cpp). The public object that owns this core (kept current by its
    // moves), and the set it belongs to (it leaves it when destroyed).
    Subscriber* handle = nullptr;
    WaitSetCore* wait_set = nullptr;
    // Whether a poll at `now` may deliver something, or report corrupt or deleted. Never consumes.
    [[nodiscard]] bool may_deliver(uint64_t now) const noexcept;
    // The latest a wait for this subscriber may sleep without looking again, whatever wakes it:
    // the rate limit's next token, the archive's progress, the wake-grace period (0: no limit).
    // A group member's redelivery scan is the wait set's to time (it must poll for that).
    [[nodiscard]] uint64_t look_again_by(uint64_t now) const noexcept;
    // Counts a busy-spinning subscriber in may_sleep once it joins a wait set.
    void count_as_sleeper_for_wait_set() noexcept;

private:
    // The ring (and archive) part of a poll: delivers up to `max` messages to `handler`, no ack.
    // `batching`: for poll_batch(), whose messages must stay valid until the batch is handed over.
    [[nodiscard]] inline uint32_t poll_records(Handler& handler, std::size_t max, bool batching) noexcept;  // inlined in subscriber.cpp
    // Reader kinds (read/ring_readers.cpp): one loop per kind of ring reader, chosen once when the
    // subscriber is made, each checking per record only what its kind needs. A gating reader
    // reads in place; a reader producers may lap copies and validates (`Batch`: into the batch
    // arena). `Limited`: the subscription has a rate limit. The archive is a source of its own
    // (read/archive_source.cpp) and a group member's poll is its group's (groups/group.h).
    using RingReader = uint32_t (SubscriberCore::*)(Handler&, std::size_t) noexcept;
    RingReader read_ring_ = nullptr;
    RingReader read_ring_batch_ = nullptr;
    void choose_ring_readers() noexcept;
    template <bool Limited>
    [[nodiscard]] uint32_t read_gated(Handler& handler, std::size_t max) noexcept;
    template <bool Limited, bool Batch>
    [[nodiscard]] uint32_t read_lappable(Handler& handler, std::size_t max) noexcept;
    // Hands the record `r` (its bytes at `payload`, ending at ring position `end`) to `handler`.
    // Always inlined into the reader loops: a call per message, with the record's fields spilled
    // to memory for it, cost up to 6 ns a message (Breakdown/poll_batch).
    // False: not delivered (expired, steps_over_expired).
    [[gnu::always_inline]] inline bool deliver_record(Handler& handler, const RecordInfo& r, const std::byte* payload,
                                                      uint64_t end) noexcept;
    // After reading a record: whether producers lapped us meanwhile (what we read may be torn).
    [[nodiscard]] bool lapped_while_reading() const noexcept;
    // Overrun: goes on from the oldest record the ring holds, or from the archive (true).
    [[nodiscard]] bool resync_or_replay() noexcept;
    // Nothing at `position`: counts the empty poll, and if producers lapped us goes on from the
    // oldest record the ring holds. True to read on in the ring (false: stop, or read the archive).
    [[nodiscard]] bool read_on_after_empty() noexcept;
    // The end of every poll: the auto-ack, then the status for `count` messages delivered.
    [[nodiscard]] inline PollResult finish_poll(uint32_t count) noexcept;  // inlined in subscriber.cpp
    template <class PollOnce>
    [[nodiscard]] PollResult receive_with(PollOnce&& poll_once, std::chrono::nanoseconds timeout, std::size_t max) noexcept;
    [[nodiscard]] bool overrun() const noexcept;
    // In-place reads (SubscribeOptions::in_place_from): whether a `length`-byte message is read in
    // place; holding the record at `pos` in the slot (false: too close to the tail to hold, copy
    // it instead); letting it go after the handler, waking a producer that waits on it.
    [[nodiscard]] bool reads_in_place(uint32_t length) const noexcept { return can_hold && length >= options.in_place_from; }
    [[nodiscard]] bool hold_record(uint64_t pos) noexcept;
    void release_hold() noexcept;
    // An ephemeral reader of a block or fail topic whose producers honour holds, asked to read in place.
    const bool can_hold = !durable && seg.in_place_reads() && options.in_place_from != 0 &&
                          (seg.on_full() == OnFull::block || seg.on_full() == OnFull::fail);
    // A spin_then_sleep subscriber counts itself in the consumer region's may_sleep for as long as
    // it lives, so that publishers keep waking sleepers.
    void count_as_sleeper() noexcept;
    void start_counting_as_sleeper() noexcept;  // counts in may_sleep from now on
    // How long a sleep may last now: within kWakeGraceNs of counting itself, a publisher may not
    // have seen the count yet and skip the wake, so sleeps are short then.
    [[nodiscard]] std::chrono::nanoseconds sleep_cap() const noexcept;
    uint64_t counted_since_ns = 0;  // 0: not counted in may_sleep
    void resync() noexcept;
    // Reads the archive from `id` (or the first record at or after `time_ns`), the ring position
    // kept. False without an archive, or if it cannot be read.
    [[nodiscard]] bool start_replay(uint64_t id, uint64_t time_ns, bool count_lost) noexcept;
    enum class ArchiveStep : uint8_t { stay, ring, broken };
    [[nodiscard]] ArchiveStep poll_archive(Handler& handler, std::size_t max, uint32_t& count) noexcept;
    // Goes on in the ring from id `want` if the ring still holds it. False to read the archive on.
    [[nodiscard]] bool leave_archive(uint64_t want) noexcept;
    // Every message below this id is in the archive: the archiver's ack.
    [[nodiscard]] uint64_t archived_below() const noexcept;
    // The id of the record at `pos` (a gating reader's resumed cursor), or `fallback` if unknown.
    [[nodiscard]] uint64_t ring_id_at(uint64_t pos, uint64_t fallback) const noexcept;
    void store_archive_ack(uint64_t next_unacked_id) noexcept;
    // A record a seek steps over: below deliver_from, or before the first at or after
    // deliver_from_time (the first that is not ends the time seek: from there on, in order).
    [[nodiscard]] bool steps_over(uint64_t id, uint64_t timestamp_ns) noexcept {
        if (id < deliver_from) return true;
        if (deliver_from_time == 0) return false;
        if (timestamp_ns < deliver_from_time) return true;
        deliver_from_time = 0;
        return false;
    }
    // A durable subscription is never given a message past its expiry (Message::expires_at_ns): it
    // steps over it as read, and counts it. Ephemeral readers see every message, with its expiry.
    // A message without one costs a test of a field split_record just wrote.
    [[nodiscard]] bool steps_over_expired(const Message& m) noexcept {
        if (m.expires_at_ns == 0 || !durable || expiry_clock.now_ns() < m.expires_at_ns) return false;
        ++expired_total;
        return true;
    }
    WallClock expiry_clock;
    // Inline: every reader kind calls it per message, from its own file.
    void deliver(Handler& handler, Message& m) noexcept {
        if (sample_armed) [[unlikely]] take_sample(m.id);
        m.lost_before = std::exchange(lost_pending, 0);
        m.delivered_by_ = this;
        m.epoch_ = epoch;
        rate.spend();
        handler(m);
        ++delivered_total;
    }
    void publish_progress() noexcept;
    void record_processing(uint64_t ns) noexcept;
};

}  // namespace shmbus::detail
