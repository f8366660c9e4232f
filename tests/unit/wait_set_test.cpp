// WaitSet: which subscriptions it reports, the descriptor's level-triggered behaviour, members
// that move or die, sets larger than one futex_waitv call, and every message of many topics
// arriving through one descriptor (threads of one process, so that TSan watches).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/epoll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "local_topic.h"
#include "shmbus/wait_set.h"

namespace shmbus::detail {
namespace {

using namespace std::chrono_literals;

TopicConfig small_topic() {
    TopicConfig c;
    c.capacity = 64 * 1024;
    return c;
}

bool readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

std::vector<Subscriber*> ready_of(WaitSet& set, std::chrono::nanoseconds timeout) {
    auto r = set.wait(timeout);
    EXPECT_TRUE(r.has_value());
    if (!r) return {};
    return {r->begin(), r->end()};
}

uint32_t drain(Subscriber& s) {
    uint32_t n = 0;
    while (s.poll([](const Message&) {}).status == ReceiveStatus::ok) ++n;
    return n;
}

// Topics a and b, a subscriber of each, both in `set`.
class WaitSetOfTwo : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(set.add(sa).has_value());
        ASSERT_TRUE(set.add(sb).has_value());
    }
    LocalTopic a{small_topic(), "a"}, b{small_topic(), "b"};
    Subscriber sa = a.subscriber().value();
    Subscriber sb = b.subscriber().value();
    WaitSet set;
};

TEST_F(WaitSetOfTwo, ReportsOnlyTheSubscriptionsThatHaveMessages) {
    EXPECT_EQ(set.size(), 2u);
    EXPECT_TRUE(ready_of(set, 0ns).empty());
    auto pb = b.publisher();
    ASSERT_EQ(pb.publish("hello"), PublishStatus::ok);
    EXPECT_EQ(ready_of(set, 0ns), std::vector<Subscriber*>{&sb});
    EXPECT_EQ(drain(sb), 1u);
    EXPECT_TRUE(ready_of(set, 0ns).empty());
}

TEST_F(WaitSetOfTwo, WaitEndsWhenAPublisherCommitsAndTimesOutOtherwise) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(ready_of(set, 30ms).empty());
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 30ms);
    std::thread later([&] {
        std::this_thread::sleep_for(50ms);  // past the wake-grace period: the set truly sleeps
        auto pa = a.publisher();
        (void)pa.publish("late");
    });
    EXPECT_EQ(ready_of(set, 10s), std::vector<Subscriber*>{&sa});
    later.join();
    EXPECT_EQ(drain(sa), 1u);
}

TEST(WaitSet, TheDescriptorIsReadableWhileSomethingIsReadyAndUntilAWaitFindsNothing) {
    LocalTopic a(small_topic(), "a");
    auto sa = a.subscriber().value();
    WaitSet set;
    ASSERT_TRUE(set.add(sa).has_value());
    // Past the wake-grace period of a new subscriber (when a set looks again every millisecond,
    // so its descriptor turns readable with nothing to read).
    std::this_thread::sleep_for(15ms);
    auto fd = set.fd();
    ASSERT_TRUE(fd.has_value()) << fd.error().message;
    EXPECT_TRUE(readable(*fd, 0)) << "readable until the first wait arms it";
    EXPECT_TRUE(ready_of(set, 0ns).empty());
    EXPECT_FALSE(readable(*fd, 20));
    auto pa = a.publisher();
    ASSERT_EQ(pa.publish("one"), PublishStatus::ok);
    ASSERT_EQ(pa.publish("two"), PublishStatus::ok);
    EXPECT_TRUE(readable(*fd, 5000));
    EXPECT_EQ(ready_of(set, 0ns), std::vector<Subscriber*>{&sa});
    // One of two taken: still ready, still readable (level-triggered).
    EXPECT_EQ(sa.poll([](const Message&) {}, 1).count, 1u);
    EXPECT_TRUE(readable(*fd, 0));
    EXPECT_EQ(ready_of(set, 0ns), std::vector<Subscriber*>{&sa});
    EXPECT_EQ(drain(sa), 1u);
    EXPECT_TRUE(ready_of(set, 0ns).empty());
    EXPECT_FALSE(readable(*fd, 20));
    // wait() with a timeout works through the descriptor too.
    std::thread later([&] {
        std::this_thread::sleep_for(20ms);
        (void)pa.publish("three");
    });
    EXPECT_EQ(ready_of(set, 10s), std::vector<Subscriber*>{&sa});
    later.join();
}

TEST(WaitSet, AMovedSubscriberIsNamedWhereItIsNowAndADestroyedOneLeaves) {
    LocalTopic a(small_topic(), "a"), b(small_topic(), "b");
    auto first = a.subscriber().value();
    auto sb = std::make_unique<Subscriber>(b.subscriber().value());
    WaitSet set;
    ASSERT_TRUE(set.add(first).has_value());
    ASSERT_TRUE(set.add(*sb).has_value());
    Subscriber moved = std::move(first);
    auto pa = a.publisher();
    auto pb = b.publisher();
    ASSERT_EQ(pa.publish("x"), PublishStatus::ok);
    EXPECT_EQ(ready_of(set, 0ns), std::vector<Subscriber*>{&moved});
    sb.reset();
    ASSERT_EQ(pb.publish("y"), PublishStatus::ok);
    EXPECT_EQ(set.size(), 1u);
    EXPECT_EQ(ready_of(set, 0ns), std::vector<Subscriber*>{&moved});
    EXPECT_TRUE(set.remove(moved));
    EXPECT_FALSE(set.remove(moved));
    EXPECT_TRUE(ready_of(set, 0ns).empty());
}

