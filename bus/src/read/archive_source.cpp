// The archive as a source (docs/archive.md): a subscriber of an archived topic whose next message
// is older than what the ring holds reads it from the archive files, and goes back to the ring
// where the ring takes over. One message at a time, never in a batch.
#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "archive/key_table.h"
#include "core/futex.h"
#include "read/subscriber_core.h"
#include "record/record_view.h"

namespace shmbus::detail {

using layout::RecordType;

namespace {
// How long a subscription from the latest message per key waits for the archiver to have what
// was published before it.
constexpr uint64_t kLatestCatchUpWaitNs = 2'000'000'000;
}  // namespace

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
        // A compacted archive drops superseded records, and with them whole files: no loss.
        if (count_lost && time_ns == 0 && compacted_keys == 0) {
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

bool SubscriberCore::start_latest_per_key() noexcept {
    if (archive_dir < 0 || compacted_keys == 0) return false;
    // What was published before this subscription must be in the table: wait (briefly; the
    // archiver is at most a millisecond behind) until the archiver has it. If it does not come
    // (no archiver runs), what it lacks is read from the ring as the stream after the table.
    const uint64_t published = ring.read_tail().next_id;
    const uint64_t give_up = monotonic_ns() + kLatestCatchUpWaitNs;
    while (archived_below() < published && monotonic_ns() < give_up) std::this_thread::sleep_for(std::chrono::microseconds(100));
    const uint64_t below = archived_below();
    try {
        const int fd = ::fcntl(archive_dir, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) return false;
        auto reader = archive::Reader::open(fd, topic);
        if (!reader || !reader->seek_id(0)) return false;
        archive::KeyTable table(compacted_keys);
        archive::StoredRecord r;
        archive::Reader::Step step;
        while ((step = reader->next(r)) == archive::Reader::Step::record && r.id < below) {
            const RecordKey k = record_key(r.body, r.flags);
            if (!k.key.empty()) table.apply(r.id, k.key, k.tombstone, r.timestamp_ns);
        }
        latest_ids = table.live_ids();
        latest_below = below;
    } catch (...) {  // out of memory for the table: read everything instead
        latest_ids.clear();
        latest_below = 0;
    }
    return start_replay(0, 0, false);
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
        if (steps_over(held->id, held->timestamp_ns) || superseded_below_latest(held->id)) {
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
        if (!steps_over_expired(m)) {
            deliver(handler, m);
            ++count;
        }
        held.reset();
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

}  // namespace shmbus::detail
