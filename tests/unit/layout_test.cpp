// Segment layout: geometry, formatting and the refusal of foreign, corrupt or newer segments.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "local_topic.h"
#include "core/segment.h"
#include "shmbus/layout/cursor_object.h"

namespace shmbus::detail {
namespace {

using namespace layout;

TEST(Layout, RegionsArePageAlignedAndDisjoint) {
    for (uint64_t cap : {4096ull, 65536ull, 1ull << 20, 1ull << 24}) {
        TopicConfig c;
        c.capacity = cap;
        const Geometry g = compute_geometry(c, /*cursor_object=*/false);
        EXPECT_EQ(g.producer_offset % kPageSize, 0u);
        EXPECT_EQ(g.consumer_offset % kPageSize, 0u);
        EXPECT_EQ(g.ring_offset % kPageSize, 0u);
        EXPECT_GE(g.producer_offset, sizeof(SegmentHeader));
        EXPECT_GE(g.consumer_offset, g.producer_offset + g.producer_size);
        EXPECT_GE(g.ring_offset, g.consumer_offset + g.consumer_size);
        EXPECT_EQ(g.total, g.ring_offset + cap);
        EXPECT_EQ(g.cursor_object_size, 0u);
    }
}

// With a cursor object alone (1.3 to 1.8): the segment holds header, producer region and ring;
// the cursor object a header page, the consumer region and then the group region (1.4).
TEST(Layout, TheCursorObjectHoldsTheConsumerAndGroupRegions) {
    for (uint64_t cap : {4096ull, 1ull << 20}) {
        TopicConfig c;
        c.capacity = cap;
        const Geometry g = compute_geometry(c, true, false);
        EXPECT_EQ(g.ring_offset, g.producer_offset + g.producer_size);
        EXPECT_EQ(g.total, g.ring_offset + cap);
        EXPECT_EQ(g.consumer_offset, kPageSize);
        EXPECT_GE(kPageSize, sizeof(CursorObjectHeader));
        EXPECT_EQ(g.group_offset, g.consumer_offset + g.consumer_size);
        EXPECT_EQ(g.group_offset % kPageSize, 0u);
        EXPECT_EQ(g.max_groups, layout::kDefaultMaxGroups);
        EXPECT_EQ(g.owner_objects, 0u);
        EXPECT_GE(g.cursor_object_size, g.group_offset + sizeof(layout::GroupBlock) * g.max_groups);
        EXPECT_LT(g.cursor_object_size, g.group_offset + sizeof(layout::GroupBlock) * g.max_groups + kPageSize);
    }
}

// With owner objects (1.9, what shmbusd makes): the cursor object keeps the consumer region's
// head; every slot lies in an owner object of owner_slots slots (a power of two, at most
// kMaxOwnerObjects objects), each group block in a group object; both after a header page.
TEST(Layout, OwnerObjectsHoldTheSlotsAndGroupObjectsTheBlocks) {
    for (uint32_t consumers : {1u, 8u, 64u, 65u, 512u, 513u, 4096u}) {
        TopicConfig c;
        c.max_consumers = consumers;
        const Geometry g = compute_geometry(c);
        EXPECT_EQ(g.cursor_object_size, 2 * kPageSize) << consumers;
        EXPECT_EQ(g.consumer_size, kPageSize);
        EXPECT_EQ(g.group_offset, 0u);
        EXPECT_EQ(g.owner_slots & (g.owner_slots - 1), 0u);
        EXPECT_GE(g.owner_slots, 8u);
        EXPECT_LE(g.owner_objects, layout::kMaxOwnerObjects);
        EXPECT_GE(uint64_t(g.owner_objects) * g.owner_slots, consumers);
        EXPECT_LT(uint64_t(g.owner_objects - 1) * g.owner_slots, consumers);
        EXPECT_EQ(g.owner_object_size, kPageSize + ((uint64_t(g.owner_slots) * sizeof(ConsumerSlot) + kPageSize - 1) & ~(kPageSize - 1)));
        EXPECT_GE(g.group_object_size, kPageSize + sizeof(layout::GroupBlock));
        EXPECT_LE(layout::kDefaultMaxGroups, layout::kMaxGroupObjects);
    }
    EXPECT_GE(kPageSize, sizeof(layout::OwnerObjectHeader));
}

TEST(Layout, CapacityRoundsUpToAPowerOfTwo) {
    EXPECT_EQ(round_capacity(1), 4096u);
    EXPECT_EQ(round_capacity(4097), 8192u);
    EXPECT_EQ(round_capacity(1 << 20), 1u << 20);
}

class Corrupted : public ::testing::Test {
protected:
    void SetUp() override {
        fd = memfd_create("t", MFD_CLOEXEC);
        TopicConfig c;
        c.capacity = 65536;
        auto seg = Segment::format(fd, "t", with_defaults(c), 1);
        ASSERT_TRUE(seg.has_value());
        size = seg->size();
        base = static_cast<std::byte*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
        header = reinterpret_cast<SegmentHeader*>(base);
    }
    void TearDown() override {
        munmap(base, size);
        close(fd);
    }
    Errc attach_error() {
        auto r = Segment::attach(fd);
        return r ? Errc::ok : r.error().code;
    }
    int fd = -1;
    uint64_t size = 0;
    std::byte* base = nullptr;
    SegmentHeader* header = nullptr;
};

TEST_F(Corrupted, AValidSegmentAttaches) { EXPECT_EQ(attach_error(), Errc::ok); }

TEST_F(Corrupted, WrongMagicIsRefused) {
    header->magic = 0x1234;
    auto r = Segment::attach(fd);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::bad_magic);
    EXPECT_NE(r.error().message.find("not a shmbus segment"), std::string::npos);
}

TEST_F(Corrupted, AnotherMajorVersionIsRefusedWithBothVersions) {
    header->version_major = kVersionMajor + 1;
    auto r = Segment::attach(fd);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::bad_version);
    EXPECT_NE(r.error().message.find(std::to_string(kVersionMajor + 1) + "."), std::string::npos);
}

