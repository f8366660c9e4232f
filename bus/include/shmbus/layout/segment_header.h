// Layout of page 0 of a topic segment: the versioned, read-only description of the topic.
// Written once by shmbusd at creation; `ready` is stored last (release) so a reader that sees
// ready == kReadyMagic also sees every other field.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace shmbus::layout {

inline constexpr uint64_t kSegmentMagic = 0x31'53'55'42'4D'48'53'00ULL;  // "\0SHMBUS1" little-endian
inline constexpr uint16_t kVersionMajor = 1;  // a reader refuses any other major version
// Minor versions only add fields in reserved space, which older segments hold as zeros; every
// field added must read "off" or "unknown" as zero. 1.1 added the recovery fields below; 1.2 the
// slot strides; 1.3 the cursor object and the deleted flag.
//
// How a slot grows (1.2): readers step through the producer and consumer slot tables by the
// strides in the header, never by sizeof. A minor version may make a slot longer by adding fields
// at its end and raising its stride; a reader touches a field only if the field lies inside the
// segment's stride (Segment::producer_slot_has / consumer_slot_has), so it reads an older
// segment, whose slots are shorter, without ever reaching into the next slot. A stride of 0 is a
// 1.0/1.1 segment: the slot sizes of that version (kLegacy*SlotStride).
//
// Where the consumer region lives (1.3): in a second shared-memory object, the topic's cursor
// object (layout/cursor_object.h), whose size `cursor_object_size` gives; consumer_offset and
// consumer_size then describe the region inside that object. Publishers write only this segment
// and subscribers only the cursor object, so shmbusd hands each role the other object as a
// read-only descriptor and the kernel enforces the split. A size of 0 (1.2 and older, and segments
// made without a cursor object) keeps the consumer region inside this segment.
//
// Consumer groups (1.4): `max_groups` GroupBlocks (layout/group_region.h) at `group_offset` in the
// cursor object. 0 groups (1.3 and older): the topic has no group region and refuses groups.
//
// 1.5: records may carry headers (RecordHeader::flags, kRecordHasHeaders); group entries grew to a
// cache line and group settings gained a rate limit. A 1.4 segment's group region is laid out
// otherwise, so readers treat a 1.4 segment as one without groups.
//
// 1.6: named producers. `sequence_entries` SequenceEntries (layout/sequence_table.h) at
// `sequence_offset` in the segment, inside the producer region; records may carry a producer
// stamp (kRecordHasProducer). 0 entries (1.5 and older): the topic refuses named producers.
//
// 1.7: archived topics. `archived` (1 once shmbusd keeps the topic on disk; never cleared) and
// `archiver_slot` (the consumer slot + 1 of the archiver's durable cursor; 0: none yet), both
// written by shmbusd after creation with release stores; on_full may be `archive` (publishers are
// held back by the archiver's cursor and by groups, never by other durable subscriptions).
// `first_id`: the id the log starts at (the tail's next_id at creation).
//
// 1.8: single-producer topics. `single_producer` = 1: shmbusd registers at most one publisher at
// a time, and that publisher claims by storing the tail (one 16-byte store) instead of the
// compare-and-swap; readers read the tail as before. Fixed at creation. An ephemeral reader's slot
// may hold the record it reads in place (ConsumerSlot::hold, in line 0's padding, zero before).
//
// 1.9: owner objects (layout/owner_object.h). `owner_objects` objects of `owner_slots` consumer
// slots each (`owner_object_size` bytes) hold the consumer slots, and `max_groups` group objects
// (`group_object_size` bytes) the group blocks; the cursor object keeps only the consumer region's
// head (the wake-up words every subscriber writes). 0 owner objects: the 1.8 arrangement.
//
// 1.10: untimed topics. `untimed` = 1 (in what was reserved after `single_producer`, zero in older
// segments): publishers write 0 for every record's timestamp_ns instead of reading the clock.
// Fixed at creation; such a topic is never archived (its archive could not be searched by time).
//
// 1.11: per-message metadata (layout/record.h, kRecordHasMeta: a key, an expiry time, a delivery
// time) and `default_ttl_ns` (in what was reserved, zero in older segments): the time to live a
// publisher gives a message that names none; 0: messages do not expire unless they say so.
// Fixed at creation. Consumer groups may be ordered by key (GroupBlock::order, in padding that
// was zero before).
inline constexpr uint16_t kVersionMinor = 11;
inline constexpr uint16_t kMetaSinceMinor = 11;
inline constexpr uint16_t kGroupsSinceMinor = 5;
inline constexpr uint16_t kSequencesSinceMinor = 6;
inline constexpr uint16_t kArchiveSinceMinor = 7;
inline constexpr uint16_t kSingleProducerSinceMinor = 8;
inline constexpr uint16_t kUntimedSinceMinor = 10;
inline constexpr uint16_t kInPlaceReadsSinceMinor = 8;
inline constexpr uint16_t kOwnerObjectsSinceMinor = 9;
inline constexpr uint32_t kReadyMagic = 0x52454459;  // "READY"
inline constexpr std::size_t kPageSize = 4096;
inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::size_t kMaxTopicName = 63;

