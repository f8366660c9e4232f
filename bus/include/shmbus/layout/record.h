// Layout of one record in the ring. A record is committed by storing `commit` = ~position last,
// with release ordering; a reader accepts it only if it loads exactly ~position (acquire), so a
// record left over from an earlier lap (its commit encodes a position one or more laps lower)
// and zeroed memory (~0 only matches position 2^64-1, which is never reached) are never taken
// for a new record.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace shmbus::layout {

enum class RecordType : uint16_t {
    data = 1,     // a message
    padding = 2,  // fills the ring's end before a wrap; carries no message
    skip = 3,     // a claimed message that was abandoned (loan dropped or producer died)
};

inline constexpr std::size_t kRecordAlignment = 32;

// A data record's flags (1.5).
//
// kRecordHasHeaders: the record's `length` bytes start with a header block, and the payload is
// what follows it. The block, little-endian and unaligned:
//     uint32 block_bytes            the whole block, this word included (>= 4, <= length)
//     then entries until block_bytes: uint16 key_len, uint16 value_len, key bytes, value bytes
// Readers never trust it: a block_bytes outside [4, length] makes the record headerless, and
// an entry that would run past the block ends the headers (shmbus/headers.h parses it).
//
// kRecordRetry: a consumer group's message moved to the tail of the ring while it waits out a
// backoff, so that a message waiting for its retry never holds publishers back. Only that group
// reads it (its consumer slot is in the flags' top 12 bits); every other reader steps over it as
// over a skip record. Its data starts with a RetryInfo, then the original record's data (header
// block, if kRecordHasHeaders, and payload); it may exceed max_message by sizeof(RetryInfo).
//
// kRecordHasProducer (1.6): a named (idempotent) producer's message. Its data starts with a
// ProducerStamp (after a retry record's RetryInfo, before any header block): the sequence number
// the producer gave it and the producer's name, padded to 8 bytes. The stamp may take the record
// past max_message by at most kMaxProducerStamp. Readers check it like the header block: a stamp
// that does not fit the record, or names a producer longer than kMaxProducerName, is ignored.
//
// kRecordHasMeta (1.11): the message's own metadata: a key, an expiry time, a delivery time. A
// block after the producer stamp (if any) and before the header block (if any), little-endian and
// unaligned:
//     uint16 block_bytes   the whole block, this word included
//     uint16 key_length    bytes of the key that ends the block; 0: no key
//     uint32 fields        MetaField bits: the uint64 values present, in bit order, after this word
//     then one uint64 per field present (kMetaExpiresAt, kMetaDeliverAt: CLOCK_REALTIME ns)
//     then the key
// The block counts against max_message, as a header block does. Readers never trust it: a
// block_bytes outside [kMetaPrefix, body] makes the record one without metadata; a block whose
// parts do not add up to block_bytes, or a key above kMaxKey, is stepped over and read as empty.
// Only one flag bit was left below the group slot (kRetrySlotShift), so every later per-message
// field goes into this block, as a new MetaField bit, never a new flag.
enum RecordFlags : uint16_t { kRecordHasHeaders = 1, kRecordRetry = 2, kRecordHasProducer = 4, kRecordHasMeta = 8 };
enum MetaField : uint32_t { kMetaExpiresAt = 1, kMetaDeliverAt = 2 };
inline constexpr uint32_t kMetaKnownFields = kMetaExpiresAt | kMetaDeliverAt;
inline constexpr std::size_t kMetaPrefix = 8;
inline constexpr std::size_t kMaxKey = 256;
// Bytes a meta block with these fields and a `key_length`-byte key takes.
constexpr std::size_t meta_block_size(uint32_t fields, std::size_t key_length) noexcept {
    return kMetaPrefix + 8 * std::size_t(__builtin_popcount(fields & kMetaKnownFields)) + key_length;
}
static_assert(meta_block_size(kMetaKnownFields, kMaxKey) <= UINT16_MAX);
inline constexpr std::size_t kHeaderBlockPrefix = 4;
inline constexpr std::size_t kHeaderEntryPrefix = 4;
inline constexpr unsigned kRetrySlotShift = 4;  // 12 bits: consumer slots number at most 4096