TEST_F(Corrupted, ANewerMinorVersionIsAccepted) {
    header->version_minor = kVersionMinor + 1;
    EXPECT_EQ(attach_error(), Errc::ok);
}

// The 1.10 and 1.8 flags are 0 or 1; anything else is damage, not a setting. Below 1.10 the
// untimed word was reserved: whatever it holds there is ignored (the topic is timed).
TEST_F(Corrupted, AFlagWordOtherThanZeroOrOneIsRefused) {
    header->untimed = 2;
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
    header->untimed = 1;
    EXPECT_EQ(attach_error(), Errc::ok);
    header->single_producer = 7;
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
    header->single_producer = 0;
    header->untimed = 2;
    header->version_minor = 9;
    EXPECT_EQ(attach_error(), Errc::ok);
    header->version_minor = kVersionMinor;
    header->untimed = 0;
}

TEST_F(Corrupted, NotReadyIsRefused) {
    header->ready.store(0);
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
}

TEST_F(Corrupted, BoundsOutsideTheMappingAreRefused) {
    struct {
        uint64_t ring_capacity, ring_offset;
        uint32_t max_consumers, max_message;
    } saved{header->ring_capacity, header->ring_offset, header->max_consumers, header->max_message};
    header->ring_capacity = 1ull << 30;
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
    header->ring_capacity = saved.ring_capacity;
    header->ring_offset = size;
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
    header->ring_offset = saved.ring_offset;
    header->max_consumers = 100000;
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
    header->max_consumers = saved.max_consumers;
    header->max_message = uint32_t(saved.ring_capacity);
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
    header->max_message = saved.max_message;
    header->ring_capacity = 65535;
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
    header->ring_capacity = saved.ring_capacity;
    header->segment_size = size + 4096;
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
    header->segment_size = size;
    EXPECT_EQ(attach_error(), Errc::ok);
}

TEST_F(Corrupted, ATruncatedFileIsRefused) {
    ASSERT_EQ(ftruncate(fd, 100), 0);
    EXPECT_EQ(attach_error(), Errc::bad_magic);
}

TEST(Layout, FormatRefusesABadConfig) {
    int fd = memfd_create("t", MFD_CLOEXEC);
    TopicConfig c;
    c.capacity = 4096;
    c.max_message = 4096;
    auto r = Segment::format(fd, "t", c, 1);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    close(fd);
}

TEST_F(Corrupted, SlotStridesThatAreNotWholeLinesShorterThan11OrOverAPageAreRefused) {
    const uint32_t saved = header->producer_slot_stride;
    for (uint32_t bad : {uint32_t(kLegacyProducerSlotStride / 2), kLegacyProducerSlotStride + 8, uint32_t(2 * kPageSize)}) {
        header->producer_slot_stride = bad;
        EXPECT_EQ(attach_error(), Errc::corrupt_segment) << bad;
    }
    header->producer_slot_stride = saved;
    header->consumer_slot_stride = uint32_t(kLegacyConsumerSlotStride - kCacheLine);
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
}

