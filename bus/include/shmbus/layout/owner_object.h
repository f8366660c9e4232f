// Layout of page 0 of a topic's owner objects and group objects (layout 1.9): the shared-memory
// objects that hold what subscribers write, one per principal, so that the kernel lets each
// subscriber write its own subscriptions' state and nothing of another principal's.
//
//   owner object k (`<segment>@o<k>`): consumer slots k × owner_slots .. (k + 1) × owner_slots - 1
//     (consumer_region.h's ConsumerSlot, at kPageSize, by the segment's consumer_slot_stride). Given
//     for the topic's life to one principal: a uid's ephemeral and durable subscriptions, one
//     consumer group (its dispatch slot and member slots), or the topic's archiver. shmbusd renames
//     an object when it gives it (`@o<k>.u1001`, `@o<k>.g2`, `@o<k>.a`): the name records who may
//     write it, where no client can change it.
//   group object g (`<segment>@g<g>`): the GroupBlock (group_region.h) of group g, at kPageSize.
//     Written by the members of that group only.
//
// A principal's descriptor for its own objects is read-write; every other object reaches it
// read-only (publishers and observers get all of them read-only). Written once by shmbusd before
// the segment's `ready`, which therefore covers this header too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmbus/layout/segment_header.h"

namespace shmbus::layout {

inline constexpr uint64_t kOwnerObjectMagic = 0x31'4F'55'42'4D'48'53'00ULL;  // "\0SHMBUO1" little-endian
inline constexpr uint64_t kGroupObjectMagic = 0x31'47'55'42'4D'48'53'00ULL;  // "\0SHMBUG1" little-endian
inline constexpr uint32_t kMaxOwnerObjects = 64;   // so a reply passes every descriptor in one message
inline constexpr uint32_t kMaxGroupObjects = 8;

struct OwnerObjectHeader {
    uint64_t magic;       // kOwnerObjectMagic or kGroupObjectMagic
    uint64_t bus_id;      // the segment's bus_id
    uint64_t created_ns;  // the segment's created_ns: ties this object to one incarnation of the topic
    uint32_t index;       // k of `@o<k>` or g of `@g<g>`
    uint32_t reserved0;
    char topic[kMaxTopicName + 1];  // the segment's topic, NUL terminated
};

static_assert(std::is_standard_layout_v<OwnerObjectHeader>);
static_assert(offsetof(OwnerObjectHeader, magic) == 0);
static_assert(offsetof(OwnerObjectHeader, bus_id) == 8);
static_assert(offsetof(OwnerObjectHeader, created_ns) == 16);
static_assert(offsetof(OwnerObjectHeader, index) == 24);
static_assert(offsetof(OwnerObjectHeader, topic) == 32);
static_assert(sizeof(OwnerObjectHeader) == 96);
static_assert(sizeof(OwnerObjectHeader) <= kPageSize);

}  // namespace shmbus::layout