struct RetryInfo {
    uint64_t id;                 // the message's id when first published: what members are shown
    uint64_t due_ns;             // CLOCK_MONOTONIC: when it may be delivered again
    uint64_t first_delivery_ns;  // CLOCK_REALTIME of its first delivery
    uint32_t attempt;            // deliveries so far
    uint32_t reserved;
};
static_assert(std::is_standard_layout_v<RetryInfo>);
static_assert(offsetof(RetryInfo, due_ns) == 8);
static_assert(offsetof(RetryInfo, attempt) == 24);
static_assert(sizeof(RetryInfo) == 32);

inline constexpr std::size_t kMaxProducerName = 47;

struct ProducerStamp {
    uint64_t sequence;     // the producer's number for this message: > 0, increasing per producer
    uint16_t name_length;  // bytes of the name that follows the stamp
    uint16_t reserved0;
    uint32_t reserved1;
};
static_assert(std::is_standard_layout_v<ProducerStamp>);
static_assert(offsetof(ProducerStamp, name_length) == 8);
static_assert(sizeof(ProducerStamp) == 16);

// Bytes a stamp with a `name_length`-byte name takes in the record.
constexpr std::size_t producer_stamp_size(std::size_t name_length) noexcept {
    return sizeof(ProducerStamp) + ((name_length + 7) & ~std::size_t{7});
}
inline constexpr std::size_t kMaxProducerStamp = producer_stamp_size(kMaxProducerName);
static_assert(kMaxProducerStamp == 64);

// The bytes a data record may exceed max_message by, for its flags.
constexpr std::size_t record_allowance(uint16_t flags) noexcept {
    return ((flags & kRecordRetry) ? sizeof(RetryInfo) : 0) + ((flags & kRecordHasProducer) ? kMaxProducerStamp : 0);
}

constexpr uint16_t retry_flags(uint32_t group_slot, uint16_t original_flags) noexcept {
    return uint16_t(kRecordRetry | (original_flags & (kRecordHasHeaders | kRecordHasProducer | kRecordHasMeta)) |
                    (group_slot << kRetrySlotShift));
}
constexpr uint32_t retry_group_slot(uint16_t flags) noexcept { return flags >> kRetrySlotShift; }

struct RecordHeader {
    std::atomic<uint64_t> commit;  // ~position of this record; stored last, release
    uint32_t length;               // payload bytes (for padding: bytes after the header)
    uint16_t type;                 // RecordType
    uint16_t flags;                // RecordFlags (1.5); 0 in older segments
    uint64_t id;                   // message id (padding: id of the next message)
    uint64_t timestamp_ns;         // CLOCK_REALTIME at claim
};
static_assert(std::is_standard_layout_v<RecordHeader>);
static_assert(offsetof(RecordHeader, commit) == 0);
static_assert(offsetof(RecordHeader, length) == 8);
static_assert(offsetof(RecordHeader, type) == 12);
static_assert(offsetof(RecordHeader, id) == 16);
static_assert(offsetof(RecordHeader, timestamp_ns) == 24);
static_assert(sizeof(RecordHeader) == kRecordAlignment);

constexpr uint64_t commit_word(uint64_t position) noexcept { return ~position; }

// Header fields other than `commit` are published by the commit store, so relaxed accesses are
// enough; they are atomic (not plain) because a reader that producers may lap reads them while
// they are rewritten, and validates afterwards (docs/architecture.md, "Subscriptions").
template <class T>
inline void put_field(T& field, T value) noexcept {
    std::atomic_ref<T>(field).store(value, std::memory_order_relaxed);
}
template <class T>
[[nodiscard]] inline T get_field(T& field) noexcept {
    return std::atomic_ref<T>(field).load(std::memory_order_relaxed);
}

inline void write_header(RecordHeader& h, uint32_t length, RecordType type, uint64_t id, uint64_t timestamp_ns) noexcept {
    put_field(h.length, length);
    put_field(h.type, uint16_t(type));
    put_field(h.flags, uint16_t{0});
    put_field(h.id, id);
    put_field(h.timestamp_ns, timestamp_ns);
}
constexpr uint64_t record_size(uint64_t payload) noexcept {
    return (sizeof(RecordHeader) + payload + kRecordAlignment - 1) & ~uint64_t{kRecordAlignment - 1};
}

}  // namespace shmbus::layout
