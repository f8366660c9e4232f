// SubscribeOptions::stream_backoff: a receiving subscriber that catches up in a dense stream waits
// a little before it polls again; one that receives a sparse flow (a ping-pong) never waits. The
// pacing's rule first, then a dense stream through a real subscriber, every message checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "local_topic.h"
#include "read/stream_pacer.h"
#include "ring_helpers.h"

namespace shmbus::detail {
namespace {

constexpr uint64_t kMax = 32'000;   // the cap these tests give the pacer, in nanoseconds
constexpr std::size_t kPoll = 1024;  // messages one poll may deliver

// The messages the poll after a wait of the pacer's current backoff finds when one comes every
// `gap_ns`: those that came during the wait and the spin polls after it (about 100 ns), and one.
std::size_t found_after_wait(const StreamPacer& p, uint64_t gap_ns) {
    return 1 + std::size_t((p.backoff_ns() + 100) / gap_ns);
}

// A stream of a message every 100 ns, found right after each wait, until the wait is at the cap.
void grow_to_cap(StreamPacer& p) {
    for (int i = 0; i < 40 && p.backoff_ns() < kMax; ++i) p.arrived(1, found_after_wait(p, 100), kPoll);
}

TEST(StreamPacer, APingPongNeverWaits) {
    StreamPacer p(kMax);
    for (int i = 0; i < 1000; ++i) {
        p.arrived(1 + uint32_t(i % 40), 1, kPoll);  // one message per poll, however soon it came
        ASSERT_EQ(p.backoff_ns(), 0u) << "round " << i;
    }
}

TEST(StreamPacer, ADenseStreamDoublesTheWaitUpToTheCap) {
    StreamPacer p(kMax);
    uint64_t want = StreamPacer::kFirstBackoffNs;
    for (int i = 0; i < 20; ++i) {
        p.arrived(1, found_after_wait(p, 100), kPoll);  // a message every 100 ns, right after catching up
        EXPECT_EQ(p.backoff_ns(), std::min(want, kMax)) << "round " << i;
        want *= 2;
    }
    EXPECT_EQ(p.backoff_ns(), kMax);
    p.arrived(StreamPacer::kDensePolls - 1, found_after_wait(p, 100), kPoll);  // still dense
    EXPECT_EQ(p.backoff_ns(), kMax);
}

// A flow slower than a message every kDenseGapNs does not hold a long wait: after a burst, the
// wait halves with every poll until it is gone.
TEST(StreamPacer, ASlowerFlowLetsTheWaitShrinkAfterABurst) {
    StreamPacer p(kMax);
    grow_to_cap(p);
    ASSERT_EQ(p.backoff_ns(), kMax);
    int polls = 0;
    for (; p.backoff_ns() != 0 && polls < 40; ++polls) {
        const uint64_t before = p.backoff_ns();
        p.arrived(1, found_after_wait(p, 1000), kPoll);  // a message a microsecond
        EXPECT_EQ(p.backoff_ns(), before / 2 < StreamPacer::kFirstBackoffNs ? 0 : before / 2);
    }
    EXPECT_EQ(p.backoff_ns(), 0u);
    EXPECT_LE(polls, 10);
    // A flow of one message every 250 ns, a little slower than kDenseGapNs, after a burst: the wait
    // comes down from the cap and stays near where a wait finds as many messages as it lasts
    // (count x 200 ns against the wait), never near the cap again.
    grow_to_cap(p);
    for (int i = 0; i < 40; ++i) {
        p.arrived(1, found_after_wait(p, 250), kPoll);
        if (i >= 10) {
            EXPECT_GE(p.backoff_ns(), 500u) << "poll " << i;
            EXPECT_LE(p.backoff_ns(), 2000u) << "poll " << i;
        }
    }
}

TEST(StreamPacer, AFullPollKeepsTheWaitAsItIs) {
    StreamPacer p(kMax);
    for (int i = 0; i < 3; ++i) p.arrived(1, 10, kPoll);
    const uint64_t before = p.backoff_ns();
    ASSERT_GT(before, 0u);
    p.arrived(1, kPoll, kPoll);  // more may be waiting: neither longer nor shorter
    EXPECT_EQ(p.backoff_ns(), before);
}

TEST(StreamPacer, TheWaitHalvesOnSingleMessagesAndEndsWhenTheFlowGoesQuiet) {
    StreamPacer p(kMax);
    grow_to_cap(p);
    ASSERT_EQ(p.backoff_ns(), kMax);
    p.arrived(1, 1, kPoll);
    EXPECT_EQ(p.backoff_ns(), kMax / 2);
    p.arrived(StreamPacer::kDensePolls, 500, kPoll);  // many, but only after a longer wait: not dense
    EXPECT_EQ(p.backoff_ns(), kMax / 4);
    p.arrived(StreamPacer::kQuietPolls, 5, kPoll);
    EXPECT_EQ(p.backoff_ns(), 0u);
    grow_to_cap(p);
    p.went_quiet();
    EXPECT_EQ(p.backoff_ns(), 0u);
    // Halving below the first step ends the wait.
    p.arrived(1, 2, kPoll);
    ASSERT_EQ(p.backoff_ns(), StreamPacer::kFirstBackoffNs);
    p.arrived(1, 1, kPoll);
    EXPECT_EQ(p.backoff_ns(), 0u);
}

TEST(StreamPacer, ACapOfZeroNeverWaits) {
    StreamPacer p(0);
    for (int i = 0; i < 20; ++i) p.arrived(1, 50, kPoll);
    EXPECT_EQ(p.backoff_ns(), 0u);
}

TEST(StreamPacer, TheWaitLastsAboutAsLongAsItSays) {
    StreamPacer p(kMax);
    grow_to_cap(p);
    const uint64_t t0 = monotonic_ns();
    const uint64_t began = p.wait(UINT64_MAX);
    EXPECT_GE(began, t0);
    EXPECT_GE(monotonic_ns() - began, kMax);
}

// A receive() whose timeout is shorter than the backoff returns when the timeout says: the wait
// stops there. The shortest of a few waits, so that a preemption cannot fail the test.
TEST(StreamPacer, TheWaitEndsAtTheCallersTimeout) {
    StreamPacer p(kMax);
    grow_to_cap(p);
    uint64_t shortest = UINT64_MAX;
    for (int i = 0; i < 20; ++i) {
        const uint64_t began = p.wait(2'000);
        ASSERT_NE(began, 0u);
        shortest = std::min(shortest, monotonic_ns() - began);
    }
    EXPECT_GE(shortest, 2'000u);
    EXPECT_LT(shortest, kMax / 2);
}

TEST(StreamPacer, NoBackoffReadsNoClock) {
    StreamPacer p(kMax);
    EXPECT_EQ(p.wait(UINT64_MAX), 0u);
}

// A publisher thread streams 64-byte messages as fast as it can into a block topic; a durable
// subscriber spinning in receive() takes every one, in id order, payload intact, with the pacing on
// (the default) and off. A ring of 64 KiB makes the publisher wait on the subscriber often, so the
// stream keeps catching up, emptying and refilling.
void stream_through_a_subscriber(std::chrono::nanoseconds backoff) {
    LocalTopic t(config(64 << 10));
    ASSERT_TRUE(t.ok()) << t.error().message;
    SubscribeOptions o = durable("d", StartFrom::earliest);
    o.wait = WaitStrategy::busy_spin;
    o.stream_backoff = backoff;
    auto sub = t.subscriber(o);
    ASSERT_TRUE(sub.has_value());
    constexpr uint64_t kCount = 300'000;
    std::thread publisher([&] {
        auto pub = t.publisher();
        std::vector<std::byte> m(64);
        for (uint64_t i = 0; i < kCount; ++i) {
            std::memcpy(m.data(), &i, 8);
            const uint64_t check = i * 0x9e3779b97f4a7c15ull;
            std::memcpy(m.data() + 56, &check, 8);
            ASSERT_EQ(pub.publish(m), PublishStatus::ok);
        }
    });
    uint64_t next = 0, bad = 0;
    while (next < kCount && bad == 0) {
        const auto r = sub->receive(
            [&](const Message& m) {
                uint64_t i = 0, check = 0;
                std::memcpy(&i, m.payload.data(), 8);
                std::memcpy(&check, m.payload.data() + 56, 8);
                if (m.payload.size() != 64 || i != next || m.id != next || check != i * 0x9e3779b97f4a7c15ull) ++bad;
                ++next;
            },
            std::chrono::seconds(10), kPoll);
        ASSERT_EQ(r.status, ReceiveStatus::ok) << "after " << next << " messages";
    }
    publisher.join();
    EXPECT_EQ(next, kCount);
    EXPECT_EQ(bad, 0u);
    EXPECT_EQ(sub->lost(), 0u);
}

TEST(StreamPacer, ADenseStreamArrivesWholeAndInOrderWithThePacing) { stream_through_a_subscriber(std::chrono::microseconds(32)); }
TEST(StreamPacer, ADenseStreamArrivesWholeAndInOrderWithoutIt) { stream_through_a_subscriber(std::chrono::nanoseconds(0)); }

}  // namespace
}  // namespace shmbus::detail