static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory atomics must be lock free");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "shared-memory atomics must be lock free");

enum class OnFull : uint32_t { block = 0, fail = 1, overwrite = 2, archive = 3 };

struct SegmentHeader {
    uint64_t magic;              // kSegmentMagic
    uint16_t version_major;      // kVersionMajor
    uint16_t version_minor;      // kVersionMinor
    uint32_t header_size;        // sizeof(SegmentHeader)
    uint64_t segment_size;       // bytes of the whole mapping
    uint64_t bus_id;             // random id of the bus directory that created it
    uint64_t created_ns;         // CLOCK_REALTIME at creation
    // Regions, as offsets from the mapping base (never pointers), each page aligned.
    uint64_t producer_offset;    // ProducerRegion: written by publishers only
    uint64_t producer_size;
    uint64_t consumer_offset;    // ConsumerRegion: written by subscribers (and the daemon) only
    uint64_t consumer_size;
    uint64_t ring_offset;        // the record ring: written by publishers only
    uint64_t ring_capacity;      // power of two, >= kMinCapacity
    uint32_t max_message;        // largest payload accepted
    uint32_t on_full;            // OnFull
    uint32_t max_producers;      // entries in ProducerRegion::producers
    uint32_t max_consumers;      // entries in ConsumerRegion::slots
    uint32_t index_entries;      // entries in ProducerRegion::index
    uint32_t reserved0;
    char topic[kMaxTopicName + 1];  // NUL terminated
    // --- 1.1 ---
    uint64_t unblock_timeout_ns; // a live producer's claim open this long is taken back; 0: never
    uint64_t expire_detached_ns; // a detached durable cursor is released after this long; 0: never
    char bus_dir[128];           // directory of the bus that created it, for `gc`; NUL terminated
    // --- 1.2 ---
    uint32_t producer_slot_stride;  // bytes from one ProducerSlot to the next; 0: 1.1 (64)
    uint32_t consumer_slot_stride;  // bytes from one ConsumerSlot to the next; 0: 1.1 (192)
    // --- 1.3 ---
    uint64_t cursor_object_size; // bytes of the cursor object holding the consumer region; 0: none
    std::atomic<uint32_t> deleted;  // 1 once shmbusd deleted the topic under live clients; stored with release
    // --- 1.4 ---
    uint32_t max_groups;         // GroupBlocks in the cursor object; 0: none
    uint64_t group_offset;       // where they start in the cursor object (page aligned)
    // --- 1.6 ---
    uint32_t sequence_entries;   // SequenceEntries of named producers; 0: none
    uint32_t reserved2;
    uint64_t sequence_offset;    // where they start in the segment (inside the producer region)
    // --- 1.7 ---
    std::atomic<uint32_t> archived;       // 1: the topic is archived on disk; stored with release, never cleared
    std::atomic<uint32_t> archiver_slot;  // the archiver's consumer slot + 1; 0: none; stored with release
    uint64_t first_id;           // the id of the record at position 0: an archived topic made again after a
                                 // reboot continues the ids its archive holds; 0 otherwise
    // --- 1.8 ---
    uint32_t single_producer;    // 1: one publisher at a time, claiming by plain stores; 0: any number
    // --- 1.10 ---
    uint32_t untimed;            // 1: publishers leave records' timestamp_ns 0; 0: every record is timed
    // --- 1.9 ---
    uint32_t owner_objects;      // objects holding the consumer slots (owner_object.h); 0: none (1.8)
    uint32_t owner_slots;        // consumer slots in each, a power of two
    uint64_t owner_object_size;  // bytes of each owner object
    uint64_t group_object_size;  // bytes of each of the max_groups group objects
    // --- 1.11 ---
    uint64_t default_ttl_ns;     // a message naming no TTL expires this long after publish; 0: never
    uint8_t reserved[8];         // room for minor-version additions
    std::atomic<uint32_t> ready; // kReadyMagic once every field above is written; stored last
    uint32_t reserved1;
};

