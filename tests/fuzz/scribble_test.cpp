// Random bytes scribbled over a live segment (the producer region, the consumer region, the ring)
// while publishers and subscribers run in threads: whatever they report, nobody crashes, hangs or
// reads outside the mapping (the asan preset runs this under ASan). Races are the point here, so
// TSan does not run it (label fuzz).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "local_topic.h"

namespace shmbus::detail {
namespace {

using namespace std::chrono_literals;

void scribble_while_running(OnFull on_full) {
    TopicConfig config;
    config.capacity = 65536;
    config.on_full = on_full;
    config.max_producers = 4;
    config.max_consumers = 4;
    LocalTopic t(config, "scribble");
    ASSERT_TRUE(t.ok());
    const auto& h = t.segment().header();
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> published{0}, delivered{0};
    std::vector<std::thread> threads;
    for (uint32_t slot = 0; slot < 2; ++slot)
        threads.emplace_back([&, slot] {
            PublisherOptions quick;
            quick.block_timeout = 0ns;
            auto pub = t.publisher(quick, slot);
            while (!stop.load(std::memory_order_relaxed))
                if (pub.publish("a message of some length") == PublishStatus::ok) published.fetch_add(1, std::memory_order_relaxed);
        });
    for (const char* durable_name : {"", "d"})
        threads.emplace_back([&, durable_name] {
            SubscribeOptions o;
            o.durable_name = durable_name;
            auto sub = t.subscriber(o);
            if (!sub) return;  // the scribbling may already have made it unplaceable
            while (!stop.load(std::memory_order_relaxed)) {
                const auto r = sub->poll([&](const Message& m) { delivered.fetch_add(m.payload.size() > 0, std::memory_order_relaxed); });
                if (r.status == ReceiveStatus::corrupt) return;  // reported, as it should be
            }
        });
    std::mt19937_64 rng(on_full == OnFull::block ? 1 : 2);
    auto* base = static_cast<uint8_t*>(mmap(nullptr, h.segment_size, PROT_READ | PROT_WRITE, MAP_SHARED, t.fd(), 0));
    ASSERT_NE(base, MAP_FAILED);
    const uint64_t cursor_size = t.segment().cursor_object_size();
    auto* cursors = static_cast<uint8_t*>(mmap(nullptr, cursor_size, PROT_READ | PROT_WRITE, MAP_SHARED, t.cursor_fd(), 0));
    ASSERT_NE(cursors, MAP_FAILED);
    std::this_thread::sleep_for(50ms);  // let traffic start
    const auto end = std::chrono::steady_clock::now() + 1s;
    while (std::chrono::steady_clock::now() < end) {
        // Anywhere after page 0 of either object: the headers are checked once at attach, the
        // rest all the time. One write in eight goes to the cursor object.
        const uint64_t value = rng() % 4 == 0 ? 0 : rng();
        if (rng() % 8 == 0) {
            const uint64_t offset = h.consumer_offset + rng() % (cursor_size - h.consumer_offset - 8);
            std::memcpy(cursors + offset, &value, rng() % 8 + 1);
        } else {
            const uint64_t offset = h.producer_offset + rng() % (h.segment_size - h.producer_offset - 8);
            std::memcpy(base + offset, &value, rng() % 8 + 1);
        }
        if (rng() % 64 == 0) std::this_thread::sleep_for(100us);
    }
    stop = true;
    for (auto& th : threads) th.join();
    munmap(base, h.segment_size);
    munmap(cursors, cursor_size);
    EXPECT_GT(published.load(), 0u);
}

// A subscriber of the topic (which maps the group region writable) rewrites the group's entries
// while members deliver, retry and dead-letter: every position it writes is a record boundary of
// some lap, or the end of one. Whatever a member then does with an entry, each message and dead
// letter it hands over lies inside its ring: a position is read once, checked, and used as checked.
TEST(Scribble, GroupMembersNeverReadOutsideTheRingWhateverTheEntriesSay) {
    TopicConfig config;
    config.capacity = 65536;
    config.max_consumers = 8;
    LocalTopic t(config, "scribble-group");
    ASSERT_TRUE(t.ok());
    const Segment& seg = t.segment();
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> outside{0}, delivered{0}, dead{0};
    auto inside = [&](const Segment& s, std::span<const std::byte> bytes) {
        const std::byte* ring = s.ring();
        return bytes.data() >= ring && bytes.data() + bytes.size() <= ring + s.capacity();
    };
    std::vector<std::thread> threads;
    threads.emplace_back([&] {
        PublisherOptions quick;
        quick.block_timeout = 0ns;
        auto pub = t.publisher(quick, 0);
        std::string text(600, 'x');
        for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
            text.resize(8 + (i * 37) % 600, char('a' + i % 26));
            (void)pub.publish(text);
        }
    });
    for (int m = 0; m < 2; ++m)
        threads.emplace_back([&, m] {
            SubscribeOptions o;
            o.auto_ack = false;
            o.group_settings.visibility = 1ms;  // entries come due all the time
            o.group_settings.max_deliveries = 2;
            o.group_settings.backoff_initial = 10us;
            o.group_settings.backoff_max = 10us;
            const Segment* mine = nullptr;
            auto sub = t.member("workers", o, 500 + uint64_t(m), [&](const DeadLetterInfo& letter) {
                if (mine != nullptr && !inside(*mine, letter.message.payload)) outside.fetch_add(1);
                dead.fetch_add(1, std::memory_order_relaxed);
                return GroupMember::DeadLetterOutcome::sent;
            });
            if (!sub) return;
            mine = &Access::core(*sub).seg;
            while (!stop.load(std::memory_order_relaxed)) {
                const auto r = sub->poll([&](const Message& msg) {
                    if (!inside(*mine, msg.payload)) outside.fetch_add(1);
                    delivered.fetch_add(1, std::memory_order_relaxed);
                    if (msg.id % 3 == 0) (void)sub->nack(msg);
                });
                if (r.status == ReceiveStatus::corrupt) return;
            }
        });
    std::mt19937_64 rng(3);
    std::this_thread::sleep_for(20ms);
    const auto end = std::chrono::steady_clock::now() + 1s;
    while (std::chrono::steady_clock::now() < end) {
        for (auto& e : seg.group_block(0).entries) {
            // A lap's end, or the start of any 64-byte line of any lap: records or their middles.
            const uint64_t lap = (rng() % 4) * seg.capacity();
            const uint64_t position = rng() % 2 ? lap + seg.capacity() - 64 : lap + (rng() % (seg.capacity() / 64)) * 64;
            e.position.store(position, std::memory_order_relaxed);
        }
    }
    stop = true;
    for (auto& th : threads) th.join();
    EXPECT_EQ(outside.load(), 0u) << "a member handed over bytes from outside its ring";
    EXPECT_GT(delivered.load(), 0u);
}

TEST(Scribble, ABlockTopicSurvivesRandomWritesToItsRegions) { scribble_while_running(OnFull::block); }
TEST(Scribble, AnOverwriteTopicSurvivesRandomWritesToItsRegions) { scribble_while_running(OnFull::overwrite); }

}  // namespace
}  // namespace shmbus::detail
