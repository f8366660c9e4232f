// Segment layout: geometry, formatting and the refusal of foreign, corrupt or newer segments.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "local_topic.h"
#include "segment.h"

namespace shmbus::detail {
namespace {

using namespace layout;

TEST(Layout, RegionsArePageAlignedAndDisjoint) {
    for (uint64_t cap : {4096ull, 65536ull, 1ull << 20, 1ull << 24}) {
        TopicConfig c;
        c.capacity = cap;
        const Geometry g = compute_geometry(c);
        EXPECT_EQ(g.producer_offset % kPageSize, 0u);
        EXPECT_EQ(g.consumer_offset % kPageSize, 0u);
        EXPECT_EQ(g.ring_offset % kPageSize, 0u);
        EXPECT_GE(g.producer_offset, sizeof(SegmentHeader));
        EXPECT_GE(g.consumer_offset, g.producer_offset + g.producer_size);
        EXPECT_GE(g.ring_offset, g.consumer_offset + g.consumer_size);
        EXPECT_EQ(g.total, g.ring_offset + cap);
    }
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

}  // namespace
}  // namespace shmbus::detail