TEST(WaitSet, ASubscriberBelongsToOneSetAndOutlivesIt) {
    LocalTopic a(small_topic(), "a");
    auto sa = a.subscriber().value();
    {
        WaitSet one;
        ASSERT_TRUE(one.add(sa).has_value());
        EXPECT_TRUE(one.add(sa).has_value()) << "adding again changes nothing";
        WaitSet two;
        auto refused = two.add(sa);
        ASSERT_FALSE(refused.has_value());
        EXPECT_EQ(refused.error().code, Errc::invalid_argument);
    }
    WaitSet three;
    EXPECT_TRUE(three.add(sa).has_value()) << "the first set is gone: free again";
}

TEST(WaitSet, MoreSubscriptionsThanOneVectoredWaitTakes) {
    constexpr int kTopics = 200;  // past 127: two watcher threads
    std::vector<std::unique_ptr<LocalTopic>> topics;
    std::vector<Subscriber> subs;
    subs.reserve(kTopics);
    WaitSet set;
    for (int i = 0; i < kTopics; ++i) {
        topics.push_back(std::make_unique<LocalTopic>(small_topic(), "t" + std::to_string(i)));
        ASSERT_TRUE(topics.back()->ok());
        subs.push_back(topics.back()->subscriber().value());
    }
    for (auto& s : subs) ASSERT_TRUE(set.add(s).has_value());
    for (int target : {3, 130, 199}) {
        std::thread later([&] {
            std::this_thread::sleep_for(20ms);
            auto p = topics[target]->publisher();
            (void)p.publish("m");
        });
        EXPECT_EQ(ready_of(set, 10s), std::vector<Subscriber*>{&subs[target]}) << target;
        later.join();
        EXPECT_EQ(drain(subs[target]), 1u);
    }
}

TEST(WaitSet, AGroupMemberIsReadyWhenItsGroupHasAMessage) {
    LocalTopic a(small_topic(), "a");
    SubscribeOptions o;
    o.group = "workers";
    auto m1 = a.member("workers", o, 1).value();
    auto m2 = a.member("workers", o, 2).value();
    WaitSet set;
    ASSERT_TRUE(set.add(m1).has_value());
    ASSERT_TRUE(set.add(m2).has_value());
    EXPECT_TRUE(ready_of(set, 0ns).empty());
    auto pa = a.publisher();
    ASSERT_EQ(pa.publish("job"), PublishStatus::ok);
    auto ready = ready_of(set, 5s);
    EXPECT_EQ(ready.size(), 2u) << "either member may take it";
    uint32_t taken = 0;
    for (Subscriber* s : ready) taken += s->poll([](const Message&) {}).count;
    EXPECT_EQ(taken, 1u);
}

// Many topics, bursts from several publisher threads, one thread waiting on the descriptor with
// epoll: every message arrives, in order per topic, with its content.
TEST(WaitSet, EveryMessageOfManyTopicsArrivesThroughOneDescriptor) {
    constexpr int kTopics = 8;
    constexpr int kPublishers = 2;
    constexpr uint64_t kPerTopic = 2000;
    std::vector<std::unique_ptr<LocalTopic>> topics;
    std::vector<Subscriber> subs;
    subs.reserve(kTopics);
    for (int i = 0; i < kTopics; ++i) {
        topics.push_back(std::make_unique<LocalTopic>(small_topic(), "t" + std::to_string(i)));
        SubscribeOptions o;
        o.durable_name = "d";  // gates: nothing may be lost
        subs.push_back(topics.back()->subscriber(o).value());
    }
    WaitSet set;
    for (auto& s : subs) ASSERT_TRUE(set.add(s).has_value());
    const int fd = set.fd().value();
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);

    std::atomic<int> failures{0};
    std::vector<std::thread> publishers;
    for (int p = 0; p < kPublishers; ++p) {
        publishers.emplace_back([&, p] {
            std::vector<Publisher> pubs;
            for (int t = p; t < kTopics; t += kPublishers) pubs.push_back(topics[t]->publisher({}, uint32_t(p)));
            for (uint64_t seq = 0; seq < kPerTopic; ++seq) {
                for (std::size_t k = 0; k < pubs.size(); ++k) {
                    if (pubs[k].publish(std::string_view(reinterpret_cast<const char*>(&seq), sizeof seq), 10s) != PublishStatus::ok)
                        failures++;
                }
                if (seq % 64 == 0) std::this_thread::sleep_for(200us);  // let the waiter fall asleep now and then
            }
        });
    }
    std::vector<uint64_t> next(kTopics, 0);
    uint64_t total = 0;
    while (total < kTopics * kPerTopic && failures == 0) {
        epoll_event out{};
        if (epoll_wait(ep, &out, 1, 10000) != 1) {
            failures++;
            break;
        }
        auto ready = set.wait(0ns);
        ASSERT_TRUE(ready.has_value());
        for (Subscriber* s : *ready) {
            const int t = int(s - subs.data());
            (void)s->poll([&](const Message& m) {
                uint64_t seq = 0;
                std::memcpy(&seq, m.payload.data(), sizeof seq);
                if (m.payload.size() != sizeof seq || seq != next[t]) failures++;
                next[t] = seq + 1;
                ++total;
            });
        }
    }
    for (auto& t : publishers) t.join();
    ::close(ep);
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(total, kTopics * kPerTopic);
}

}  // namespace
}  // namespace shmbus::detail
