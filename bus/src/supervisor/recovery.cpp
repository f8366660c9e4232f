#include "supervisor/recovery.h"

#include <algorithm>
#include <optional>

#include "core/futex.h"
#include "core/ring.h"
#include "core/slots.h"

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

// An early wrap's claim (PublisherOptions::reuse_space): padding alone, from `start` to the ring's
// end, longer than any other claim can be (longest_claim), so never taken for a record's.
bool padding_only(const Ring& ring, const Claim& c) {
    const uint64_t cap = ring.capacity();
    const uint64_t offset = c.start & (cap - 1);
    return offset != 0 && c.end - c.start == cap - offset && c.end - c.start > longest_claim(cap);
}

// The slot is written by a process we do not trust: a claim must look like one a producer could
// have made, behind the tail and within the ring.
bool plausible(const Ring& ring, const Claim& c) {
    const uint64_t cap = ring.capacity();
    const uint64_t tail = ring.tail_position();
    return c.end > c.start && ((c.end - c.start) <= longest_claim(cap) || padding_only(ring, c)) &&
           c.start % layout::kRecordAlignment == 0 && c.end % layout::kRecordAlignment == 0 && c.end <= tail &&
           tail - c.start <= cap;
}

// Where the record of a claim starts: after the padding if the claim wrapped; at its end if it
// holds padding alone.
uint64_t record_start(const Ring& ring, const Claim& c) {
    if (padding_only(ring, c)) return c.end;
    const uint64_t offset = c.start & (ring.capacity() - 1);
    return offset + (c.end - c.start) > ring.capacity() ? c.start + (ring.capacity() - offset) : c.start;
}

// Whether a claim was finished: its record committed (by its producer or by whoever sealed it),
// or, for padding alone, the padding.
bool finished(const Ring& ring, const Claim& c) {
    return committed(ring, padding_only(ring, c) ? c.start : record_start(ring, c));
}

// The id of the message that follows a claim ending at `end`, where it can be known: the tail's
// next id, a committed record's (padding carries the next id too), or the id a producer announced
// for a claim starting there.
std::optional<uint64_t> id_following(const Segment& seg, uint64_t end) {
    if (end % layout::kRecordAlignment != 0) return std::nullopt;  // from a slot we do not trust: not a boundary
    const Ring ring(seg);
    const TailSnapshot tail = ring.read_tail();
    if (end == tail.position) return tail.next_id;
    if (end > tail.position) return std::nullopt;
    if (committed(ring, end)) return layout::get_field(ring.header_at(end)->id);
    for (uint32_t i = 0; i < seg.max_producers(); ++i) {
        auto& p = seg.producer_slot(i);
        // acquire: pairs with the producer's release store of intent, which publishes claim_id.
        if (p.intent.load(std::memory_order_acquire) == end + 1) return p.claim_id.load(std::memory_order_relaxed);
    }
    return std::nullopt;
}

// The size of the record a producer wrote a header for at `pos` as the message with id `id`,
// if that header is whole and inside [pos, end); nothing where it is stale, torn or not there.
std::optional<uint64_t> written_record(const Segment& seg, const Ring& ring, uint64_t pos, uint64_t end, uint64_t id) {
    const auto* h = ring.header_at(pos);
    if (layout::get_field(h->id) != id || layout::get_field(h->type) != uint16_t(RecordType::data)) return std::nullopt;
    const uint64_t length = layout::get_field(h->length);
    if (length > seg.max_message() + layout::record_allowance(layout::get_field(h->flags))) return std::nullopt;
    const uint64_t size = layout::record_size(length);
    if (pos + size > end) return std::nullopt;
    return size;
}

