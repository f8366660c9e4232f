// Layout of the sequence table of a topic segment (1.6): what the topic remembers of each named
// (idempotent) producer, so that a message a producer publishes twice is committed once.
//
// One entry per producer name, in the producer region after the index entries. The name holder
// (one live publisher at a time, shmbusd sees to it) is the only writer of line 0 while it lives;
// shmbusd writes line 1, and line 0 only once the holder is dead. A publish of sequence S:
//   1. pending_position = record position + 1, then pending_sequence = S (release);
//   2. the record's commit word (release): from here on the message is published;
//   3. committed = S (release), then pending_sequence = 0.
// A holder killed at any point leaves either committed >= S, or pending_sequence = S naming a
// record whose commit word says whether step 2 happened: shmbusd settles that (settle_pending in
// bus/src/supervisor/sequences.h) before anyone else may take the name, so the next holder reads the truth.
// Sequences are chosen by the producer and only grow: 2^64 never wraps.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmbus/layout/record.h"
#include "shmbus/layout/segment_header.h"

namespace shmbus::layout {

enum class SequenceState : uint32_t { free = 0, named = 1 };

struct alignas(kCacheLine) SequenceEntry {
    // --- line 0: the name holder's ---
    std::atomic<uint64_t> committed;         // highest sequence committed under this name; 0: none
    std::atomic<uint64_t> pending_sequence;  // the sequence being committed; 0: none
    std::atomic<uint64_t> pending_position;  // position + 1 of its record
    uint8_t pad0[kCacheLine - 24];
    // --- line 1: shmbusd's ---
    std::atomic<uint32_t> state;             // SequenceState; the name is published by its release store
    uint32_t holder_slot;                    // producer slot + 1 of the publisher holding the name; 0: none
    uint64_t released_ns;                    // CLOCK_REALTIME when last let go: the oldest is reused first
    char name[kMaxProducerName + 1];         // NUL terminated
};
static_assert(std::is_standard_layout_v<SequenceEntry>);
static_assert(offsetof(SequenceEntry, committed) == 0);
static_assert(offsetof(SequenceEntry, pending_sequence) == 8);
static_assert(offsetof(SequenceEntry, pending_position) == 16);
static_assert(offsetof(SequenceEntry, state) == kCacheLine);
static_assert(offsetof(SequenceEntry, holder_slot) == kCacheLine + 4);
static_assert(offsetof(SequenceEntry, released_ns) == kCacheLine + 8);
static_assert(offsetof(SequenceEntry, name) == kCacheLine + 16);
static_assert(sizeof(SequenceEntry) == 2 * kCacheLine);

// Names a topic remembers: four per producer slot, so that producers that come and go under
// new names push an old name out only after many others.
inline constexpr uint32_t kSequenceEntriesPerProducer = 4;

}  // namespace shmbus::layout
