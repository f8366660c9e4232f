// A named producer (an idempotent one: PublisherOptions::producer): its messages carry its name and
// a sequence, committed through its entry of the sequence table (layout/sequence_table.h), so that
// a message whose sequence was committed already is a duplicate and never published twice.
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "publish/publisher_core.h"
#include "core/futex.h"
#include "groups/group.h"
#include "core/slots.h"

namespace shmbus::detail {

using layout::RecordType;

void PublisherCore::hold_name(layout::SequenceEntry& entry) noexcept {
    named = &entry;
    // SYNC: acquire pairs with the release stores of committed by the name's earlier holders and
    // by shmbusd's settle_pending, which finished before it handed us the name.
    committed_sequence = entry.committed.load(std::memory_order_acquire);
    highest_sequence = committed_sequence;
}

uint64_t PublisherCore::choose_sequence(uint64_t requested) noexcept {
    if (requested == 0) return highest_sequence + 1;  // 2^64 sequences never run out
    return requested > committed_sequence ? requested : 0;
}

PublishStatus PublisherCore::claim_message(uint64_t sequence, uint64_t body, std::chrono::nanoseconds timeout,
                                           MessageClaim& out) noexcept {
    const std::size_t stamp = named != nullptr ? layout::producer_stamp_size(options.producer.size()) : 0;
    // The stamp is the bus's, not the application's: max_message bounds headers and payload only.
    const PublishStatus st = claim(stamp + body, timeout, out.position, out.id, stamp);
    if (st != PublishStatus::ok) return st;
    out.data = ring.payload_at(out.position);
    if (stamp == 0) return PublishStatus::ok;
    const layout::ProducerStamp head{sequence, uint16_t(options.producer.size()), 0, 0};
    std::memcpy(out.data, &head, sizeof head);
    std::memset(out.data + sizeof head, 0, stamp - sizeof head);
    std::memcpy(out.data + sizeof head, options.producer.data(), options.producer.size());
    out.data += stamp;
    highest_sequence = std::max(highest_sequence, sequence);
    // Published by the commit store, as the header's other fields are (a sealed claim keeps its skip type).
    layout::put_field(ring.header_at(out.position)->flags, uint16_t(layout::kRecordHasProducer));
    return PublishStatus::ok;
}

PublishStatus PublisherCore::commit_message(uint64_t position, uint64_t sequence) noexcept {
    if (named == nullptr) return commit_record(position, RecordType::data);
    if (sequence <= committed_sequence) {  // a loan overtaken by a later sequence: never published twice
        (void)commit_record(position, RecordType::skip);
        return PublishStatus::duplicate;
    }
    // relaxed: published by the release store of pending_sequence below.
    named->pending_position.store(position + 1, std::memory_order_relaxed);
    // SYNC: release pairs with the acquire load of pending_sequence in settle_pending (shmbusd,
    // after our death); the commit store below is a release too, so whoever sees the record
    // committed sees it pending first.
    named->pending_sequence.store(sequence, std::memory_order_release);
    crash_before_commit.pass();
    const PublishStatus st = commit_record(position, RecordType::data);
    if (st == PublishStatus::ok) {
        crash_after_commit.pass();
        committed_sequence = sequence;
        // SYNC: release pairs with the acquire load of committed by the name's next holder (hold_name).
        named->committed.store(sequence, std::memory_order_release);
    }
    // SYNC: release, after committed: settle_pending never sees neither.
    named->pending_sequence.store(0, std::memory_order_release);
    return st;
}

}  // namespace shmbus::detail
