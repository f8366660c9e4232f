#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "read/subscriber_core.h"
#include "record/record_view.h"
#include "core/cursor.h"
#include "core/futex.h"
#include "core/data_wait.h"
#include "groups/member_wait.h"
#include "read/wait_set_core.h"

namespace shmbus {
namespace detail {

using layout::RecordType;

namespace {
constexpr uint32_t kProgressEvery = 64;  // empty polls between statistics updates
constexpr std::chrono::milliseconds kMaxSleep{100};  // re-check even if nobody wakes us
// For this long after a subscriber starts counting in may_sleep, a publisher may still read the
// old count and skip the wake (its load is relaxed); sleeps are capped to kGraceSleep meanwhile.
// A store reaches other cores in well under a microsecond: ten milliseconds is ample.
constexpr uint64_t kWakeGraceNs = 10'000'000;
constexpr std::chrono::milliseconds kGraceSleep{1};
}  // namespace

void SubscriberCore::count_as_sleeper() noexcept {
    if (options.wait == WaitStrategy::spin_then_sleep) start_counting_as_sleeper();
}

void SubscriberCore::start_counting_as_sleeper() noexcept {
    // relaxed: publishers read it relaxed too; the grace period (sleep_cap) covers their lag.
    seg.consumers().may_sleep.fetch_add(1, std::memory_order_relaxed);
    counted_since_ns = monotonic_ns();
}

void SubscriberCore::count_as_sleeper_for_wait_set() noexcept {
    if (counted_since_ns == 0) start_counting_as_sleeper();
}

bool SubscriberCore::may_deliver(uint64_t now) const noexcept {
    if (corrupt || seg.deleted()) return true;
    if (group) {
        if (group->corrupt()) return true;
        const uint64_t token_at = group->rate_ready_ns();
        return (token_at == 0 || token_at <= now) && group->new_message_waiting();
    }
    if (replay || held) return true;
    if (const uint64_t token_at = rate_ready(); token_at > now) return false;
    RecordInfo r{};
    return ring.inspect(position, r) != RecordCheck::not_ready || ring.lapped(position);
}

uint64_t SubscriberCore::look_again_by(uint64_t now) const noexcept {
    uint64_t by = 0;
    auto no_later_than = [&](uint64_t t) { by = by == 0 ? t : std::min(by, t); };
    if (const uint64_t token_at = rate_ready(); token_at != 0) no_later_than(token_at);
    // Reading the archive, what comes next is the archiver's progress, which wakes nobody.
    const uint64_t soon = now + uint64_t(std::chrono::nanoseconds(kGraceSleep).count());
    if (replay || held) no_later_than(soon);
    if (now - counted_since_ns < kWakeGraceNs) no_later_than(soon);
    return by;
}

std::chrono::nanoseconds SubscriberCore::sleep_cap() const noexcept {
    return monotonic_ns() - counted_since_ns < kWakeGraceNs ? kGraceSleep : kMaxSleep;
}

SubscriberCore::~SubscriberCore() {
    if (wait_set) leave_wait_set(*wait_set, *this);
    replay.reset();
    if (archive_dir >= 0) ::close(archive_dir);
    if (counted_since_ns != 0) seg.consumers().may_sleep.fetch_sub(1, std::memory_order_relaxed);  // relaxed: as above
    if (!channel) return;
    publish_progress();
    protocol::Unsubscribe req{};
    copy_name(req.topic, topic);
    req.slot = slot_index;
    (void)channel->request_if_connected(protocol::Type::unsubscribe, &req, sizeof req);
}

void SubscriberCore::start_at(uint64_t pos, uint64_t id, uint64_t deliver_from_id, uint64_t lost_now) noexcept {
    ++epoch;
    position = pos;
    next_id = id;
    deliver_from = deliver_from_id;
    lost_pending += lost_now;
    lost_total += lost_now;
    acked_position = pos;
}

void SubscriberCore::begin(uint64_t pos, uint64_t id, bool was_resumed) {
    resumed = was_resumed;
    if (!gated) copy.resize(largest_record());
    const bool from_id = options.from == StartFrom::id && !resumed;
    const uint64_t placed_lost = from_id && id > options.from_id ? id - options.from_id : 0;
    start_at(pos, id, from_id ? options.from_id : 0, 0);
    acked_id = id;
    if (!resumed) {
        start_from(options.from, options.from_id, options.from_time_ns, placed_lost);
        return;
    }
    if (archive_dir < 0) return;
    // A durable cursor acked up to `id` at ring position `pos`. Acks of messages read from the
    // archive move only the id, so an id below the one at `pos` means the gap is on disk.
    if (gated) {
        ring_resume_id = ring_id_at(pos, id);
        if (id < ring_resume_id) (void)start_replay(id, 0, true);
        return;
    }
    // A reader that does not gate may have been overrun while it was away.
    auto start = ring.resolve_start(StartFrom::id, id, false);
    if (start && start->lost == 0) {
        position = start->position;
        next_id = start->id;
        deliver_from = start->deliver_from;
    } else if (!start_replay(id, 0, true)) {
        resync();
    }
}

void SubscriberCore::start_from(StartFrom from, uint64_t from_id, uint64_t from_time_ns, uint64_t placed_lost) noexcept {
    ring_resume_id = next_id;
    deliver_from_time = from == StartFrom::time ? from_time_ns : 0;
    bool replaying = false;
    if (archive_dir >= 0) {
        if (from == StartFrom::earliest) replaying = start_replay(0, 0, false);
        else if (from == StartFrom::id && placed_lost > 0) replaying = start_replay(from_id, 0, true);
        else if (from == StartFrom::time) replaying = start_replay(0, std::max<uint64_t>(from_time_ns, 1), false);
        else if (from == StartFrom::latest_per_key) replaying = start_latest_per_key();
    }
    // From the archive, the ring's own start position says nothing about what to step over.
    if (replaying) deliver_from = from == StartFrom::id ? from_id : 0;
    if (!replaying && placed_lost > 0) {
        lost_pending += placed_lost;
        lost_total += placed_lost;
    }
}

void SubscriberCore::publish_progress() noexcept {
    // relaxed: statistics for `topic info`, read racily by design.
    slot->read_id.store(next_id, std::memory_order_relaxed);
    slot->delivered.store(delivered_total, std::memory_order_relaxed);
    slot->lost.store(lost_total, std::memory_order_relaxed);
    if (expired_total != 0) slot->expired.store(expired_total, std::memory_order_relaxed);  // 1.11; padding before
}

void SubscriberCore::record_processing(uint64_t ns) noexcept {
    const std::size_t bucket = std::min<std::size_t>(layout::kProcessingBuckets - 1, ns < 2 ? 0 : 63 - __builtin_clzll(ns));
    // relaxed: statistics for `topic info`, read racily by design.
    slot->processing[bucket].fetch_add(1, std::memory_order_relaxed);
    slot->processing_sum_ns.fetch_add(ns, std::memory_order_relaxed);
    slot->processing_count.fetch_add(1, std::memory_order_relaxed);
}

void SubscriberCore::store_ack(uint64_t pos, uint64_t id) noexcept {
    if (pos <= acked_position) return;
    crash_before_ack.pass();
    acked_position = pos;
    acked_id = id;
    if (sample_id != kNoSample && id > sample_id) {
        record_processing(monotonic_ns() - sample_t0_ns);
        sample_id = kNoSample;
    }
    slot->ack_id.store(id, std::memory_order_relaxed);  // relaxed: read with ack_position below
    // SYNC: pairs with the seq_cst load in PublisherCore::min_gating_ack: our reads of every
    // acked record happen before a producer overwrites it.
    slot->ack_position.store(pos, std::memory_order_release);
    if (!gated) return;
    // SYNC: StoreLoad fence, pairs with the seq_cst increment of space_waiters in
    // PublisherCore::wait_for_space.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (seg.space_waiters().load(std::memory_order_relaxed) != 0) {  // relaxed: ordered by the fence
        futex_signal(seg.consumers().space_futex);
    }
}

void SubscriberCore::ack_all_delivered() noexcept {
    if (replay) store_archive_ack(next_id);
    else store_ack(position, next_id);
}

[[gnu::always_inline]] inline uint32_t SubscriberCore::poll_records(Handler& handler, std::size_t max, bool batching) noexcept {
    rate.new_poll();
    uint32_t count = 0;
    // The clock is read by a sampled poll's first delivery only: the others pay nothing for
    // processing times.
    sample_armed = durable && timed && sample_id == kNoSample && delivering_polls % kSampleEvery == 0;
    const RingReader read_ring = batching ? read_ring_batch_ : read_ring_;
    while (count < max) {
        if (replay) {
            // A batch holds views into the ring (or its copy arena): what the archive reader
            // returns is overwritten by its next read, so a batch ends where the archive begins
            // (the next poll_batch() reads the archive one message at a time).
            if (batching) break;
            const ArchiveStep step = poll_archive(handler, max, count);
            if (step == ArchiveStep::ring) continue;
            if (step == ArchiveStep::broken) corrupt = true;
            break;
        }
        count += (this->*read_ring)(handler, max - count);
        // The ring reader stops when the ring is empty, the poll full, the rate limit reached or a
        // record corrupt; and when an overrun sent it to the archive, which goes on above.
        if (!replay) break;
    }
    if (count > 0 || empty_polls % kProgressEvery == 0) publish_progress();
    sample_armed = false;  // a poll that delivered nothing (all stepped over, say) takes no sample
    if (count > 0) {
        empty_polls = 0;
        ++delivering_polls;
    }
    return count;
}

[[gnu::always_inline]] inline PollResult SubscriberCore::finish_poll(uint32_t count) noexcept {
    if (options.auto_ack && durable) ack_all_delivered();
    if (corrupt && count == 0) return {ReceiveStatus::corrupt, 0};
    // Checked only when nothing was left to read: what was published before the deletion is
    // delivered first (publishers refuse to publish once it is set).
    if (count == 0 && seg.deleted()) return {ReceiveStatus::deleted, 0};
    return {count > 0 ? ReceiveStatus::ok : ReceiveStatus::empty, count};
}

PollResult SubscriberCore::poll(Handler& handler, std::size_t max) noexcept {
    if (group) {
        const PollResult r = group->poll(handler, max, this, options.auto_ack);
        delivered_total += r.count;
        if (r.count > 0) slot->delivered.store(delivered_total, std::memory_order_relaxed);  // relaxed: statistics
        return r;
    }
    if (corrupt) return {ReceiveStatus::corrupt, 0};
    return finish_poll(poll_records(handler, max, false));
}

PollResult SubscriberCore::poll_batch(BatchHandler& handler, std::size_t max) noexcept {
    // A group member's messages, and messages read from the archive, come one at a time.
    if (group || replay) {
        auto one = [&](const Message& m) { handler(std::span<const Message>(&m, 1)); };
        Handler each(one);
        return poll(each, max);
    }
    if (corrupt) return {ReceiveStatus::corrupt, 0};
    max = std::min(max, kMaxBatch);
    if (!batch.ready) {
        try {
            batch.messages.reserve(kMaxBatch);
            if (!gated) batch.arena.resize(std::max<std::size_t>(kBatchArenaBytes, largest_record()));
            batch.ready = true;
        } catch (...) {  // out of memory: one message at a time, through the ordinary copy
            auto one = [&](const Message& m) { handler(std::span<const Message>(&m, 1)); };
            Handler each(one);
            return poll(each, max);
        }
    }
    batch.messages.clear();
    batch.used = 0;
    auto collect = [&](const Message& m) { batch.messages.push_back(m); };  // reserved: never allocates
    Handler into_batch(collect);
    const uint32_t count = poll_records(into_batch, max, true);
    if (!batch.messages.empty()) handler(std::span<const Message>(batch.messages));
    return finish_poll(count);
}

AckStatus SubscriberCore::settle(const Message& m, GroupMember::Settle how, uint64_t delay_ns,
                                 std::string_view reason) noexcept {
    if (m.delivered_by_ != this) return AckStatus::not_delivered;
    if (!group) return how == GroupMember::Settle::ack ? ack(m) : AckStatus::not_group;
    return group->settle(m, how, delay_ns, reason);
}

AckStatus SubscriberCore::ack(const Message& m) noexcept {
    if (m.delivered_by_ != this) return AckStatus::not_delivered;
    if (m.epoch_ != epoch) return AckStatus::stale;
    if (!durable) return AckStatus::ok;
    if (m.from_archive_) store_archive_ack(m.id + 1);
    else store_ack(m.end_position_, m.id + 1);  // at or behind `position`: we delivered it
    return AckStatus::ok;
}

template <class PollOnce>
PollResult SubscriberCore::receive_with(PollOnce&& poll_once, std::chrono::nanoseconds timeout, std::size_t max) noexcept {
    PollResult r = poll_once();
    if (r.status != ReceiveStatus::empty || timeout.count() <= 0) return r;
    // The clock is read only every 256 spins: on the fast path a message arrives before that.
    uint64_t deadline = 0;
    auto expired = [&] {
        const uint64_t now = monotonic_ns();
        if (deadline == 0) deadline = now + uint64_t(timeout.count());
        return now >= deadline;
    };
    const bool sleep_ok = options.wait == WaitStrategy::spin_then_sleep;
    // In a dense stream, let the publisher write a run of records alone; a wait that reads the
    // clock starts the deadline, and one that ran into it is followed by a single poll.
    if (const uint64_t began = pacer.wait(uint64_t(timeout.count())); began != 0) deadline = began + uint64_t(timeout.count());
    const bool timed_from_wait = deadline != 0;
    // Held back by the rate limit rather than by an empty ring: no use spinning.
    for (uint32_t i = 0; !sleep_ok || (i < options.spin_polls && rate_ready() == 0); ++i) {
        cpu_relax();
        r = poll_once();
        if (r.status != ReceiveStatus::empty) {
            pacer.arrived(i + 1, r.count, max);
            return r;
        }
        if ((i % 256 == 255 || (i == 0 && timed_from_wait)) && expired()) {
            pacer.went_quiet();
            return r;
        }
    }
    pacer.went_quiet();
    // How long the next sleep may last: to the deadline, at most kMaxSleep, and not past the rate
    // limit's next token (messages are waiting then, so no publisher will wake us).
    auto sleep_for = [&] {
        const uint64_t now = monotonic_ns();
        auto left = std::min<std::chrono::nanoseconds>(std::chrono::nanoseconds(deadline > now ? deadline - now : 0), sleep_cap());
        // Reading the archive, what comes next is the archiver's progress, which wakes nobody.
        if (replay) left = std::min<std::chrono::nanoseconds>(left, kGraceSleep);
        if (const uint64_t ready = rate_ready(); ready != 0)
            left = std::min(left, std::chrono::nanoseconds(ready > now ? ready - now : 0));
        // A member: not past the next retry, delivery time or visibility deadline of its group.
        if (group)
            if (const uint64_t due = group->next_due_ns(); due != UINT64_MAX)
                left = std::min(left, std::chrono::nanoseconds(due > now ? due - now : 0));
        return left;
    };
    if (group) return wait_as_member(*group, seg, poll_once, sleep_for, expired);
    for (;;) {
        r = sleep_on_data(seg, poll_once, sleep_for, expired);
        if (r.status == ReceiveStatus::empty) r = poll_once();
        if (r.status != ReceiveStatus::empty || expired()) return r;
    }
}

PollResult SubscriberCore::receive(Handler& handler, std::chrono::nanoseconds timeout, std::size_t max) noexcept {
    return receive_with([&] { return poll(handler, max); }, timeout, max);
}

PollResult SubscriberCore::receive_batch(BatchHandler& handler, std::chrono::nanoseconds timeout, std::size_t max) noexcept {
    return receive_with([&] { return poll_batch(handler, max); }, timeout, std::min(max, kMaxBatch));
}

Status SubscriberCore::seek(StartFrom from, uint64_t id) noexcept {
    if (group) return make_error(Errc::invalid_argument, "a group member cannot seek: the group has one position for all");
    if (from == StartFrom::time)
        if (auto st = seg.require_timestamps("it cannot be read from a time"); !st) return st;
    if (from == StartFrom::latest_per_key && compacted_keys == 0)
        return make_error(Errc::invalid_argument, "the topic is not compacted: it keeps no latest message per key");
    const StartFrom ring_from = from == StartFrom::time || from == StartFrom::latest_per_key ? StartFrom::earliest : from;
    auto start = gated ? place_cursor(seg, *slot, ring_from, id, true, false) : ring.resolve_start(ring_from, id, false);
    if (!start) return start.error();
    replay.reset();
    held.reset();
    start_at(start->position, start->id, start->deliver_from, 0);
    start_from(from, id, id, start->lost);
    return ok_status();
}

}  // namespace detail

