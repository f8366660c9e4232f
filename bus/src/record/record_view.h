// Reading a record's body as its flags say (layout/record.h): a retry record's prefix, a named
// producer's stamp, the header block and the payload. Every length is checked against the record:
// a reader never trusts what another process wrote.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "shmbus/layout/record.h"
#include "shmbus/subscriber.h"

namespace shmbus::detail {

// A data record's `length` bytes at `data` without a retry record's RetryInfo prefix (the group's,
// not the application's): its header block, if any, and payload.
inline std::span<const std::byte> record_body(const std::byte* data, uint32_t length, uint16_t flags) noexcept {
    const std::size_t prefix = (flags & layout::kRecordRetry) ? std::min<std::size_t>(length, sizeof(layout::RetryInfo)) : 0;
    return {data + prefix, length - prefix};
}
// A retry record's RetryInfo (zeros where a damaged record is too short to hold it).
inline layout::RetryInfo retry_info(const std::byte* data, uint32_t length) noexcept {
    layout::RetryInfo info{};
    std::memcpy(&info, data, std::min<std::size_t>(sizeof info, length));
    return info;
}

// A named producer's stamp at the start of `body` (layout/record.h, kRecordHasProducer): its
// sequence and name, and the bytes it takes. Zeros where the stamp is damaged (then it takes none).
struct StampView {
    uint64_t sequence = 0;
    std::string_view producer;
    std::size_t bytes = 0;
};
inline StampView read_stamp(std::span<const std::byte> body, uint16_t flags) noexcept {
    if ((flags & layout::kRecordHasProducer) == 0 || body.size() < sizeof(layout::ProducerStamp)) return {};
    layout::ProducerStamp stamp;
    std::memcpy(&stamp, body.data(), sizeof stamp);
    const std::size_t bytes = layout::producer_stamp_size(stamp.name_length);
    if (stamp.name_length == 0 || stamp.name_length > layout::kMaxProducerName || bytes > body.size()) return {};
    return {stamp.sequence,
            {reinterpret_cast<const char*>(body.data() + sizeof stamp), stamp.name_length},
            bytes};
}

// A message's meta block at the start of `body` (layout/record.h, kRecordHasMeta): its key, expiry
// and delivery time, and the bytes it takes. A block whose length does not fit the body takes none
// and says nothing; one whose parts do not add up to its length is stepped over and says nothing.
struct MetaView {
    std::string_view key;
    uint64_t expires_at_ns = 0;
    uint64_t deliver_at_ns = 0;
    std::size_t bytes = 0;
};
inline MetaView read_meta(std::span<const std::byte> body, uint16_t flags) noexcept {
    if ((flags & layout::kRecordHasMeta) == 0 || body.size() < layout::kMetaPrefix) return {};
    uint16_t block = 0, key_length = 0;
    uint32_t fields = 0;
    std::memcpy(&block, body.data(), 2);
    std::memcpy(&key_length, body.data() + 2, 2);
    std::memcpy(&fields, body.data() + 4, 4);
    if (block < layout::kMetaPrefix || block > body.size()) return {};
    MetaView meta;
    meta.bytes = block;
    if ((fields & ~layout::kMetaKnownFields) != 0 || key_length > layout::kMaxKey ||
        layout::meta_block_size(fields, key_length) != block)
        return meta;
    std::size_t at = layout::kMetaPrefix;
    // Inside the block (checked above); the bound again so that the compiler sees it too.
    auto next_time = [&](uint64_t& out) {
        if (at + 8 <= body.size()) std::memcpy(&out, body.data() + at, 8);
        at += 8;
    };
    if (fields & layout::kMetaExpiresAt) next_time(meta.expires_at_ns);
    if (fields & layout::kMetaDeliverAt) next_time(meta.deliver_at_ns);
    meta.key = {reinterpret_cast<const char*>(body.data() + at), key_length};
    return meta;
}

// The meta block of a data record's `length` bytes at `data` (after a retry prefix and a stamp).
inline MetaView record_meta(const std::byte* data, uint32_t length, uint16_t flags) noexcept {
    if ((flags & layout::kRecordHasMeta) == 0) return {};
    const std::span<const std::byte> body = record_body(data, length, flags);
    return read_meta(body.subspan(read_stamp(body, flags).bytes), flags);
}

// Fills m.producer, m.sequence, m.key, m.expires_at_ns, m.deliver_at_ns, m.headers and m.payload from a data record's `length` bytes at
// `data`, as its flags say. The stamp and the header block are checked against the record, never
// trusted (layout/record.h).
inline void split_record(const std::byte* record, uint32_t record_length, uint16_t flags, Message& m) noexcept {
    std::span<const std::byte> body = record_body(record, record_length, flags);
    // Each part the flags leave out is cleared in place, not copied from an empty view: a view
    // returned through the stack and copied with one 16-byte load of what two 8-byte stores had
    // just written misses store forwarding on x86, a stall that was most of a poll's time.
    m.producer = std::string_view();
    m.sequence = 0;
    if (flags & layout::kRecordHasProducer) {
        const StampView stamp = read_stamp(body, flags);
        m.producer = stamp.producer;
        m.sequence = stamp.sequence;
        body = body.subspan(stamp.bytes);
    }
    m.key = std::string_view();
    m.expires_at_ns = 0;
    m.deliver_at_ns = 0;
    if (flags & layout::kRecordHasMeta) {
        const MetaView meta = read_meta(body, flags);
        m.key = meta.key;
        m.expires_at_ns = meta.expires_at_ns;
        m.deliver_at_ns = meta.deliver_at_ns;
        body = body.subspan(meta.bytes);
    }
    const std::byte* data = body.data();
    const auto length = uint32_t(body.size());
    m.headers = Headers();
    m.payload = body;
    if ((flags & layout::kRecordHasHeaders) == 0 || length < layout::kHeaderBlockPrefix) return;
    uint32_t block = 0;
    std::memcpy(&block, data, sizeof block);
    if (block < layout::kHeaderBlockPrefix || block > length) return;
    m.headers = Headers(std::span<const std::byte>(data + layout::kHeaderBlockPrefix, block - layout::kHeaderBlockPrefix));
    m.payload = std::span<const std::byte>(data + block, length - block);
}

// A record's key on a compacted topic, and whether it is a tombstone (an empty payload, after any
// header block). What the archiver's table and a subscriber from the latest per key both apply.
struct RecordKey {
    std::string_view key;  // empty: the record belongs to no key
    bool tombstone = false;
};
inline RecordKey record_key(std::span<const std::byte> body, uint16_t flags) noexcept {
    Message m;
    split_record(body.data(), uint32_t(body.size()), flags, m);
    return {m.key, m.payload.empty()};
}

}  // namespace shmbus::detail
