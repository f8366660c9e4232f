#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "cores.h"
#include "cursor.h"
#include "futex.h"

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
    if (options.wait != WaitStrategy::spin_then_sleep) return;
    // relaxed: publishers read it relaxed too; the grace period (sleep_cap) covers their lag.
    seg.consumers().may_sleep.fetch_add(1, std::memory_order_relaxed);
    counted_since_ns = monotonic_ns();
}

std::chrono::nanoseconds SubscriberCore::sleep_cap() const noexcept {
    return monotonic_ns() - counted_since_ns < kWakeGraceNs ? kGraceSleep : kMaxSleep;
}

SubscriberCore::~SubscriberCore() {
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
    }
    // From the archive, the ring's own start position says nothing about what to step over.
    if (replaying) deliver_from = from == StartFrom::id ? from_id : 0;
    if (!replaying && placed_lost > 0) {
        lost_pending += placed_lost;
        lost_total += placed_lost;
    }
}

uint64_t SubscriberCore::ring_id_at(uint64_t pos, uint64_t fallback) const noexcept {
    // A record being written at `pos` is committed within moments (or sealed by shmbusd).
    const uint64_t give_up = monotonic_ns() + 100'000'000;
    while (monotonic_ns() < give_up) {
        const TailSnapshot t = ring.read_tail();
        if (t.position <= pos) return t.next_id;
        RecordInfo r{};
        const RecordCheck c = ring.inspect(pos, r);
        if (c == RecordCheck::corrupt) return fallback;
        if (c == RecordCheck::ready) {
            if (r.type != uint16_t(RecordType::padding)) return r.id;
            pos += r.size;
            continue;
        }
        cpu_relax();
    }
    return fallback;
}

bool SubscriberCore::start_replay(uint64_t id, uint64_t time_ns, bool count_lost) noexcept {
    if (archive_dir < 0) return false;
    try {
        const int fd = ::fcntl(archive_dir, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) return false;
        auto reader = archive::Reader::open(fd, topic);
        if (!reader) return false;
        if (Status st = time_ns != 0 ? reader->seek_time(time_ns) : reader->seek_id(id); !st) return false;
        if (count_lost && time_ns == 0) {
            // Ids the retention already deleted: what the oldest file left begins above `id`.
            if (auto oldest = reader->oldest_id(); oldest && *oldest > id) {
                lost_pending += *oldest - id;
                lost_total += *oldest - id;
            }
        }
        replay.emplace(std::move(*reader));
        held.reset();
        next_id = time_ns != 0 ? 0 : id;  // a time: unknown until the first record is read
        // A new durable subscription that starts in the archive is acked up to where it starts,
        // not where the ring placed it: a crash before its first ack resumes from here.
        if (durable && next_id < acked_id) {
            acked_id = next_id;
            slot->ack_id.store(next_id, std::memory_order_release);  // SYNC: as in store_archive_ack
        }
        return true;
    } catch (...) {  // out of memory: read on in the ring
        return false;
    }
}

uint64_t SubscriberCore::archived_below() const noexcept {
    const auto slot_index = seg.archiver_slot();
    if (!slot_index) return 0;
    // SYNC: acquire pairs with the archiver's release store of ack_position (ack_id is stored
    // just before it): everything below the id it names was written to the archive first.
    const auto& s = seg.consumer_slot(*slot_index);
    (void)s.ack_position.load(std::memory_order_acquire);
    return s.ack_id.load(std::memory_order_relaxed);  // relaxed: ordered by the acquire above
}

void SubscriberCore::deliver(Handler& handler, Message& m) noexcept {
    m.lost_before = std::exchange(lost_pending, 0);
    m.delivered_by_ = this;
    m.epoch_ = epoch;
    rate.spend();
    handler(m);
    ++delivered_total;
}