static_assert(std::is_standard_layout_v<SegmentHeader>);
static_assert(offsetof(SegmentHeader, magic) == 0);
static_assert(offsetof(SegmentHeader, version_major) == 8);
static_assert(offsetof(SegmentHeader, version_minor) == 10);
static_assert(offsetof(SegmentHeader, header_size) == 12);
static_assert(offsetof(SegmentHeader, segment_size) == 16);
static_assert(offsetof(SegmentHeader, producer_offset) == 40);
static_assert(offsetof(SegmentHeader, consumer_offset) == 56);
static_assert(offsetof(SegmentHeader, ring_offset) == 72);
static_assert(offsetof(SegmentHeader, ring_capacity) == 80);
static_assert(offsetof(SegmentHeader, max_message) == 88);
static_assert(offsetof(SegmentHeader, topic) == 112);
static_assert(offsetof(SegmentHeader, unblock_timeout_ns) == 176);
static_assert(offsetof(SegmentHeader, expire_detached_ns) == 184);
static_assert(offsetof(SegmentHeader, bus_dir) == 192);
static_assert(offsetof(SegmentHeader, producer_slot_stride) == 320);
static_assert(offsetof(SegmentHeader, consumer_slot_stride) == 324);
static_assert(offsetof(SegmentHeader, cursor_object_size) == 328);
static_assert(offsetof(SegmentHeader, deleted) == 336);
static_assert(offsetof(SegmentHeader, max_groups) == 340);
static_assert(offsetof(SegmentHeader, group_offset) == 344);
static_assert(offsetof(SegmentHeader, sequence_entries) == 352);
static_assert(offsetof(SegmentHeader, sequence_offset) == 360);
static_assert(offsetof(SegmentHeader, archived) == 368);
static_assert(offsetof(SegmentHeader, archiver_slot) == 372);
static_assert(offsetof(SegmentHeader, first_id) == 376);
static_assert(offsetof(SegmentHeader, single_producer) == 384);
static_assert(offsetof(SegmentHeader, untimed) == 388);
static_assert(offsetof(SegmentHeader, owner_objects) == 392);
static_assert(offsetof(SegmentHeader, owner_slots) == 396);
static_assert(offsetof(SegmentHeader, owner_object_size) == 400);
static_assert(offsetof(SegmentHeader, group_object_size) == 408);
static_assert(offsetof(SegmentHeader, default_ttl_ns) == 416);
static_assert(offsetof(SegmentHeader, reserved) == 424);
static_assert(offsetof(SegmentHeader, ready) == 432);
static_assert(sizeof(SegmentHeader) == 440);
static_assert(sizeof(SegmentHeader) <= kPageSize);

}  // namespace shmbus::layout