Subscriber::Subscriber(std::unique_ptr<detail::SubscriberCore> core) noexcept : core_(std::move(core)) {
    core_->handle = this;
}
Subscriber::Subscriber(Subscriber&& other) noexcept : core_(std::move(other.core_)) {
    if (core_) core_->handle = this;
}
Subscriber& Subscriber::operator=(Subscriber&& other) noexcept {
    core_ = std::move(other.core_);
    if (core_) core_->handle = this;
    return *this;
}
Subscriber::~Subscriber() = default;

PollResult Subscriber::poll(Handler handler, std::size_t max) noexcept { return core_->poll(handler, max); }
PollResult Subscriber::receive(Handler handler, std::chrono::nanoseconds timeout, std::size_t max) noexcept {
    return core_->receive(handler, timeout, max);
}
PollResult Subscriber::poll_batch(BatchHandler handler, std::size_t max) noexcept { return core_->poll_batch(handler, max); }
PollResult Subscriber::receive_batch(BatchHandler handler, std::chrono::nanoseconds timeout, std::size_t max) noexcept {
    return core_->receive_batch(handler, timeout, max);
}
AckStatus Subscriber::ack(const Message& m) noexcept { return core_->settle(m, detail::GroupMember::Settle::ack, 0, {}); }
AckStatus Subscriber::nack(const Message& m) noexcept { return core_->settle(m, detail::GroupMember::Settle::nack, 0, {}); }
AckStatus Subscriber::nack(const Message& m, std::string_view reason) noexcept {
    return core_->settle(m, detail::GroupMember::Settle::nack, 0, reason);
}
AckStatus Subscriber::nack(const Message& m, std::chrono::nanoseconds delay) noexcept {
    return core_->settle(m, detail::GroupMember::Settle::nack, uint64_t(std::max<int64_t>(1, delay.count())), {});
}
AckStatus Subscriber::reject(const Message& m, std::string_view reason) noexcept {
    return core_->settle(m, detail::GroupMember::Settle::reject, 0, reason);
}
void Subscriber::ack_delivered() noexcept {
    if (!core_->group) core_->ack_all_delivered();
}
bool Subscriber::in_group() const noexcept { return core_->group != nullptr; }
uint32_t Subscriber::in_flight() const noexcept { return core_->group ? core_->group->held() : 0; }
Status Subscriber::seek(StartFrom from, uint64_t id) noexcept { return core_->seek(from, id); }
uint64_t Subscriber::next_id() const noexcept { return core_->next_id; }
uint64_t Subscriber::lost() const noexcept { return core_->lost_total; }
uint64_t Subscriber::delivered() const noexcept { return core_->delivered_total; }
bool Subscriber::durable() const noexcept { return core_->durable; }
bool Subscriber::resumed() const noexcept { return core_->resumed; }
uint32_t Subscriber::max_message() const noexcept { return core_->seg.max_message(); }
const std::string& Subscriber::topic() const noexcept { return core_->topic; }

const char* to_string(AckStatus status) noexcept {
    switch (status) {
        case AckStatus::ok: return "ok";
        case AckStatus::not_delivered: return "not_delivered";
        case AckStatus::stale: return "stale";
        case AckStatus::not_group: return "not_group";
    }
    return "unknown";
}

}  // namespace shmbus