SubscriberCore::ArchiveStep SubscriberCore::poll_archive(Handler& handler, std::size_t max, uint32_t& count) noexcept {
    const uint64_t limit = archived_below();
    while (count < max) {
        if (!held) {
            archive::StoredRecord r;
            const auto step = replay->next(r);
            // Ids the reader stepped over at damage in a file: reported as lost, as an overrun is.
            if (const uint64_t lost = replay->take_lost(); lost != 0) {
                lost_pending += lost;
                lost_total += lost;
            }
            if (step == archive::Reader::Step::broken) return ArchiveStep::broken;
            if (step == archive::Reader::Step::end) break;
            held = r;
        }
        if (held->id >= limit) break;  // written, perhaps not whole yet: the archiver has not acked it
        if (steps_over(held->id, held->timestamp_ns)) {
            next_id = std::max(next_id, held->id + 1);
            held.reset();
            continue;
        }
        if (rate.limited() && !rate.take(rate_tat, monotonic_ns())) return ArchiveStep::stay;
        Message m;
        m.id = held->id;
        m.timestamp_ns = held->timestamp_ns;
        split_record(held->body.data(), uint32_t(held->body.size()), held->flags, m);
        m.from_archive_ = true;
        m.end_position_ = position;
        m.record_flags_ = held->flags;
        m.record_body_ = held->body;
        next_id = held->id + 1;
        deliver(handler, m);
        held.reset();
        ++count;
    }
    if (count >= max) return ArchiveStep::stay;
    // Everything archived below `limit` has been read (or is held): the ring goes on from there
    // if it still holds it; if it does not, the archiver has archived more since, so read on.
    return leave_archive(held ? held->id : std::max(next_id, limit)) ? ArchiveStep::ring : ArchiveStep::stay;
}

bool SubscriberCore::leave_archive(uint64_t want) noexcept {
    if (gated) {
        // Our cursor has held the ring from `position` (id ring_resume_id) on all along.
        if (want < ring_resume_id) return false;
        next_id = ring_resume_id;
    } else {
        auto start = ring.resolve_start(StartFrom::id, want, false);
        if (!start || start->lost > 0) return false;
        position = start->position;
        next_id = start->id;
    }
    deliver_from = std::max(deliver_from, want);
    replay.reset();
    held.reset();
    return true;
}

// Only a reader that does not gate can be overrun: the bytes at `position` are gone once some
// claim ended more than one ring past it.
bool SubscriberCore::overrun() const noexcept { return ring.lapped(position); }

void SubscriberCore::resync() noexcept {
    // Overrun: an archived topic's reader goes on from the archive and loses nothing it retains.
    if (archive_dir >= 0 && start_replay(next_id, 0, true)) return;
    auto b = ring.oldest_boundary(0);
    if (!b) {
        const TailSnapshot t = ring.read_tail();
        b = Boundary{t.position, t.next_id};
    }
    if (b->id > next_id) {
        lost_pending += b->id - next_id;
        lost_total += b->id - next_id;
    }
    position = b->position;
    next_id = b->id;  // the ids at the boundary rule: a record whose id disagrees is corrupt
}

void SubscriberCore::publish_progress() noexcept {
    // relaxed: statistics for `topic info`, read racily by design.
    slot->read_id.store(next_id, std::memory_order_relaxed);
    slot->delivered.store(delivered_total, std::memory_order_relaxed);
    slot->lost.store(lost_total, std::memory_order_relaxed);
}

void SubscriberCore::record_processing(uint64_t ns) noexcept {
    const std::size_t bucket = std::min<std::size_t>(layout::kProcessingBuckets - 1, ns < 2 ? 0 : 63 - __builtin_clzll(ns));
    // relaxed: statistics for `topic info`, read racily by design.
    slot->processing[bucket].fetch_add(1, std::memory_order_relaxed);
    slot->processing_sum_ns.fetch_add(ns, std::memory_order_relaxed);
    slot->processing_count.fetch_add(1, std::memory_order_relaxed);
}

