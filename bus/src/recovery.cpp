#include "recovery.h"

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

}  // namespace

bool seal_abandoned_claim(const Segment& seg, layout::ProducerSlot& slot) noexcept {
    // SYNC: pairs with the release store of claim_start in PublisherCore::claim.
    const uint64_t tagged = slot.claim_start.load(std::memory_order_acquire);
    if (tagged == 0) return false;
    const uint64_t start = tagged - 1;
    const uint64_t end = slot.claim_end.load(std::memory_order_relaxed);
    const uint64_t id = slot.claim_id.load(std::memory_order_relaxed);
    const Ring ring(seg);
    const uint64_t cap = ring.capacity();
    // The slot is written by a process we do not trust: check it describes a real claim.
    const bool sane = end > start && (end - start) <= cap / 4 + layout::kRecordAlignment &&
                      start % layout::kRecordAlignment == 0 && end % layout::kRecordAlignment == 0 &&
                      end <= ring.tail_position() && ring.tail_position() - start <= cap;
    slot.claim_start.store(0, std::memory_order_relaxed);
    if (!sane) return false;
    const uint64_t offset = start & seg.mask();
    const bool padded = offset + (end - start) > cap;  // the claim wrapped: padding, then the record
    const uint64_t record = padded ? start + (cap - offset) : start;
    bool sealed = false;
    if (padded && !committed(ring, start)) {
        seal(ring, start, record - start, RecordType::padding, id);
        sealed = true;
    }
    if (!committed(ring, record)) {
        seal(ring, record, end - record, RecordType::skip, id);
        seg.producers().skip_records.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
        sealed = true;
    }
    if (sealed) {  // readers asleep on this record must look again
        seg.producers().data_futex.fetch_add(1, std::memory_order_release);
        futex_wake_all(seg.producers().data_futex);
    }
    return sealed;
}

}  // namespace shmbus::detail