// Commits whatever part of the claim is still uncommitted: padding as padding, each record as a
// skip record. A claim holds one record, or several (Publisher::publish_batch), whose headers
// were all written before the claim was recorded: each is sealed as it was laid out, with its
// own id, so readers see every id once. Where the headers stop (a claim only announced), the rest
// is laid out anew: one skip record per id still unaccounted for, as far as the id that follows
// the claim (id_following, where known) says how many, the last taking the bytes left.
bool seal_claim(const Segment& seg, const Claim& c) {
    const Ring ring(seg);
    if (!plausible(ring, c)) return false;
    const uint64_t record = record_start(ring, c);
    bool sealed = false;
    if (record != c.start && !committed(ring, c.start)) {
        seal(ring, c.start, record - c.start, RecordType::padding, c.id);
        sealed = true;
    }
    uint64_t pos = record;
    uint64_t id = c.id;
    uint64_t skips = 0;
    while (pos < c.end) {
        if (committed(ring, pos)) {  // by its producer, or sealed by a daemon that died before finishing
            RecordInfo r{};
            if (ring.inspect(pos, r) != RecordCheck::ready || r.type == uint16_t(RecordType::padding) || pos + r.size > c.end) break;
            pos += r.size;
            id = r.id + 1;
            continue;
        }
        const auto size = written_record(seg, ring, pos, c.end, id);
        if (!size) break;
        seal(ring, pos, *size, RecordType::skip, id);
        ++skips;
        pos += *size;
        ++id;
    }
    if (pos < c.end && !committed(ring, pos)) {
        const uint64_t minimal = layout::record_size(0);
        const std::optional<uint64_t> id_after = id_following(seg, c.end);
        uint64_t ids_left = id_after && *id_after > id ? *id_after - id : 1;
        if (ids_left * minimal > c.end - pos) ids_left = 1;  // not a claim a producer could have made
        for (; ids_left > 1; --ids_left, pos += minimal, ++id, ++skips) seal(ring, pos, minimal, RecordType::skip, id);
        seal(ring, pos, c.end - pos, RecordType::skip, id);
        ++skips;
    }
    if (skips != 0) {
        seg.producers().skip_records.fetch_add(skips, std::memory_order_relaxed);  // relaxed: a statistic
        sealed = true;
    }
    if (sealed) futex_signal(seg.producers().data_futex);  // readers asleep on this record must look again
    return sealed;
}

// Does a producer slot whose owner may be alive (not in `dead`) record or announce a claim
// starting at `start`?
bool claimed_by_live(const Segment& seg, uint64_t start, const std::vector<uint32_t>& dead) {
    for (uint32_t i = 0; i < seg.max_producers(); ++i) {
        if (std::find(dead.begin(), dead.end(), i) != dead.end()) continue;
        auto& p = seg.producer_slot(i);
        if (!producer_active(p)) continue;
        // acquire: pairs with the producer's release stores of intent and claim_start.
        if (p.claim_start.load(std::memory_order_acquire) == start + 1 || p.intent.load(std::memory_order_acquire) == start + 1)
            return true;
    }
    return false;
}

// Does a dead producer (in `dead`) announce a claim starting at `start`?
bool announced_by_dead(const Segment& seg, uint64_t start, const std::vector<uint32_t>& dead) {
    return std::any_of(dead.begin(), dead.end(), [&](uint32_t i) {
        // SYNC: acquire pairs with the release store of intent in PublisherCore::announce.
        return seg.producer_slot(i).intent.load(std::memory_order_acquire) == start + 1;
    });
}

// A claim only announced by a dead producer: seal it once it is certain to be its own.
SealOutcome check_orphan(const Segment& seg, const Claim& c, const std::vector<uint32_t>& dead) {
    const Ring ring(seg);
    const TailSnapshot tail = ring.read_tail();
    if (c.start >= tail.position) return SealOutcome::nothing;  // its CAS never won: nothing claimed there
    if (!plausible(ring, c)) return SealOutcome::nothing;
    if (finished(ring, c)) return SealOutcome::nothing;  // by whoever won
    // Someone won `start` and has not committed. A live winner names it in its slot, before its
    // CAS (intent) and after it (claim_start), until it commits: then it is theirs to finish.
    if (claimed_by_live(seg, c.start, dead)) return SealOutcome::retry_later;
    // Nobody alive owns it, so a dead announcer won it, and its claim ends where the next one
    // starts: at the tail, at a committed record, or at a claim somebody announced.
    const bool followed = c.end == tail.position || committed(ring, c.end) || claimed_by_live(seg, c.end, dead) ||
                          announced_by_dead(seg, c.end, dead);
    if (!followed) return SealOutcome::retry_later;
    return seal_claim(seg, c) ? SealOutcome::sealed : SealOutcome::nothing;
}

// The claim a slot describes: recorded (claim_start), taken back (revoked: the record's position;
// its header, written before the claim was recorded, gives its size and id), or only announced
// (intent).
struct SlotClaim {
    Claim claim{};
    enum Kind { none, recorded, taken_back, announced } kind = none;
};

// A claim taken back, from its record header (written before the claim was recorded).
SlotClaim taken_back_claim(const Segment& seg, uint64_t revoked) {
    // The slot is written by a process we do not trust: only a record boundary can be a record.
    if ((revoked - 1) % layout::kRecordAlignment != 0) return {};
    const auto* h = Ring(seg).header_at(revoked - 1);
    const uint64_t length = layout::get_field(h->length);
    if (length > seg.max_message()) return {};  // not a header a producer wrote: leave it
    return {{revoked - 1, revoked - 1 + layout::record_size(length), layout::get_field(h->id)}, SlotClaim::taken_back};
}

