// The thread-sharing patterns docs/threads.md allows, each run against a live shmbusd with real
// threads (the TSan preset runs these): one Client shared by threads that each open their own
// publishers and subscribers and ask the daemon things meanwhile; a subscriber whose messages a
// worker thread handles and acks; consumer-group members on threads of one process.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "bus_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

struct Stamp {
    uint32_t thread;
    uint64_t seq;
};

std::span<const std::byte> bytes_of(const Stamp& s) { return std::as_bytes(std::span<const Stamp>(&s, 1)); }

class Threads : public BusTest {};

TEST_F(Threads, OneClientSharedByPublishingThreadsAndAskingThreads) {
    constexpr uint32_t kThreads = 4;
    constexpr uint64_t kEach = 20000;
    auto client = connect();
    ASSERT_TRUE(client.has_value());
    TopicConfig config;
    config.capacity = 1 << 20;
    ASSERT_TRUE(client->create_topic("shared", config).has_value());
    SubscribeOptions o;
    o.durable_name = "all";
    auto sub = client->subscribe("shared", o);
    ASSERT_TRUE(sub.has_value());

    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (uint32_t t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            auto pub = client->publisher("shared");  // the Client from several threads at once
            if (!pub) return void(failures++);
            for (uint64_t i = 0; i < kEach; ++i)
                if (pub->publish(bytes_of({t, i})) != PublishStatus::ok) failures++;
        });
    }
    std::atomic<bool> done{false};
    threads.emplace_back([&] {  // control requests while the others publish
        while (!done.load())
            if (!client->topic_stats("shared") || !client->list_topics()) failures++;
    });
    std::vector<uint64_t> next(kThreads, 0);
    uint64_t received = 0;
    while (received < kThreads * kEach && failures == 0) {
        auto r = sub->receive(
            [&](const Message& m) {
                Stamp s{};
                std::memcpy(&s, m.payload.data(), sizeof s);
                if (m.payload.size() != sizeof s || s.thread >= kThreads || s.seq != next[s.thread]) failures++;
                else ++next[s.thread];
                ++received;
            },
            10s);
        if (r.status != ReceiveStatus::ok) failures++;
    }
    done = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(received, kThreads * kEach);
}

// The poller copies each message and hands it over; the worker handles it and acks. Calls on the
// subscriber never overlap: both take one mutex (docs/threads.md).
TEST_F(Threads, AWorkerThreadAcksWhatThePollingThreadHandedOver) {
    constexpr uint64_t kMessages = 20000;
    auto client = connect();
    ASSERT_TRUE(client.has_value());
    SubscribeOptions o;
    o.durable_name = "worker";
    o.auto_ack = false;
    auto sub = client->subscribe("handoff", o);
    ASSERT_TRUE(sub.has_value());
    WaitSet waits;  // the poller sleeps here, outside the mutex
    ASSERT_TRUE(waits.add(*sub).has_value());

    struct Work {
        Message message;  // kept for its ack; its payload is not valid past the poll
        uint64_t value;
    };
    std::mutex sub_mutex, queue_mutex;
    std::condition_variable queued;
    std::deque<Work> queue;
    std::atomic<bool> poller_done{false};
    std::atomic<int> failures{0};
    uint64_t acked = 0;

    std::thread worker([&] {
        uint64_t expect = 0;
        for (;;) {
            std::unique_lock<std::mutex> lk(queue_mutex);
            queued.wait(lk, [&] { return !queue.empty() || poller_done.load(); });
            if (queue.empty()) return;
            Work w = queue.front();
            queue.pop_front();
            lk.unlock();
            if (w.value != expect++) failures++;
            std::lock_guard<std::mutex> g(sub_mutex);
            if (sub->ack(w.message) != AckStatus::ok) failures++;
            ++acked;
        }
    });
    std::thread publisher([&] {
        auto pub = client->publisher("handoff");
        if (!pub) return void(failures++);
        for (uint64_t i = 0; i < kMessages; ++i)
            if (pub->publish(std::as_bytes(std::span<const uint64_t>(&i, 1))) != PublishStatus::ok) failures++;
    });
    uint64_t polled = 0;
    while (polled < kMessages && failures == 0) {
        auto ready = waits.wait(10s);
        if (!ready || ready->empty()) {
            failures++;
            break;
        }
        std::lock_guard<std::mutex> g(sub_mutex);
        (void)sub->poll([&](const Message& m) {
            Work w{m, 0};
            std::memcpy(&w.value, m.payload.data(), sizeof w.value);  // the payload, copied while valid
            {
                std::lock_guard<std::mutex> q(queue_mutex);
                queue.push_back(w);
            }
            queued.notify_one();
            ++polled;
        });
    }
    poller_done = true;
    queued.notify_one();
    publisher.join();
    worker.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(acked, kMessages);
    // Everything was acked: the durable subscription resumes past the last message.
    const uint64_t resume_at = sub->next_id();
    waits.remove(*sub);
    sub = Error{};
    auto again = client->subscribe("handoff", o);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->next_id(), resume_at);
}

TEST_F(Threads, GroupMembersOnThreadsOfOneProcessShareTheWork) {
    constexpr int kMembers = 3;
    constexpr uint64_t kMessages = 20000;
    auto client = connect();
    ASSERT_TRUE(client.has_value());
    GroupSettings g;
    ASSERT_TRUE(client->create_group("jobs", "workers", g, StartFrom::earliest).has_value());
    std::vector<std::atomic<int>> seen(kMessages);
    std::atomic<uint64_t> handled{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> members;
    for (int i = 0; i < kMembers; ++i) {
        members.emplace_back([&] {
            SubscribeOptions o;
            o.group = "workers";
            auto sub = client->subscribe("jobs", o);
            if (!sub) return void(failures++);
            while (handled.load() < kMessages && failures == 0) {
                (void)sub->receive(
                    [&](const Message& m) {
                        uint64_t v = 0;
                        std::memcpy(&v, m.payload.data(), sizeof v);
                        if (v >= kMessages || seen[v].fetch_add(1) != 0) failures++;
                        handled++;
                    },
                    50ms);
            }
        });
    }
    auto pub = client->publisher("jobs");
    ASSERT_TRUE(pub.has_value());
    for (uint64_t i = 0; i < kMessages; ++i) ASSERT_EQ(pub->publish(std::as_bytes(std::span<const uint64_t>(&i, 1))), PublishStatus::ok);
    for (auto& t : members) t.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(handled.load(), kMessages);
}

}  // namespace
}  // namespace shmbus::test
