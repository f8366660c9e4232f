#include "recovery.h"

#include <algorithm>

#include "futex.h"
#include "ring.h"

namespace shmbus::detail {

using layout::RecordType;

namespace {

bool committed(const Ring& ring, uint64_t position) {
    // SYNC: pairs with the producer's release store of `commit`.
    return ring.header_at(position)->commit.load(std::memory_order_acquire) == layout::commit_word(position);
}

void seal(const Ring& ring, uint64_t position, uint64_t bytes, RecordType type, uint64_t id) {
    auto* h = ring.header_at(position);
    layout::write_header(*h, uint32_t(bytes - sizeof(layout::RecordHeader)), type, id, 0);
    // SYNC: pairs with the acquire load of `commit` in Ring::inspect, like a producer's commit.
    h->commit.store(layout::commit_word(position), std::memory_order_release);
}

// The slot is written by a process we do not trust: a claim must look like one a producer could
// have made, behind the tail and within the ring.
bool plausible(const Ring& ring, const Claim& c) {
    const uint64_t cap = ring.capacity();
    const uint64_t tail = ring.tail_position();
    return c.end > c.start && (c.end - c.start) <= cap / 4 + layout::kRecordAlignment &&
           c.start % layout::kRecordAlignment == 0 && c.end % layout::kRecordAlignment == 0 && c.end <= tail &&
           tail - c.start <= cap;
}

// Where the record of a claim starts: after the padding if the claim wrapped.
uint64_t record_start(const Ring& ring, const Claim& c) {
    const uint64_t offset = c.start & (ring.capacity() - 1);
    return offset + (c.end - c.start) > ring.capacity() ? c.start + (ring.capacity() - offset) : c.start;
}

void wake_readers(const Segment& seg) {
    seg.producers().data_futex.fetch_add(1, std::memory_order_release);
    futex_wake_all(seg.producers().data_futex);
}

// Commits whatever part of the claim is still uncommitted: padding as padding, the record as skip.
bool seal_claim(const Segment& seg, const Claim& c) {
    const Ring ring(seg);
    if (!plausible(ring, c)) return false;
    const uint64_t record = record_start(ring, c);
    bool sealed = false;
    if (record != c.start && !committed(ring, c.start)) {
        seal(ring, c.start, record - c.start, RecordType::padding, c.id);
        sealed = true;
    }
    if (!committed(ring, record)) {
        seal(ring, record, c.end - record, RecordType::skip, c.id);
        seg.producers().skip_records.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
        sealed = true;
    }
    if (sealed) wake_readers(seg);  // readers asleep on this record must look again
    return sealed;
}

// Does some producer slot other than `except` record or announce a claim starting at `start`?
bool claimed_by_another(const Segment& seg, uint64_t start, uint32_t except) {
    for (uint32_t i = 0; i < seg.max_producers(); ++i) {
        if (i == except) continue;
        auto& p = seg.producer_slot(i);
        if (p.state.load(std::memory_order_acquire) == 0) continue;
        // acquire: pairs with the producer's release stores of intent and claim_start.
        if (p.claim_start.load(std::memory_order_acquire) == start + 1 || p.intent.load(std::memory_order_acquire) == start + 1)
            return true;
    }
    return false;
}

SealOutcome check_orphan(const Segment& seg, const Claim& c, uint32_t except, const std::vector<Claim>& others) {
    const Ring ring(seg);
    const TailSnapshot tail = ring.read_tail();
    if (c.start >= tail.position) return SealOutcome::nothing;  // its CAS never won: nothing claimed there
    if (!plausible(ring, c)) return SealOutcome::nothing;
    if (committed(ring, record_start(ring, c))) return SealOutcome::nothing;  // finished, by whoever won
    // Someone won `start` and has not committed. A live winner names it in its slot, before its
    // CAS (intent) and after it (claim_start), until it commits: then it is theirs to finish.
    if (claimed_by_another(seg, c.start, except)) return SealOutcome::retry_later;
    // Nobody alive owns it, so the dead announcer won it, and its claim ends where the next one
    // starts: at the tail, at a committed record, or at a claim somebody announced.
    const bool followed = c.end == tail.position || committed(ring, c.end) || claimed_by_another(seg, c.end, except) ||
                          std::any_of(others.begin(), others.end(), [&](const Claim& o) { return o.start == c.end; });
    if (!followed) return SealOutcome::retry_later;
    return seal_claim(seg, c) ? SealOutcome::sealed : SealOutcome::nothing;
}

}  // namespace

SealOutcome seal_abandoned_claim(const Segment& seg, uint32_t index, Claim& pending) noexcept {
    auto& slot = seg.producer_slot(index);
    // SYNC: pairs with the release stores of claim_start and intent in PublisherCore::claim; the
    // owner is dead, so these are its last words.
    const uint64_t recorded = slot.claim_start.exchange(0, std::memory_order_acq_rel);
    const uint64_t announced = slot.intent.exchange(0, std::memory_order_acq_rel);
    const uint64_t end = slot.claim_end.load(std::memory_order_relaxed);
    const uint64_t id = slot.claim_id.load(std::memory_order_relaxed);
    slot.revoked.store(0, std::memory_order_release);  // a late writer that is dead writes no more
    if (recorded != 0) return seal_claim(seg, {recorded - 1, end, id}) ? SealOutcome::sealed : SealOutcome::nothing;
    if (announced == 0) return SealOutcome::nothing;
    pending = {announced - 1, end, id};
    return check_orphan(seg, pending, index, {});
}

SealOutcome seal_orphan_claim(const Segment& seg, const Claim& claim, const std::vector<Claim>& others) noexcept {
    return check_orphan(seg, claim, UINT32_MAX, others);
}

bool take_back_stalled_claim(const Segment& seg, uint32_t index, uint64_t tagged) noexcept {
    auto& slot = seg.producer_slot(index);
    // One taken-back claim per producer at a time: `revoked` holds it until the owner notices.
    if (slot.revoked.load(std::memory_order_acquire) != 0) return false;
    const Claim claim{tagged - 1, slot.claim_end.load(std::memory_order_relaxed), slot.claim_id.load(std::memory_order_relaxed)};
    const Ring ring(seg);
    if (!plausible(ring, claim)) return false;
    uint64_t expected = tagged;
    // SYNC: pairs with the producer's CAS of claim_start in PublisherCore::release_claim: exactly
    // one of the two clears it, and only the winner writes the commit word. end and id were read
    // before (the release half keeps them there) while claim_start still held `tagged`.
    if (!slot.claim_start.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) return false;
    // The bytes a late writer may still touch start at the record (the padding is committed).
    // SYNC: release, before the seal below: a producer that sees readers' acks past the sealed
    // record (which they make after seeing its commit) also sees this, in min_gating_ack.
    slot.revoked.store(record_start(ring, claim) + 1, std::memory_order_release);
    return seal_claim(seg, claim);
}

}  // namespace shmbus::detail