SlotClaim claim_of(const Segment& seg, const layout::ProducerSlot& slot) {
    // SYNC: acquire pairs with the release stores of claim_start, intent and revoked.
    const uint64_t recorded = slot.claim_start.load(std::memory_order_acquire);
    const uint64_t announced = slot.intent.load(std::memory_order_acquire);
    const uint64_t revoked = slot.revoked.load(std::memory_order_acquire);
    const uint64_t end = slot.claim_end.load(std::memory_order_relaxed);  // relaxed: published with intent
    const uint64_t id = slot.claim_id.load(std::memory_order_relaxed);
    if (recorded != 0) return {{recorded - 1, end, id}, SlotClaim::recorded};
    if (revoked != 0) return taken_back_claim(seg, revoked);
    if (announced == 0) return {};
    return {{announced - 1, end, id}, SlotClaim::announced};
}

void clear_claim(layout::ProducerSlot& slot) {
    slot.claim_start.store(0, std::memory_order_relaxed);  // relaxed: the owner is dead, only we write
    slot.intent.store(0, std::memory_order_relaxed);
    slot.revoked.store(0, std::memory_order_release);     // SYNC: pairs with min_gating_ack: bytes free again
}

}  // namespace

SealOutcome seal_abandoned_claim(const Segment& seg, uint32_t index, const std::vector<uint32_t>& dead) noexcept {
    auto& slot = seg.producer_slot(index);
    const SlotClaim c = claim_of(seg, slot);
    SealOutcome outcome = SealOutcome::nothing;
    if (c.kind == SlotClaim::recorded || c.kind == SlotClaim::taken_back)
        outcome = seal_claim(seg, c.claim) ? SealOutcome::sealed : SealOutcome::nothing;
    else if (c.kind == SlotClaim::announced)
        outcome = check_orphan(seg, c.claim, dead);
    // Cleared only once settled: if this daemon dies meanwhile, the next one finds the claim again.
    if (outcome != SealOutcome::retry_later) clear_claim(slot);
    return outcome;
}

bool take_back_stalled_claim(const Segment& seg, uint32_t index, uint64_t tagged) noexcept {
    auto& slot = seg.producer_slot(index);
    // One taken-back claim per producer at a time: `revoked` holds it until the owner notices.
    // SYNC: acquire pairs with the owner's release store of 0 in PublisherCore::commit_record
    // (done writing the bytes taken back) and the CAS in release_claim.
    if (slot.revoked.load(std::memory_order_acquire) != 0) return false;
    const Claim claim{tagged - 1, slot.claim_end.load(std::memory_order_relaxed), slot.claim_id.load(std::memory_order_relaxed)};
    const Ring ring(seg);
    if (!plausible(ring, claim)) return false;
    // Marked before the CAS: a daemon that dies between the two leaves a mark the next one settles
    // (settle_take_back), never a claim taken back without a mark. The bytes a late writer may
    // still touch start at the record (its padding is committed).
    const uint64_t mark = record_start(ring, claim) + 1;
    // SYNC: release pairs with the acquire load of revoked in min_gating_ack and claim_of.
    slot.revoked.store(mark, std::memory_order_seq_cst);
    uint64_t expected = tagged;
    // SYNC: pairs with the producer's CAS of claim_start in PublisherCore::release_claim: exactly
    // one of the two clears it; the producer's commit word then says data, ours says skip. end and
    // id were read before (the release half keeps them there) while claim_start still held `tagged`.
    if (!slot.claim_start.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) {
        uint64_t expected_mark = mark;  // the owner may have cleared it already
        slot.revoked.compare_exchange_strong(expected_mark, 0, std::memory_order_acq_rel);
        return false;
    }
    seal_claim(seg, claim);
    return true;
}

void settle_take_back(const Segment& seg, uint32_t index) noexcept {
    auto& slot = seg.producer_slot(index);
    // SYNC: seq_cst, as the mark's store and the CAS of claim_start in take_back_stalled_claim
    // (the previous shmbusd's) and release_claim (the owner's): read in the order they were made,
    // a mark with claim_start still recorded means the CAS never happened.
    uint64_t revoked = slot.revoked.load(std::memory_order_seq_cst);
    if (revoked == 0) return;
    const Ring ring(seg);
    if (const uint64_t recorded = slot.claim_start.load(std::memory_order_seq_cst); recorded != 0) {
        const Claim open{recorded - 1, slot.claim_end.load(std::memory_order_relaxed), 0};
        if (record_start(ring, open) == revoked - 1) {  // marked, never taken: the claim stays the owner's
            // SYNC: pairs with the owner's CAS of revoked in release_claim: one of us lifts the mark.
            slot.revoked.compare_exchange_strong(revoked, 0, std::memory_order_acq_rel);
            return;
        }
    }
    const SlotClaim c = taken_back_claim(seg, revoked);  // taken, maybe never sealed
    if (c.kind == SlotClaim::taken_back) seal_claim(seg, c.claim);
}

}  // namespace shmbus::detail
