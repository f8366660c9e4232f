// Layout of the producer region of a topic segment: bytes written only by publishers (and the
// daemon on their behalf). A subscribe-only client can map this region read-only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmbus/layout/segment_header.h"

namespace shmbus::layout {

// The tail: the next free byte position of the log and the id the next message gets. Both are
// claimed together with one 16-byte compare-and-swap, so ids are increasing in log order even with
// many producers. Positions and ids only grow: at 100 GB/s a 64-bit byte position lasts 5.8
// years of uninterrupted publishing, and an id would need 2^64 messages; neither ever wraps
// in practice, so comparisons never need modular arithmetic.
struct alignas(kCacheLine) TailWord {
    alignas(16) uint64_t position;  // accessed with 16-byte __sync CAS and 8-byte __atomic loads
    uint64_t next_id;
    uint8_t pad[kCacheLine - 16];
};
static_assert(sizeof(TailWord) == kCacheLine);
static_assert(offsetof(TailWord, next_id) == 8);

// One per producer registration, filled by the daemon (owner) and the producer (its open claim).
// The claim words let the daemon seal a claim whose owner died before committing it:
//  - before its claim CAS the producer stores claim_end, claim_id, then `intent` (its expected
//    start + 1, release); so even a producer killed right after a winning CAS has named its claim;
//  - after the CAS it stores claim_start (start + 1, release), and clears it when it commits.
// On a topic with an unblock-timeout the producer clears claim_start with a CAS instead, and the
// daemon takes a stalled claim back by the same CAS: exactly one of them wins, so a claim is
// either committed by its owner or sealed by the daemon, never both. A claim taken back stays in
// `revoked` until its owner notices, and gates producers meanwhile: a late writer can never
// scribble over a newer record. The producer writes the record header before recording the
// claim, so after a take-back it writes only payload bytes, which the skip record hides. Line 0
// is the producer's own line: the stores cost nothing measurable. Line 1 (1.2) is the daemon's.
enum class ProducerState : uint32_t { free = 0, active = 1 };

struct alignas(kCacheLine) ProducerSlot {
    // --- line 0 (1.0, 1.1) ---
    std::atomic<uint32_t> state;         // ProducerState; daemon writes, release
    int32_t pid;                         // owner process
    uint64_t start_time;                 // owner's start time (clock ticks since boot, /proc)
    std::atomic<uint64_t> claim_start;   // first byte of the open claim + 1 (padding included); 0: none
    std::atomic<uint64_t> claim_end;     // end of the open (or intended) claim
    std::atomic<uint64_t> claim_id;      // message id of the open (or intended) claim
    std::atomic<uint64_t> intent;        // 1.1: start + 1 of the claim being attempted; 0: none
    std::atomic<uint64_t> revoked;       // 1.1: record position + 1 of a claim the daemon took back; 0: none
    uint64_t owner_token;                // 1.1: the owner's request token, so a retried request finds it
    // --- line 1 (1.2): read only where Segment::producer_slot_has() says it exists ---
    uint64_t owner_session;              // the shmbusd connection that registered it; 0: unknown
    uint8_t pad1[kCacheLine - 8];
};
inline constexpr uint32_t kLegacyProducerSlotStride = kCacheLine;  // 1.0/1.1: line 0 only
static_assert(std::is_standard_layout_v<ProducerSlot>);
static_assert(sizeof(ProducerSlot) == 2 * kCacheLine);
static_assert(offsetof(ProducerSlot, owner_session) == kLegacyProducerSlotStride);
static_assert(offsetof(ProducerSlot, claim_start) == 16);
static_assert(offsetof(ProducerSlot, claim_end) == 24);
static_assert(offsetof(ProducerSlot, claim_id) == 32);
static_assert(offsetof(ProducerSlot, intent) == 40);
static_assert(offsetof(ProducerSlot, revoked) == 48);
static_assert(offsetof(ProducerSlot, owner_token) == 56);
static_assert(offsetof(ProducerSlot, owner_token) + 8 == kLegacyProducerSlotStride);

// Record-boundary index: entry (p / block) % entries holds a record boundary p that lies in
// block p / block, with the id of the first message at or after it. A lapped reader uses it to
// find the oldest record that is still whole. The entry is a tiny seqlock: `tagged` is zeroed,
// `first_id` written, then `tagged` = p + 1 stored with release.
struct IndexEntry {
    std::atomic<uint64_t> tagged;   // boundary position + 1; 0 while being rewritten
    std::atomic<uint64_t> first_id; // id of the first message at or after that boundary
};
static_assert(sizeof(IndexEntry) == 16);

struct ProducerRegionHead {
    TailWord tail;                          // line 0: the claim word, contended by producers
    alignas(kCacheLine) std::atomic<uint32_t> data_futex;  // line 1: bumped to wake sleepers
    // 1.3: producers asleep on a full ring, kept here so that only producers write this region
    // (a 1.2 segment, with no cursor object, keeps it in the consumer region head instead).
    std::atomic<uint32_t> space_waiters;
    alignas(kCacheLine) std::atomic<uint64_t> skip_records;   // line 2: rare producer counters
    std::atomic<uint64_t> aborted_loans;
    std::atomic<uint64_t> full_refusals;    // publishes refused or timed out on a full ring
    std::atomic<uint64_t> late_commits;     // 1.1: commits refused because the daemon took the claim back
    // Nanoseconds publishers spent waiting for room on a full ring, added by each after it waited
    // (in what was padding: 0 in a segment no such publisher wrote, which reads as "none").
    std::atomic<uint64_t> full_wait_ns;
    // Requests (shmbus/request.h) made to this topic as a service, counted by the requesters that
    // publish them (in what was padding: zero where none was made). The outcomes a requester
    // sees without a reply are rare, and so share the horizon's mostly quiet line below.
    std::atomic<uint64_t> requests;
    std::atomic<uint64_t> late_replies;     // replies that came after their request had timed out: dropped
    std::atomic<uint64_t> timed_out;        // requests not answered before their deadline
    // line 3: an upper bound of the tail, raised one index block at a time before any claim
    // passes it. A reader that producers may lap validates what it read against this mostly
    // unchanging line instead of the tail, which every claim writes.
    alignas(kCacheLine) std::atomic<uint64_t> horizon;
    std::atomic<uint64_t> no_responder;     // requests refused at once: no responder served the topic
    std::atomic<uint64_t> responder_died;   // requests whose responder died (or left) before replying
    // Replies callers received in time (a caller's one write per answered call; only readers that
    // producers may lap read `horizon`, and a service topic is rarely overwrite).
    std::atomic<uint64_t> replies;
    uint8_t pad2[kCacheLine - 32];
};
static_assert(std::is_standard_layout_v<ProducerRegionHead>);
static_assert(offsetof(ProducerRegionHead, tail) == 0);
static_assert(offsetof(ProducerRegionHead, data_futex) == 64);
static_assert(offsetof(ProducerRegionHead, space_waiters) == 68);
static_assert(offsetof(ProducerRegionHead, skip_records) == 128);
static_assert(offsetof(ProducerRegionHead, late_commits) == 152);
static_assert(offsetof(ProducerRegionHead, full_wait_ns) == 160);
static_assert(offsetof(ProducerRegionHead, requests) == 168);
static_assert(offsetof(ProducerRegionHead, late_replies) == 176);
static_assert(offsetof(ProducerRegionHead, timed_out) == 184);
static_assert(offsetof(ProducerRegionHead, horizon) == 192);
static_assert(offsetof(ProducerRegionHead, no_responder) == 200);
static_assert(offsetof(ProducerRegionHead, responder_died) == 208);
static_assert(offsetof(ProducerRegionHead, replies) == 216);
static_assert(sizeof(ProducerRegionHead) == 256);
// Producer slots follow the head, then the index entries.

}  // namespace shmbus::layout
