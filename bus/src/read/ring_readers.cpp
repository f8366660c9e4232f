// The ring readers, one loop per reader kind (docs/architecture.md, "Reader kinds"). Which loop a
// subscriber runs is decided once, when it attaches (choose_ring_readers), so that per record each
// loop checks only what its own kind needs: the gating reader never validates against the tail
// nor copies, the lappable reader does both, and neither asks about a rate limit it does not have.
#include <algorithm>

#include "core/futex.h"
#include "read/subscriber_core.h"
#include "record/record_view.h"

namespace shmbus::detail {

using layout::RecordType;

namespace {

[[nodiscard]] inline bool is_padding(const RecordInfo& r) noexcept { return r.type == uint16_t(RecordType::padding); }
// A skip record, or a group's message waiting for its retry (it belongs to that group alone).
[[nodiscard]] inline bool steps_over_kind(const RecordInfo& r) noexcept {
    return r.type == uint16_t(RecordType::skip) || (r.flags & layout::kRecordRetry) != 0;
}

// How many lines past its header's a caught-up reader loads with the next commit word
// (Ring::inspect), from the size of the record it just read: the lines such a record spans, for
// records of up to 4 lines past the header's (256 B of payload); beyond that one, as for the
// smallest, since the processor's own prefetcher streams a long payload in.
[[nodiscard]] inline uint32_t lines_to_touch(uint64_t record_size) noexcept {
    // A record at an odd 32-byte offset has its last byte at (size + 31) from its header line's start.
    const uint64_t lines = (record_size + layout::kRecordAlignment - 1) / layout::kCacheLine;
    return lines >= 2 && lines <= 4 ? uint32_t(lines) : 1;
}

}  // namespace

void SubscriberCore::choose_ring_readers() noexcept {
    const bool limited = rate.limited();
    if (gated) {
        // What a gating reader reads stays in place until it acks: a batch needs no arena either.
        read_ring_ = limited ? &SubscriberCore::read_gated<true> : &SubscriberCore::read_gated<false>;
        read_ring_batch_ = read_ring_;
        return;
    }
    read_ring_ = limited ? &SubscriberCore::read_lappable<true, false> : &SubscriberCore::read_lappable<false, false>;
    read_ring_batch_ = limited ? &SubscriberCore::read_lappable<true, true> : &SubscriberCore::read_lappable<false, true>;
}

inline bool SubscriberCore::deliver_record(Handler& handler, const RecordInfo& r, const std::byte* payload, uint64_t end) noexcept {
    // The subscriber's one Message, its fields rewritten per record: building a fresh one per
    // message cleared 128 bytes each time (a `rep stos`, which measured half a poll's time).
    Message& m = scratch;
    m.id = r.id;
    m.timestamp_ns = r.timestamp_ns;
    split_record(payload, r.length, r.flags, m);
    m.end_position_ = end;
    m.record_flags_ = r.flags;
    m.record_body_ = {payload, r.length};
    if (steps_over_expired(m)) return false;
    deliver(handler, m);
    return true;
}

bool SubscriberCore::lapped_while_reading() const noexcept {
    // SYNC: acquire fence orders our reads of the record before the tail load; pairs with the
    // 16-byte CAS (a full barrier) by which a producer claims the bytes it overwrites.
    std::atomic_thread_fence(std::memory_order_acquire);
    return overrun();
}

// A durable cursor that gates producers: nothing it has not acked is overwritten, so every record
// is read where it lies and a record that does not check out is corrupt, not torn.
template <bool Limited>
uint32_t SubscriberCore::read_gated(Handler& handler, std::size_t max) noexcept {
    uint32_t count = 0;
    while (count < max) {
        RecordInfo r{};
        const RecordCheck check = ring.inspect(position, r, touch_lines);
        if (check == RecordCheck::not_ready) {
            // Producers never pass a gating cursor; one a ring ahead broke the protocol (or the
            // segment is damaged), and the reader goes on from what the ring holds.
            if (read_on_after_empty()) continue;
            break;
        }
        if (check == RecordCheck::corrupt || (!is_padding(r) && r.id != next_id)) {
            corrupt = true;
            break;
        }
        if (is_padding(r)) {
            position += r.size;
            continue;
        }
        if (steps_over_kind(r)) {
            position += r.size;
            next_id = r.id + 1;
            continue;
        }
        if constexpr (Limited) {
            if (r.id >= deliver_from && !rate.take(rate_tat, monotonic_ns())) break;
        }
        const std::byte* payload = ring.payload_at(position);
        position += r.size;
        next_id = r.id + 1;
        touch_lines = lines_to_touch(r.size);
        if (steps_over(r.id, r.timestamp_ns)) continue;
        if (deliver_record(handler, r, payload, position)) ++count;
    }
    return count;
}

// A reader producers may lap (ephemeral, or durable on an overwrite or archive topic): each record
// is copied out and then validated against the tail; if producers lapped it meanwhile, what it
// read may be torn and is thrown away. `Batch`: the copies lie side by side in the batch arena.
// A large message is read in place where its record can be held (hold_record).
template <bool Limited, bool Batch>
uint32_t SubscriberCore::read_lappable(Handler& handler, std::size_t max) noexcept {
    uint32_t count = 0;
    while (count < max) {
        RecordInfo r{};
        const RecordCheck check = ring.inspect(position, r, touch_lines);
        if (check == RecordCheck::not_ready) {
            // Nothing here yet, or the producers lapped us.
            if (read_on_after_empty()) continue;
            break;
        }
        if (check == RecordCheck::corrupt || (!is_padding(r) && r.id != next_id)) {
            if (!lapped_while_reading()) {
                corrupt = true;
                break;
            }
            if (resync_or_replay()) break;
            continue;
        }
        if (is_padding(r) || steps_over_kind(r)) {
            if (lapped_while_reading()) {
                if (resync_or_replay()) break;
                continue;
            }
            position += r.size;
            if (!is_padding(r)) next_id = r.id + 1;
            continue;
        }
        std::byte* copy_to = copy.data();
        if constexpr (Batch) {
            if (batch.used + r.length > batch.arena.size()) break;  // the next poll_batch() takes it
            copy_to = batch.arena.data() + batch.used;
        }
        if constexpr (Limited) {
            if (r.id >= deliver_from && !rate.take(rate_tat, monotonic_ns())) break;
        }
        const std::byte* payload = ring.payload_at(position);
        const bool in_place = !Batch && reads_in_place(r.length) && hold_record(position);
        if (!in_place) {
            Ring::copy_unstable(copy_to, payload, r.length);
            if (lapped_while_reading()) {
                if (resync_or_replay()) break;
                continue;
            }
            payload = copy_to;
            if constexpr (Batch) batch.used += r.length;
        }
        position += r.size;
        next_id = r.id + 1;
        touch_lines = lines_to_touch(r.size);
        if (!steps_over(r.id, r.timestamp_ns) && deliver_record(handler, r, payload, position)) ++count;
        if (in_place) release_hold();
    }
    return count;
}

bool SubscriberCore::resync_or_replay() noexcept {
    resync();
    return replay.has_value();
}

bool SubscriberCore::read_on_after_empty() noexcept {
    ++empty_polls;
    // Asked on every empty poll, so that `empty` never hides messages from a lapped reader:
    // overrun() reads the horizon, a line producers write once per index block, and the contended
    // tail only when the horizon has passed us by a ring.
    if (!overrun()) return false;
    return !resync_or_replay();
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

bool SubscriberCore::hold_record(uint64_t pos) noexcept {
    // SYNC: seq_cst store, then the seq_cst tail load: pairs with the seq_cst loads of the tail
    // and of hold in PublisherCore::min_gating_ack. A producer that missed the hold refreshed its
    // gate from a tail no higher than the one we read, and claims at most a quarter ring past it.
    slot->hold.store(pos + 1, std::memory_order_seq_cst);
    const uint64_t cap = ring.capacity();
    // Then nothing has overwritten the record since we inspected it (no claim ended a ring past
    // it), and nothing will until we let go. SYNC: the seq_cst tail load of the pairing above.
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

}  // namespace shmbus::detail
