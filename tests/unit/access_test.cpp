// The segment / cursor-object split (layout 1.3): each object is mapped with the access of the
// descriptor it came from, so a client handed a read-only descriptor cannot write that object,
// whatever it tries; and each role still works with only the access it is given.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <string>
#include <thread>

#include "local_topic.h"
#include "shmbus/layout/cursor_object.h"

namespace shmbus::detail {
namespace {

using namespace std::chrono_literals;

// A read-only descriptor of the object `fd` refers to, opened as shmbusd opens one.
int read_only(int fd) {
    return open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDONLY | O_CLOEXEC);
}

struct Fds {
    int segment = -1, cursors = -1;
    ~Fds() {
        if (segment >= 0) close(segment);
        if (cursors >= 0) close(cursors);
    }
};

// The descriptors a client of each role is handed (daemon/registry.h, Role).
Fds publisher_fds(const LocalTopic& t) { return {fcntl(t.fd(), F_DUPFD_CLOEXEC, 0), read_only(t.cursor_fd())}; }
Fds subscriber_fds(const LocalTopic& t) { return {read_only(t.fd()), fcntl(t.cursor_fd(), F_DUPFD_CLOEXEC, 0)}; }

TopicConfig small() {
    TopicConfig c;
    c.capacity = 4096;
    return c;
}

TEST(Access, EachObjectIsMappedWithTheAccessOfItsDescriptor) {
    LocalTopic t(small());
    ASSERT_TRUE(t.ok());
    Fds p = publisher_fds(t), s = subscriber_fds(t);
    auto pub = Segment::attach(p.segment, p.cursors);
    auto sub = Segment::attach(s.segment, s.cursors);
    ASSERT_TRUE(pub.has_value()) << pub.error().message;
    ASSERT_TRUE(sub.has_value()) << sub.error().message;
    EXPECT_TRUE(pub->segment_writable());
    EXPECT_FALSE(pub->cursors_writable());
    EXPECT_FALSE(sub->segment_writable());
    EXPECT_TRUE(sub->cursors_writable());
}

// The kernel refuses the write: the process dies of SIGSEGV at the store, and mprotect cannot
// lift the protection, since the descriptor was read-only. (The default action is restored
// first, so that a sanitizer's handler does not turn the fault into a report and an abort.)
void faulting(void (*write)(Segment&), Segment& seg) {
    std::signal(SIGSEGV, SIG_DFL);
    write(seg);
}
TEST(AccessDeathTest, ASubscriberCannotWriteTheRingOrTheTail) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    LocalTopic t(small());
    Fds s = subscriber_fds(t);
    auto seg = Segment::attach(s.segment, s.cursors);
    ASSERT_TRUE(seg.has_value());
    EXPECT_EXIT(faulting([](Segment& s) { s.ring()[0] = std::byte{1}; }, *seg), ::testing::KilledBySignal(SIGSEGV), "");
    EXPECT_EXIT(faulting([](Segment& s) { s.producers().tail.next_id = 7; }, *seg), ::testing::KilledBySignal(SIGSEGV), "");
    EXPECT_NE(mprotect(seg->ring(), 4096, PROT_READ | PROT_WRITE), 0);
    EXPECT_EQ(errno, EACCES);
}

TEST(AccessDeathTest, APublisherCannotWriteACursor) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    LocalTopic t(small());
    Fds p = publisher_fds(t);
    auto seg = Segment::attach(p.segment, p.cursors);
    ASSERT_TRUE(seg.has_value());
    EXPECT_EXIT(faulting([](Segment& s) { s.consumer_slot(0).ack_position.store(1 << 20); }, *seg),
                ::testing::KilledBySignal(SIGSEGV), "");
    auto* page = reinterpret_cast<std::byte*>(&seg->consumers());
    EXPECT_NE(mprotect(page, 4096, PROT_READ | PROT_WRITE), 0);
}

// Publishing and subscribing work with only the access each role gets, including a publisher
// asleep on a full ring (it waits on a futex in its read-only cursor mapping) woken by an ack.
TEST(Access, EachRoleWorksWithItsOwnAccessAlone) {
    LocalTopic t(small());
    Fds p = publisher_fds(t), s = subscriber_fds(t);
    auto pub_seg = Segment::attach(p.segment, p.cursors);
    auto sub_seg = Segment::attach(s.segment, s.cursors);
    ASSERT_TRUE(pub_seg && sub_seg);
    auto slot = reserve_consumer_slot(*sub_seg);
    ASSERT_TRUE(slot.has_value());
    auto start = attach_new_cursor(*sub_seg, *slot, layout::SlotKind::durable, "d", Registration{{getpid(), 0}},
                                   StartFrom::earliest, 0);
    ASSERT_TRUE(start.has_value());
    SubscribeOptions so;
    so.durable_name = "d";
    auto core = std::make_unique<SubscriberCore>(nullptr, std::move(sub_seg.value()), *slot, true, so);
    core->begin(start->position, start->id, false);
    auto sub = Access::subscriber(std::move(core));
    pub_seg->producer_slot(0).state.store(uint32_t(layout::ProducerState::active));
    auto pub = Access::publisher(std::make_unique<PublisherCore>(nullptr, std::move(pub_seg.value()), 0, PublisherOptions{}));

    const std::string payload(200, 'x');
    uint64_t published = 0;
    while (pub.publish(payload, 0ns) == PublishStatus::ok) ++published;  // until the durable cursor holds it back
    ASSERT_GT(published, 0u);
    std::thread reader([&] {
        std::this_thread::sleep_for(50ms);  // the publisher below is asleep by now
        uint64_t seen = 0;
        while (seen < published + 1) {
            const auto r = sub.poll([&](const Message& m) { seen += m.payload.size() == payload.size(); });
            ASSERT_NE(r.status, ReceiveStatus::corrupt);
        }
    });
    EXPECT_EQ(pub.publish(payload), PublishStatus::ok);  // blocks until the reader's acks make room
    reader.join();
}

TEST(Access, ASegmentRefusesAMissingOrForeignCursorObject) {
    LocalTopic t(small()), other(small(), "other");
    auto missing = Segment::attach(t.fd());
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().code, Errc::corrupt_segment);
    EXPECT_NE(missing.error().message.find("cursor object is missing"), std::string::npos);
    auto foreign = Segment::attach(t.fd(), other.cursor_fd());
    ASSERT_FALSE(foreign.has_value());
    EXPECT_NE(foreign.error().message.find("another topic"), std::string::npos) << foreign.error().message;
    auto swapped = Segment::attach(t.cursor_fd(), t.fd());
    EXPECT_FALSE(swapped.has_value());
}

}  // namespace
}  // namespace shmbus::detail