TEST_F(Corrupted, SlotTablesThatOverrunTheirRegionAreRefused) {
    header->producer_slot_stride = kPageSize;  // 64 producers of a page each: past the region
    EXPECT_EQ(attach_error(), Errc::corrupt_segment);
}

// A 1.1 segment: no strides in the header (zeros), slots of the 1.1 sizes. Made by rewriting a
// fresh segment's header as a 1.1 daemon would have written it; nothing else is set yet.
TEST_F(Corrupted, ALayout11SegmentIsReadWithThe11SlotSizes) {
    header->version_minor = 1;
    header->producer_slot_stride = 0;
    header->consumer_slot_stride = 0;
    auto seg = Segment::attach(fd);
    ASSERT_TRUE(seg.has_value()) << seg.error().message;
    const auto* producers = reinterpret_cast<std::byte*>(&seg->producers());
    EXPECT_EQ(reinterpret_cast<std::byte*>(&seg->producer_slot(2)), producers + sizeof(ProducerRegionHead) + 2 * 64);
    EXPECT_EQ(reinterpret_cast<std::byte*>(&seg->index_entry(0)),
              producers + sizeof(ProducerRegionHead) + seg->max_producers() * 64);
    EXPECT_FALSE(seg->producer_slot_has(offsetof(ProducerSlot, owner_session) + 8));  // 1.2's line is absent
    EXPECT_TRUE(seg->producer_slot_has(offsetof(ProducerSlot, owner_token) + 8));
    EXPECT_TRUE(seg->consumer_slot_has(offsetof(ConsumerSlot, owner_session) + 8));
    EXPECT_FALSE(seg->consumer_slot_has(sizeof(ConsumerSlot)));  // 1.3's processing times are absent
    // Publishing works through the 1.1 geometry.
    auto pub_seg = Segment::attach(fd);
    seg->producer_slot(1).state.store(uint32_t(ProducerState::active));
    auto pub = Access::publisher(std::make_unique<PublisherCore>(nullptr, std::move(pub_seg.value()), 1, PublisherOptions{}));
    ASSERT_EQ(pub.publish("old layout"), PublishStatus::ok);
    EXPECT_EQ(seg->producer_slot(1).claim_start.load(), 0u);  // its claim was recorded, then cleared, in 1.1's slot 1
    EXPECT_EQ(seg->producer_slot(1).claim_end.load(), layout::record_size(10));
}

// A 1.0 segment: as 1.1's, and without the recovery settings (zeros: off), which readers take for
// a 1.1 segment's settings left off.
TEST_F(Corrupted, ALayout10SegmentIsReadAsA11One) {
    header->version_minor = 0;
    header->producer_slot_stride = 0;
    header->consumer_slot_stride = 0;
    header->unblock_timeout_ns = 0;
    header->expire_detached_ns = 0;
    auto seg = Segment::attach(fd);
    ASSERT_TRUE(seg.has_value()) << seg.error().message;
    EXPECT_EQ(seg->unblock_timeout_ns(), 0u);
    EXPECT_FALSE(seg->producer_slot_has(offsetof(ProducerSlot, owner_session) + 8));
    EXPECT_TRUE(seg->consumer_slot_has(offsetof(ConsumerSlot, owner_session) + 8));
    EXPECT_EQ(seg->max_groups(), 0u);
}

// The header is checked before the file is mapped: a huge sparse file with a bad header costs no
// memory (MAP_POPULATE would have filled its pages before the magic was looked at).
TEST(Layout, AHugeSparseFileWithABadHeaderIsRefusedBeforeAnyPageIsFilled) {
    const int fd = memfd_create("huge", MFD_CLOEXEC);
    ASSERT_EQ(ftruncate(fd, off_t(4) << 30), 0);
    auto r = Segment::attach(fd);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::bad_magic);
    struct stat st{};
    ASSERT_EQ(fstat(fd, &st), 0);
    EXPECT_LT(uint64_t(st.st_blocks) * 512, 1u << 20);
    close(fd);
}

TEST(Layout, ANewSegmentRecordsItsSlotStrides) {
    LocalTopic t(TopicConfig{});
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t.segment().header().version_minor, kVersionMinor);
    EXPECT_EQ(t.segment().header().producer_slot_stride, sizeof(ProducerSlot));
    EXPECT_EQ(t.segment().header().consumer_slot_stride, sizeof(ConsumerSlot));
    EXPECT_TRUE(t.segment().producer_slot_has(sizeof(ProducerSlot)));
}

}  // namespace
}  // namespace shmbus::detail
