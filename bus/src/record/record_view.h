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

// Fills m.producer, m.sequence, m.headers and m.payload from a data record's `length` bytes at
// `data`, as its flags say. The stamp and the header block are checked against the record, never
// trusted (layout/record.h).
inline void split_record(const std::byte* record, uint32_t record_length, uint16_t flags, Message& m) noexcept {
    std::span<const std::byte> body = record_body(record, record_length, flags);
    const StampView stamp = read_stamp(body, flags);
    m.producer = stamp.producer;
    m.sequence = stamp.sequence;
    body = body.subspan(stamp.bytes);
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

}  // namespace shmbus::detail
