// Layout of the recovery counters: one cache line in page 0 of a topic segment, after the
// SegmentHeader. Written only by shmbusd, each time it repairs what a dead or stalled process
// left behind; read by `topic info`. Added in layout 1.1: a 1.0 segment holds zeros here.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmbus/layout/segment_header.h"

namespace shmbus::layout {

inline constexpr std::size_t kRecoveryCountersOffset = 512;  // from the mapping base

// Every field is a plain statistic: the daemon adds with relaxed order, readers load relaxed.
struct alignas(kCacheLine) RecoveryCounters {
    std::atomic<uint64_t> dead_claims_sealed;        // claims of dead producers turned into skip records
    std::atomic<uint64_t> stalled_claims_unblocked;  // claims of live producers taken back (unblock-timeout)
    std::atomic<uint64_t> producers_released;        // producer slots of dead owners freed
    std::atomic<uint64_t> subscribers_freed;         // ephemeral slots of dead owners freed
    std::atomic<uint64_t> subscribers_detached;      // durable cursors whose owner died, kept
    std::atomic<uint64_t> cursors_expired;           // detached durable cursors released (expire-detached)
    std::atomic<uint64_t> owners_dead_at_restart;    // slots whose owner died while no shmbusd ran
    std::atomic<uint64_t> reserved;
};

static_assert(std::is_standard_layout_v<RecoveryCounters>);
static_assert(sizeof(RecoveryCounters) == kCacheLine);
static_assert(offsetof(RecoveryCounters, dead_claims_sealed) == 0);
static_assert(offsetof(RecoveryCounters, stalled_claims_unblocked) == 8);
static_assert(offsetof(RecoveryCounters, producers_released) == 16);
static_assert(offsetof(RecoveryCounters, subscribers_freed) == 24);
static_assert(offsetof(RecoveryCounters, subscribers_detached) == 32);
static_assert(offsetof(RecoveryCounters, cursors_expired) == 40);
static_assert(offsetof(RecoveryCounters, owners_dead_at_restart) == 48);
static_assert(kRecoveryCountersOffset >= sizeof(SegmentHeader));
static_assert(kRecoveryCountersOffset % kCacheLine == 0);
static_assert(kRecoveryCountersOffset + sizeof(RecoveryCounters) <= kPageSize);

}  // namespace shmbus::layout
