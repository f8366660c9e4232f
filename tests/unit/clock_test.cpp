// Publish timestamps come from the TSC where it is invariant: they must track CLOCK_REALTIME.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "local_topic.h"
#include "core/wall_clock.h"

namespace shmbus::detail {
namespace {

int64_t diff(uint64_t a, uint64_t b) { return int64_t(a) - int64_t(b); }

TEST(WallClock, TracksClockRealtimeWithinMicroseconds) {
    WallClock clock;
    for (int i = 0; i < 200; ++i) {  // about 100 ms, across many re-anchors
        const uint64_t before = WallClock::system_ns();
        const uint64_t ours = clock.now_ns();
        const uint64_t after = WallClock::system_ns();
        EXPECT_GE(diff(ours, before), -20000) << i;
        EXPECT_LE(diff(ours, after), 20000) << i;
        std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
}

TEST(WallClock, MessagesCarryTheirPublishTime) {
    TopicConfig c;
    c.capacity = 65536;
    LocalTopic t(c);
    auto pub = t.publisher();
    auto sub = t.subscriber();
    const uint64_t before = WallClock::system_ns();
    ASSERT_EQ(pub.publish("x"), PublishStatus::ok);
    const uint64_t after = WallClock::system_ns();
    uint64_t stamp = 0;
    (void)sub->poll([&](const Message& m) { stamp = m.timestamp_ns; });
    EXPECT_GE(diff(stamp, before), -20000);
    EXPECT_LE(diff(stamp, after), 20000);
}

}  // namespace
}  // namespace shmbus::detail