bool SubscriberCore::hold_record(uint64_t pos) noexcept {
    // SYNC: seq_cst store, then the seq_cst tail load: pairs with the seq_cst loads of the tail
    // and of hold in PublisherCore::min_gating_ack. A producer that missed the hold refreshed its
    // gate from a tail no higher than the one we read, and claims at most a quarter ring past it.
    slot->hold.store(pos + 1, std::memory_order_seq_cst);
    const uint64_t cap = ring.capacity();
    // Then nothing has overwritten the record since we inspected it (no claim ended a ring past
    // it), and nothing will until we let go.
    if (ring.tail_position(std::memory_order_seq_cst) <= pos + cap - cap / 4) return true;
    slot->hold.store(0, std::memory_order_relaxed);  // relaxed: a hold nobody may have relied on
    return false;
}

void SubscriberCore::release_hold() noexcept {
    // SYNC: release pairs with the seq_cst load of hold in min_gating_ack: our reads of the record
    // happen before a producer that sees it released overwrites it.
    slot->hold.store(0, std::memory_order_release);
    // SYNC: StoreLoad fence, pairs with the seq_cst increment of space_waiters in
    // PublisherCore::wait_for_space (as store_ack's): a producer waiting on our hold is woken.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (seg.space_waiters().load(std::memory_order_relaxed) != 0) futex_signal(seg.consumers().space_futex);  // relaxed: the fence orders it
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

// An ack of messages read from the archive moves the id alone: the ring position stays where the
// ring takes over, and the gap between the two is what a resumed cursor reads from the archive.
void SubscriberCore::store_archive_ack(uint64_t id) noexcept {
    if (id <= acked_id) return;
    crash_before_ack.pass();
    acked_id = id;
    // SYNC: release pairs with the acquire loads of ack_id by shmbusd (resume, statistics, the
    // cursors it persists): our reads of the acked messages happen before.
    slot->ack_id.store(id, std::memory_order_release);
}

void SubscriberCore::ack_all_delivered() noexcept {
    if (replay) store_archive_ack(next_id);
    else store_ack(position, next_id);
}

uint32_t SubscriberCore::poll_records(Handler& handler, std::size_t max) noexcept {
    rate.new_poll();
    uint32_t count = 0;
    // The clock is read on a sampled poll only: the others pay nothing for processing times.
    const bool sample = timed && sample_id == kNoSample && delivering_polls % kSampleEvery == 0;
    const uint64_t poll_t0_ns = sample ? monotonic_ns() : 0;
    const uint64_t first_id = next_id;
    // The subscriber's one Message, its fields rewritten per record: building a fresh one per
    // message cleared 128 bytes each time (a `rep stos`, which measured half a poll's time).
    Message& m = scratch;
    while (count < max) {
        if (replay) {
            // A batch holds views into the ring (or its copy arena): what the archive reader
            // returns is overwritten by its next read, so a batch ends where the archive begins
            // (the next poll_batch() reads the archive one message at a time).
            if (batch.active) break;
            const ArchiveStep step = poll_archive(handler, max, count);
            if (step == ArchiveStep::ring) continue;
            if (step == ArchiveStep::broken) corrupt = true;
            break;
        }
        RecordInfo r{};
        const RecordCheck check = ring.inspect(position, r);
        if (check == RecordCheck::not_ready) {
            // Nothing here yet, or the producers lapped us. Asked on every empty poll, so that
            // `empty` never hides messages from a lapped reader: overrun() reads the horizon, a
            // line producers write once per index block, and the contended tail only when the
            // horizon has passed us by a ring.
            ++empty_polls;
            if (overrun()) {
                resync();
                continue;
            }
            break;
        }
        // A non-gating reader validates everything it read against the tail afterwards: if the
        // producers lapped it meanwhile, what it read may be torn and is thrown away.
        auto lapped = [&] {
            if (gated) return false;
            // SYNC: acquire fence orders our reads of the record before the tail load; pairs with
            // the 16-byte CAS (a full barrier) by which a producer claims the bytes it overwrites.
            std::atomic_thread_fence(std::memory_order_acquire);
            return overrun();
        };
        if (check == RecordCheck::corrupt || (r.type != uint16_t(RecordType::padding) && r.id != next_id)) {
            if (lapped()) {
                resync();
                continue;
            }
            corrupt = true;
            break;
        }
        if (r.type == uint16_t(RecordType::padding)) {
            if (lapped()) resync();
            else position += r.size;
            continue;
        }
        // A group's message waiting for its retry belongs to that group alone.
        if (r.type == uint16_t(RecordType::skip) || (r.flags & layout::kRecordRetry)) {
            if (lapped()) {
                resync();
                continue;
            }
            position += r.size;
            next_id = r.id + 1;
            continue;
        }
        // A batch's copies lie side by side in its arena; one that does not fit ends the batch.
        std::byte* copy_to = copy.data();
        if (batch.active && !gated) {
            if (batch.used + r.length > batch.arena.size()) break;
            copy_to = batch.arena.data() + batch.used;
        }
        if (r.id >= deliver_from && rate.limited() && !rate.take(rate_tat, monotonic_ns())) break;
        const std::byte* payload = ring.payload_at(position);
        // A large message is read in place where its record can be held (see hold_record).
        const bool in_place = !gated && !batch.active && reads_in_place(r.length) && hold_record(position);
        if (!gated && !in_place) {
            Ring::copy_unstable(copy_to, payload, r.length);
            if (lapped()) {
                resync();
                continue;
            }
            payload = copy_to;
            if (batch.active) batch.used += r.length;
        }
        const uint64_t end = position + r.size;
        position = end;
        next_id = r.id + 1;
        if (steps_over(r.id, r.timestamp_ns)) {
            if (in_place) release_hold();
            continue;
        }
        m.id = r.id;
        m.timestamp_ns = r.timestamp_ns;
        split_record(payload, r.length, r.flags, m);
        m.end_position_ = end;
        m.record_flags_ = r.flags;
        m.record_body_ = {payload, r.length};
        deliver(handler, m);
        if (in_place) release_hold();
        ++count;
    }
    if (count > 0 || empty_polls % kProgressEvery == 0) publish_progress();
    if (count > 0) {
        empty_polls = 0;
        ++delivering_polls;
        if (sample) sample_id = first_id, sample_t0_ns = poll_t0_ns;
    }
    return count;
}

PollResult SubscriberCore::finish_poll(uint32_t count) noexcept {
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
    return finish_poll(poll_records(handler, max));
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
    batch.active = true;
    auto collect = [&](const Message& m) { batch.messages.push_back(m); };  // reserved: never allocates
    Handler into_batch(collect);
    const uint32_t count = poll_records(into_batch, max);
    batch.active = false;
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
PollResult SubscriberCore::receive_with(PollOnce&& poll_once, std::chrono::nanoseconds timeout) noexcept {
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
    // Held back by the rate limit rather than by an empty ring: no use spinning.
    for (uint32_t i = 0; !sleep_ok || (i < options.spin_polls && rate_ready() == 0); ++i) {
        cpu_relax();
        r = poll_once();
        if (r.status != ReceiveStatus::empty) return r;
        if (i % 256 == 255 && expired()) return r;
    }
    auto& waiters = seg.consumers().data_waiters;
    auto& futex = seg.producers().data_futex;
    // How long the next sleep may last: to the deadline, at most kMaxSleep, and not past the rate
    // limit's next token (messages are waiting then, so no publisher will wake us).
    auto sleep_for = [&] {
        const uint64_t now = monotonic_ns();
        auto left = std::min<std::chrono::nanoseconds>(std::chrono::nanoseconds(deadline > now ? deadline - now : 0), sleep_cap());
        // Reading the archive, what comes next is the archiver's progress, which wakes nobody.
        if (replay) left = std::min<std::chrono::nanoseconds>(left, kGraceSleep);
        if (const uint64_t ready = rate_ready(); ready != 0)
            left = std::min(left, std::chrono::nanoseconds(ready > now ? ready - now : 0));
        return left;
    };
    for (;;) {
        // A group member sleeps on the topic's data futex only as its group's watcher; the others
        // sleep on the group's wake word until a watcher hands over (GroupMember::wake_word).
        if (group) {
            auto& sleepers = group->wake_sleepers();
            // SYNC: seq_cst, before the load of the wake word; pairs with stop_watching's increment
            // of it and then load of wake_sleepers: either it sees us, or we see its increment.
            sleepers.fetch_add(1, std::memory_order_seq_cst);
            // SYNC: seq_cst, before try_watch; pairs with stop_watching's seq_cst store and increment.
            const uint32_t seen = group->wake_word().load(std::memory_order_seq_cst);
            if (!group->try_watch()) {
                r = poll_once();
                if (r.status == ReceiveStatus::empty && !expired()) futex_wait(group->wake_word(), seen, sleep_for());
                sleepers.fetch_sub(1, std::memory_order_relaxed);  // relaxed: only a hint for the waker
                if (r.status == ReceiveStatus::empty) r = poll_once();
                if (r.status == ReceiveStatus::ok) group->wake_another_if_backlog();
                if (r.status != ReceiveStatus::empty || expired()) return r;
                continue;
            }
            sleepers.fetch_sub(1, std::memory_order_relaxed);  // relaxed: only a hint for the waker
        }
        waiters.fetch_add(1, std::memory_order_seq_cst);
        // SYNC: seq_cst increment pairs with the fence in PublisherCore::commit_record: either the
        // poll below sees the commit, or the producer sees us waiting and bumps data_futex.
        const uint32_t seen = futex.load(std::memory_order_seq_cst);
        r = poll_once();
        if (r.status == ReceiveStatus::empty && !expired()) futex_wait(futex, seen, sleep_for());
        waiters.fetch_sub(1, std::memory_order_relaxed);  // relaxed: only a hint for producers
        if (group) group->stop_watching();  // awake: another member watches while we work
        if (r.status == ReceiveStatus::empty) r = poll_once();
        if (group && r.status == ReceiveStatus::ok) group->wake_another_if_backlog();
        if (r.status != ReceiveStatus::empty || expired()) return r;
    }
}

PollResult SubscriberCore::receive(Handler& handler, std::chrono::nanoseconds timeout, std::size_t max) noexcept {
    return receive_with([&] { return poll(handler, max); }, timeout);
}

PollResult SubscriberCore::receive_batch(BatchHandler& handler, std::chrono::nanoseconds timeout, std::size_t max) noexcept {
    return receive_with([&] { return poll_batch(handler, max); }, timeout);
}

Status SubscriberCore::seek(StartFrom from, uint64_t id) noexcept {
    if (group) return make_error(Errc::invalid_argument, "a group member cannot seek: the group has one position for all");
    const StartFrom ring_from = from == StartFrom::time ? StartFrom::earliest : from;
    auto start = gated ? place_cursor(seg, *slot, ring_from, id, true, false) : ring.resolve_start(ring_from, id, false);
    if (!start) return start.error();
    replay.reset();
    held.reset();
    start_at(start->position, start->id, start->deliver_from, 0);
    start_from(from, id, id, start->lost);
    return ok_status();
}

}  // namespace detail

Subscriber::Subscriber(std::unique_ptr<detail::SubscriberCore> core) noexcept : core_(std::move(core)) {}
Subscriber::Subscriber(Subscriber&&) noexcept = default;
Subscriber& Subscriber::operator=(Subscriber&&) noexcept = default;
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
