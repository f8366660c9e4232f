// Layout of page 0 of a topic's cursor object (layout 1.3): the second shared-memory object of a
// topic, holding its consumer region (consumer_region.h) at the segment header's consumer_offset.
// It exists so that the bytes subscribers write and the bytes publishers write can be handed out
// with different access: a subscribe-only client maps the segment read-only, a publish-only
// client maps this object read-only. Written once by shmbusd before the segment's `ready`, which
// therefore also covers it: a reader that saw the segment ready sees this header complete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmbus/layout/segment_header.h"

namespace shmbus::layout {

inline constexpr uint64_t kCursorObjectMagic = 0x31'43'55'42'4D'48'53'00ULL;  // "\0SHMBUC1" little-endian

struct CursorObjectHeader {
    uint64_t magic;       // kCursorObjectMagic
    uint64_t bus_id;      // the segment's bus_id
    uint64_t created_ns;  // the segment's created_ns: ties this object to one incarnation of the topic
    char topic[kMaxTopicName + 1];  // the segment's topic, NUL terminated
};

static_assert(std::is_standard_layout_v<CursorObjectHeader>);
static_assert(offsetof(CursorObjectHeader, magic) == 0);
static_assert(offsetof(CursorObjectHeader, bus_id) == 8);
static_assert(offsetof(CursorObjectHeader, created_ns) == 16);
static_assert(offsetof(CursorObjectHeader, topic) == 24);
static_assert(sizeof(CursorObjectHeader) == 88);
static_assert(sizeof(CursorObjectHeader) <= kPageSize);

}  // namespace shmbus::layout
