// Layout of an archive file: the append-only files in which an archived topic's messages are kept
// on disk (docs/archive.md). A topic's archive is a directory of files named by the id of their
// first record, `<first id, 20 digits>.log`, each with a sparse index beside it (`.idx`).
//
//   log: ArchiveFileHeader, then records back to back: ArchiveRecordHeader + `length` body bytes
//        (the ring record's body as it was: producer stamp, header block, payload; flags say which).
//   idx: ArchiveIndexEntry, one per kArchiveIndexEvery bytes of log, in log order.
//
// A record is whole when its header and body lie inside the file and its CRC32C matches; nothing
// else marks it (there is no commit word on disk: the checksum is the commit). Recovery after a
// crash cuts the last file back to the end of its last whole record. Ids in a file strictly
// increase (skipped claims leave gaps), so files sort by name and a file's range is
// [first id, next file's first id). Integers are little-endian, as the ring's are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmbus/layout/segment_header.h"

namespace shmbus::layout {

inline constexpr uint64_t kArchiveMagic = 0x31'43'52'41'42'4D'48'53ULL;  // "SHMBARC1" little-endian
inline constexpr uint16_t kArchiveVersionMajor = 1;  // a reader refuses any other major version
// 1.1: the file header records the longest record body the topic can produce (max_record), so a
// reader tells a record cut short by a crash (plausible length, running past the end of the file)
// from damage (any other length) without reading or allocating what a damaged length claims.
inline constexpr uint16_t kArchiveVersionMinor = 1;
// A record longer than this is damage, not data: no ring record comes near it (kMaxCapacity / 8).
inline constexpr uint32_t kMaxArchiveRecord = 1u << 30;
// One index entry per this many bytes of log: a lookup reads at most this much beyond the entry.
inline constexpr uint64_t kArchiveIndexEvery = 64 * 1024;

struct ArchiveFileHeader {
    uint64_t magic;          // kArchiveMagic
    uint16_t version_major;  // kArchiveVersionMajor
    uint16_t version_minor;
    uint32_t header_size;    // sizeof(ArchiveFileHeader): records start here
    uint64_t first_id;       // every record's id is at or above it (the file's name says the same)
    uint64_t created_ns;     // CLOCK_REALTIME when the file was started
    char topic[kMaxTopicName + 1];  // NUL terminated: a file moved into another topic's archive is refused
    uint32_t max_record;     // 1.1: the longest body a record of this topic has; 0 (1.0): kMaxArchiveRecord
    uint8_t reserved[24];
    uint32_t crc;            // CRC32C of the bytes before it
};

struct ArchiveRecordHeader {
    uint32_t length;         // body bytes that follow this header
    uint32_t crc;            // CRC32C of `length`, the fields after `crc`, and the body
    uint64_t id;             // the message id
    uint64_t timestamp_ns;   // the publisher's CLOCK_REALTIME at claim
    uint16_t flags;          // RecordFlags of the ring record (headers, producer stamp)
    uint16_t reserved0;
    uint32_t reserved1;
};

// A position in the log, with the highest timestamp of any record before it: publishers'
// clocks are not ordered across processes, so a time lookup needs a bound that only grows.
struct ArchiveIndexEntry {
    uint64_t id;             // the id of the record at `offset`
    uint64_t offset;         // a record boundary in the log
    uint64_t max_timestamp_before_ns;  // the highest timestamp of the records before `offset`
};

static_assert(std::is_standard_layout_v<ArchiveFileHeader> && std::is_trivially_copyable_v<ArchiveFileHeader>);
static_assert(offsetof(ArchiveFileHeader, magic) == 0);
static_assert(offsetof(ArchiveFileHeader, version_major) == 8);
static_assert(offsetof(ArchiveFileHeader, version_minor) == 10);
static_assert(offsetof(ArchiveFileHeader, header_size) == 12);
static_assert(offsetof(ArchiveFileHeader, first_id) == 16);
static_assert(offsetof(ArchiveFileHeader, created_ns) == 24);
static_assert(offsetof(ArchiveFileHeader, topic) == 32);
static_assert(offsetof(ArchiveFileHeader, max_record) == 96);
static_assert(offsetof(ArchiveFileHeader, reserved) == 100);
static_assert(offsetof(ArchiveFileHeader, crc) == 124);
static_assert(sizeof(ArchiveFileHeader) == 128);

static_assert(std::is_standard_layout_v<ArchiveRecordHeader> && std::is_trivially_copyable_v<ArchiveRecordHeader>);
static_assert(offsetof(ArchiveRecordHeader, length) == 0);
static_assert(offsetof(ArchiveRecordHeader, crc) == 4);
static_assert(offsetof(ArchiveRecordHeader, id) == 8);
static_assert(offsetof(ArchiveRecordHeader, timestamp_ns) == 16);
static_assert(offsetof(ArchiveRecordHeader, flags) == 24);
static_assert(sizeof(ArchiveRecordHeader) == 32);

static_assert(std::is_standard_layout_v<ArchiveIndexEntry> && std::is_trivially_copyable_v<ArchiveIndexEntry>);
static_assert(offsetof(ArchiveIndexEntry, id) == 0);
static_assert(offsetof(ArchiveIndexEntry, offset) == 8);
static_assert(offsetof(ArchiveIndexEntry, max_timestamp_before_ns) == 16);
static_assert(sizeof(ArchiveIndexEntry) == 24);

}  // namespace shmbus::layout
