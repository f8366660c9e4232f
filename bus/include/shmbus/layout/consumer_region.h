// Layout of the consumer region of a topic: bytes written by subscribers (cursors, acks, sleep
// counters) and by the daemon (slot ownership). Producers only read it. Since layout 1.3 it lives
// in the topic's cursor object (cursor_object.h), so a publisher's descriptor for it is read-only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmbus/layout/segment_header.h"

namespace shmbus::layout {

inline constexpr std::size_t kMaxSubscriptionName = 47;
// Processing time, from a message's delivery to the ack that covers it, in power-of-two buckets
// of nanoseconds: bucket i counts times in [2^i, 2^(i+1)) (bucket 0 also holds 0 and 1 ns, the
// last everything from 2^31 ns, about 2.1 s, up).
inline constexpr std::size_t kProcessingBuckets = 32;

enum class SlotState : uint32_t { free = 0, reserved = 1, attached = 2, detached = 3 };
// group (1.4): a consumer group's dispatch word; member: one process of a group (group_region.h).
enum class SlotKind : uint32_t { ephemeral = 1, durable = 2, group = 3, member = 4 };

// One subscription. Line 0 is written by its owner on every batch; lines 1-2 by the daemon when
// the slot changes hands, so the two writers never share a cache line.
struct alignas(kCacheLine) ConsumerSlot {
    // --- line 0: the owner's cursor, read by producers only when they refresh their gate ---
    std::atomic<uint64_t> ack_position;  // log position up to which everything is acked
    std::atomic<uint64_t> ack_id;        // id of the next message not yet acked
    std::atomic<uint64_t> read_id;       // id of the next message to deliver (approximate)
    std::atomic<uint64_t> delivered;     // messages handed to the application
    std::atomic<uint64_t> lost;          // messages skipped because the ring overran them
    // 1.8: an ephemeral reader reading a large message in place, without a copy: the message's
    // record position + 1, which producers on a block or fail topic do not overwrite while it is
    // set (as they would not pass a durable ack); 0: none. Set and cleared around one handler call.
    std::atomic<uint64_t> hold;
    // 1.11: a durable subscription's messages skipped because they had expired (kMetaExpiresAt);
    // zero padding in older segments.
    std::atomic<uint64_t> expired;
    uint8_t pad0[kCacheLine - 56];
    // --- lines 1-2: ownership, written by the daemon ---
    std::atomic<uint32_t> state;         // SlotState; stored last with release
    uint32_t kind;                       // SlotKind
    int32_t pid;                         // attached owner, 0 when detached
    uint32_t reserved0;                  // group: its GroupBlock; member: its group's slot
    uint64_t start_time;                 // owner's process start time, for pid-reuse safety
    uint64_t detached_ns;                // CLOCK_REALTIME when the owner went away
    char name[kMaxSubscriptionName + 1]; // durable name; empty for ephemeral
    uint64_t owner_token;                // 1.1: the owner's request token, so a retried request finds it
    uint64_t owner_session;              // 1.2: the shmbusd connection that attached it; 0: unknown
    uint8_t pad1[3 * kCacheLine - 160];
    // --- lines 3-7 (1.3): processing time, sampled by the owner (one delivering poll in 16);
    // read only where Segment::consumer_slot_has() says it exists. Statistics: relaxed.
    std::atomic<uint64_t> processing_count;       // samples taken
    std::atomic<uint64_t> processing_sum_ns;      // their total
    std::atomic<uint64_t> processing[kProcessingBuckets];
    uint8_t pad2[5 * kCacheLine - 16 - 8 * kProcessingBuckets];
};
inline constexpr uint32_t kLegacyConsumerSlotStride = 3 * kCacheLine;  // 1.0/1.1
static_assert(std::is_standard_layout_v<ConsumerSlot>);
static_assert(offsetof(ConsumerSlot, ack_position) == 0);
static_assert(offsetof(ConsumerSlot, lost) == 32);
static_assert(offsetof(ConsumerSlot, hold) == 40);
static_assert(offsetof(ConsumerSlot, expired) == 48);
static_assert(offsetof(ConsumerSlot, state) == 64);
static_assert(offsetof(ConsumerSlot, name) == 96);
static_assert(offsetof(ConsumerSlot, owner_token) == 144);
static_assert(offsetof(ConsumerSlot, owner_session) == 152);
static_assert(offsetof(ConsumerSlot, processing_count) == 3 * kCacheLine);
static_assert(offsetof(ConsumerSlot, processing) == 3 * kCacheLine + 16);
static_assert(sizeof(ConsumerSlot) == 8 * kCacheLine);

struct ConsumerRegionHead {
    alignas(kCacheLine) std::atomic<uint32_t> data_waiters;  // subscribers asleep on data_futex
    // 1.5: subscribers that may sleep (spin_then_sleep) and so need a publisher's wake; while it is
    // 0 (every subscriber busy-spins) a publish skips the StoreLoad fence and the waiter check. A
    // subscriber killed without leaving keeps its count: the fence stays, which is always safe.
    std::atomic<uint32_t> may_sleep;
    alignas(kCacheLine) std::atomic<uint32_t> space_futex;   // bumped after acks when producers sleep
    std::atomic<uint32_t> space_waiters;                     // 1.2 and older only: producers asleep on a
                                                             // full ring (1.3: in ProducerRegionHead)
};
static_assert(std::is_standard_layout_v<ConsumerRegionHead>);
static_assert(offsetof(ConsumerRegionHead, may_sleep) == 4);
static_assert(offsetof(ConsumerRegionHead, space_futex) == 64);
static_assert(sizeof(ConsumerRegionHead) == 128);
// Consumer slots follow the head.

}  // namespace shmbus::layout
