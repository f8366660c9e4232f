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
    std::vector<int> companions;  // owner objects, then group objects
    Fds(int s, int c) : segment(s), cursors(c) {}
    Fds(Fds&&) = delete;
    ~Fds() {
        if (segment >= 0) close(segment);
        if (cursors >= 0) close(cursors);
        for (int fd : companions) close(fd);
    }
    [[nodiscard]] Result<Segment> attach() const { return Segment::attach(segment, cursors, Segment::Populate::yes, companions); }
};

int writable(int fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 0); }

// The descriptors a client of each role is handed (daemon/registry.h, Role): a publisher writes
// the segment only; a subscriber the cursor object's head and its own owner object (here object
// 0), and, as a member of group `group`, that group's object.
std::unique_ptr<Fds> publisher_fds(const LocalTopic& t) {
    auto f = std::make_unique<Fds>(writable(t.fd()), read_only(t.cursor_fd()));
    for (int c : t.companions()) f->companions.push_back(read_only(c));
    return f;
}
std::unique_ptr<Fds> subscriber_fds(const LocalTopic& t, int group = -1) {
    auto f = std::make_unique<Fds>(read_only(t.fd()), writable(t.cursor_fd()));
    const uint32_t owners = t.segment().owner_objects();
    for (uint32_t i = 0; i < t.companions().size(); ++i) {
        const bool mine = i == 0 || (group >= 0 && i == owners + uint32_t(group));
        f->companions.push_back(mine ? writable(t.companions()[i]) : read_only(t.companions()[i]));
    }
    return f;
}

TopicConfig small() {
    TopicConfig c;
    c.capacity = 4096;
    return c;
}

TEST(Access, EachObjectIsMappedWithTheAccessOfItsDescriptor) {
    LocalTopic t(small());
    ASSERT_TRUE(t.ok());
    auto p = publisher_fds(t), s = subscriber_fds(t);
    auto pub = p->attach();
    auto sub = s->attach();
    ASSERT_TRUE(pub.has_value()) << pub.error().message;
    ASSERT_TRUE(sub.has_value()) << sub.error().message;
    EXPECT_TRUE(pub->segment_writable());
    EXPECT_FALSE(pub->cursors_writable());
    EXPECT_FALSE(sub->segment_writable());
    EXPECT_TRUE(sub->cursors_writable());
    ASSERT_GT(pub->owner_objects(), 1u);
    for (uint32_t k = 0; k < pub->owner_objects(); ++k) {
        EXPECT_FALSE(pub->owner_object_writable(k)) << k;
        EXPECT_EQ(sub->owner_object_writable(k), k == 0) << k;
    }
    for (uint32_t g = 0; g < pub->max_groups(); ++g) {
        EXPECT_FALSE(pub->group_object_writable(g));
        EXPECT_FALSE(sub->group_object_writable(g));
    }
    auto member = subscriber_fds(t, 2);
    auto m = member->attach();
    ASSERT_TRUE(m.has_value()) << m.error().message;
    EXPECT_TRUE(m->group_object_writable(2));
    EXPECT_FALSE(m->group_object_writable(1));
}

TEST(Access, ASegmentRefusesMissingOrMisplacedOwnerObjects) {
    LocalTopic t(small()), other(small(), "other");
    auto none = Segment::attach(t.fd(), t.cursor_fd());
    ASSERT_FALSE(none.has_value());
    EXPECT_EQ(none.error().code, Errc::corrupt_segment);
    EXPECT_NE(none.error().message.find("owner and group objects are missing"), std::string::npos) << none.error().message;
    std::vector<int> swapped = t.companions();
    std::swap(swapped[0], swapped[1]);
    auto misplaced = Segment::attach(t.fd(), t.cursor_fd(), Segment::Populate::no, swapped);
    ASSERT_FALSE(misplaced.has_value());
    EXPECT_NE(misplaced.error().message.find("another place"), std::string::npos) << misplaced.error().message;
    auto foreign = Segment::attach(t.fd(), t.cursor_fd(), Segment::Populate::no, other.companions());
    ASSERT_FALSE(foreign.has_value());
    EXPECT_NE(foreign.error().message.find("another topic"), std::string::npos) << foreign.error().message;
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
    auto s = subscriber_fds(t);
    auto seg = s->attach();
    ASSERT_TRUE(seg.has_value());
    EXPECT_EXIT(faulting([](Segment& s) { s.ring()[0] = std::byte{1}; }, *seg), ::testing::KilledBySignal(SIGSEGV), "");
    EXPECT_EXIT(faulting([](Segment& s) { s.producers().tail.next_id = 7; }, *seg), ::testing::KilledBySignal(SIGSEGV), "");
    EXPECT_NE(mprotect(seg->ring(), 4096, PROT_READ | PROT_WRITE), 0);
    EXPECT_EQ(errno, EACCES);
}

TEST(AccessDeathTest, APublisherCannotWriteACursor) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    LocalTopic t(small());
    auto p = publisher_fds(t);
    auto seg = p->attach();
    ASSERT_TRUE(seg.has_value());
    EXPECT_EXIT(faulting([](Segment& s) { s.consumer_slot(0).ack_position.store(1 << 20); }, *seg),
                ::testing::KilledBySignal(SIGSEGV), "");
    auto* page = reinterpret_cast<std::byte*>(&seg->consumers());
    EXPECT_NE(mprotect(page, 4096, PROT_READ | PROT_WRITE), 0);
}

// Layout 1.9: a subscriber writes its own owner object and nothing of another principal's: not
// another owner object's slots (another uid's cursors, the archiver's) and not a group's block
// (entries, dispatch) unless it is a member. The kernel refuses, as for the ring.
TEST(AccessDeathTest, ASubscriberCannotWriteAnotherPrincipalsState) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    LocalTopic t(small());
    auto s = subscriber_fds(t, 0);
    auto seg = s->attach();
    ASSERT_TRUE(seg.has_value()) << seg.error().message;
    const uint32_t theirs = seg->owner_slots();  // the first slot of owner object 1
    seg->consumer_slot(0).ack_position.store(0);  // its own: allowed
    EXPECT_EXIT(faulting([](Segment& x) { x.consumer_slot(x.owner_slots()).ack_position.store(1 << 20); }, *seg),
                ::testing::KilledBySignal(SIGSEGV), "");
    EXPECT_EXIT(faulting([](Segment& x) { x.consumer_slot(x.owner_slots()).state.store(0); }, *seg),
                ::testing::KilledBySignal(SIGSEGV), "");
    EXPECT_EXIT(faulting([](Segment& x) { x.group_block(1).entries[0].position.store(1 << 20); }, *seg),
                ::testing::KilledBySignal(SIGSEGV), "");
    seg->group_block(0).entries[0].deadline_ns.store(0);  // its group's: allowed
    auto* page = reinterpret_cast<std::byte*>(&seg->consumer_slot(theirs));
    EXPECT_NE(mprotect(page, 4096, PROT_READ | PROT_WRITE), 0);
    EXPECT_EQ(errno, EACCES);
}

// Publishing and subscribing work with only the access each role gets, including a publisher
// asleep on a full ring (it waits on a futex in its read-only cursor mapping) woken by an ack.
TEST(Access, EachRoleWorksWithItsOwnAccessAlone) {
    LocalTopic t(small());
    auto p = publisher_fds(t), s = subscriber_fds(t);
    auto pub_seg = p->attach();
    auto sub_seg = s->attach();
    ASSERT_TRUE(pub_seg && sub_seg);
    auto slot = reserve_consumer_slot(*sub_seg, OwnerMask{1});  // in its own owner object
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
