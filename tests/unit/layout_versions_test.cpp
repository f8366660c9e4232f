// The layout versions this build serves (docs/protocol.md, "Versions"): every 1.x minor from 1.0.
// A segment of each minor is made as that minor arranged its objects, its header rewritten as that
// minor's shmbusd wrote it; it must attach with exactly the features its minor has, and carry
// messages between a publisher and a durable subscriber. 1.0 and 1.1 (slots of the 1.1 sizes, no
// strides in the header) are in layout_test.cpp.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <string>

#include "local_topic.h"
#include "shmbus/layout/segment_header.h"

namespace shmbus::detail {
namespace {

using namespace shmbus::layout;

class EveryMinor : public ::testing::TestWithParam<uint16_t> {};

LocalTopic::Arrangement arrangement_of(uint16_t minor) {
    if (minor >= kOwnerObjectsSinceMinor) return LocalTopic::Arrangement::owner_objects;
    if (minor >= 3) return LocalTopic::Arrangement::cursor_object;
    return LocalTopic::Arrangement::single_object;
}

// Page 0 as the minor's shmbusd wrote it: its version, and zeros in every field a later minor added.
void write_as(int fd, uint16_t minor) {
    void* page = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT_NE(page, MAP_FAILED);
    auto* h = static_cast<SegmentHeader*>(page);
    h->version_minor = minor;
    if (minor < kSingleProducerSinceMinor) h->single_producer = 0;
    if (minor < kArchiveSinceMinor) {
        h->archived = 0;
        h->archiver_slot = 0;
        h->first_id = 0;
    }
    if (minor < kSequencesSinceMinor) {
        h->sequence_entries = 0;
        h->sequence_offset = 0;
    }
    munmap(page, kPageSize);
}

TEST_P(EveryMinor, AttachesWithTheFeaturesOfItsMinorAndCarriesMessages) {
    const uint16_t minor = GetParam();
    LocalTopic t(TopicConfig{}, "v1." + std::to_string(minor), arrangement_of(minor));
    ASSERT_TRUE(t.ok()) << t.error().message;
    write_as(t.fd(), minor);
    auto seg = t.attach();
    ASSERT_TRUE(seg.has_value()) << seg.error().message;
    EXPECT_EQ(seg->header().version_minor, minor);
    EXPECT_EQ(seg->max_groups() != 0, minor >= kGroupsSinceMinor) << "a 1.4 group region is not read";
    EXPECT_EQ(seg->sequence_entries() != 0, minor >= kSequencesSinceMinor);
    EXPECT_EQ(seg->has_archive_fields(), minor >= kArchiveSinceMinor);
    EXPECT_EQ(seg->in_place_reads(), minor >= kInPlaceReadsSinceMinor);
    EXPECT_EQ(seg->owner_objects() != 0, minor >= kOwnerObjectsSinceMinor);

    SubscribeOptions o;
    o.durable_name = "reader";
    o.from = StartFrom::earliest;
    auto sub = t.subscriber(o);
    ASSERT_TRUE(sub.has_value()) << sub.error().message;
    auto pub = t.publisher();
    for (uint64_t i = 0; i < 100; ++i) ASSERT_EQ(pub.publish("message " + std::to_string(i)), PublishStatus::ok);
    uint64_t next = 0;
    const auto r = sub->poll(
        [&](const Message& m) {
            EXPECT_EQ(m.id, next);
            EXPECT_EQ(m.text(), "message " + std::to_string(next));
            ++next;
        },
        1000);
    EXPECT_EQ(r.status, ReceiveStatus::ok);
    EXPECT_EQ(next, 100u);
}

INSTANTIATE_TEST_SUITE_P(Layout, EveryMinor, ::testing::Range<uint16_t>(2, kVersionMinor + 1),
                         [](const auto& info) { return "minor_" + std::to_string(info.param); });

}  // namespace
}  // namespace shmbus::detail
