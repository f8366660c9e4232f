// Many producers and subscribers on one topic, in threads of one process (so TSan can watch
// them): every message is checked for count, checksum, per-producer order and id order.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "local_topic.h"
#include "test_payload.h"

namespace shmbus::detail {
namespace {

using test::checksum_of;
using test::Payload;

template <int P, int C, int Batch, bool Durable, bool Single = false, int PublishBatch = 0>
struct Shape {
    static constexpr int publish_batch = PublishBatch;  // messages per publish_batch(); 0: publish() and loans
    static constexpr int producers = P;
    static constexpr int consumers = C;
    static constexpr int batch = Batch;
    static constexpr bool durable = Durable;
    static constexpr bool single_producer = Single;  // a single-producer topic: claims by plain stores
};

template <class S>
class Stress : public ::testing::Test {};
using Shapes = ::testing::Types<Shape<1, 1, 1, true>, Shape<1, 1, 64, true>, Shape<4, 1, 16, true>,
                                Shape<1, 4, 16, true>, Shape<4, 4, 256, true>, Shape<3, 2, 32, false>,
                                Shape<1, 1, 1, true, true>, Shape<1, 3, 16, true, true>, Shape<1, 2, 32, false, true>,
                                Shape<1, 1, 64, true, false, 16>, Shape<4, 2, 32, true, false, 8>,
                                Shape<1, 2, 64, false, true, 32>>;
TYPED_TEST_SUITE(Stress, Shapes);

TYPED_TEST(Stress, EveryMessageArrivesOnceInOrderWithItsChecksum) {
    constexpr uint64_t per_producer = 100000;
    TopicConfig config;
    // Durable readers gate a small ring (much wrapping, much blocking); ephemeral readers get a
    // ring big enough that they are never overrun, so loss would be a bug.
    config.capacity = TypeParam::durable ? 64 * 1024 : 64 * 1024 * 1024;
    config.on_full = OnFull::block;
    config.single_producer = TypeParam::single_producer;
    LocalTopic topic(config);
    ASSERT_TRUE(topic.ok()) << topic.error().message;

    std::vector<Subscriber> subs;
    for (int c = 0; c < TypeParam::consumers; ++c) {
        SubscribeOptions o;
        if (TypeParam::durable) o.durable_name = "d" + std::to_string(c);
        auto s = topic.subscriber(o);
        ASSERT_TRUE(s.has_value());
        subs.push_back(std::move(s.value()));
    }
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    std::vector<uint64_t> received(TypeParam::consumers, 0);
    for (int c = 0; c < TypeParam::consumers; ++c) {
        threads.emplace_back([&, c] {
            std::vector<uint64_t> next_seq(TypeParam::producers, 0);
            uint64_t last_id = 0;
            bool first = true;
            const uint64_t total = per_producer * TypeParam::producers;
            auto check = [&](const Message& m) {
                Payload p{};
                if (m.payload.size() < sizeof p) return void(failures++);
                std::memcpy(&p, m.payload.data(), sizeof p);
                const bool ok = p.producer < uint32_t(TypeParam::producers) && p.seq == next_seq[p.producer] &&
                                p.checksum == checksum_of(p.producer, p.seq) &&
                                m.payload.size() == sizeof p + p.filler && (first || m.id == last_id + 1) &&
                                m.lost_before == 0;
                if (!ok) failures++;
                if (p.producer < uint32_t(TypeParam::producers)) next_seq[p.producer] = p.seq + 1;
                last_id = m.id;
                first = false;
                ++received[c];
            };
            // The batched shapes read in batches too.
            auto check_all = [&](std::span<const Message> batch) {
                for (const Message& m : batch) check(m);
            };
            while (received[c] < total && failures == 0) {
                auto r = TypeParam::publish_batch != 0 ? subs[c].receive_batch(check_all, std::chrono::seconds(10), TypeParam::batch)
                                                       : subs[c].receive(check, std::chrono::seconds(10), TypeParam::batch);
                if (r.status != ReceiveStatus::ok) {
                    failures++;
                    break;
                }
            }
        });
    }
    for (int p = 0; p < TypeParam::producers; ++p) {
        threads.emplace_back([&, p] {
            auto pub = topic.publisher();
            if (TypeParam::publish_batch != 0) {
                // Batches of varying sizes, every payload its own bytes, checked like the others.
                std::vector<std::vector<std::byte>> store(TypeParam::publish_batch, std::vector<std::byte>(sizeof(Payload) + 200));
                std::vector<std::span<const std::byte>> batch;
                for (uint64_t seq = 0; seq < per_producer;) {
                    batch.clear();
                    const uint64_t n = std::min<uint64_t>(per_producer - seq, 1 + seq % TypeParam::publish_batch);
                    for (uint64_t k = 0; k < n; ++k, ++seq) {
                        Payload payload{uint32_t(p), uint32_t((seq * 7 + p) % 200), seq, checksum_of(uint32_t(p), seq)};
                        std::memcpy(store[k].data(), &payload, sizeof payload);
                        std::memset(store[k].data() + sizeof payload, int(seq & 0xFF), payload.filler);
                        batch.emplace_back(store[k].data(), sizeof payload + payload.filler);
                    }
                    const BatchResult r = pub.publish_batch(batch);
                    if (r.status != PublishStatus::ok || r.published != n) {
                        failures++;
                        return;
                    }
                }
                return;
            }
            std::byte buf[sizeof(Payload) + 200];
            for (uint64_t seq = 0; seq < per_producer; ++seq) {
                Payload payload{uint32_t(p), uint32_t((seq * 7 + p) % 200), seq, checksum_of(uint32_t(p), seq)};
                std::memcpy(buf, &payload, sizeof payload);
                std::memset(buf + sizeof payload, int(seq & 0xFF), payload.filler);
                const auto st = seq % 3 == 0
                                    ? [&] {
                                          Loan loan;  // every third message zero-copy
                                          auto s = pub.loan(sizeof payload + payload.filler, loan);
                                          if (s != PublishStatus::ok) return s;
                                          std::memcpy(loan.data().data(), buf, loan.data().size());
                                          return loan.commit();
                                      }()
                                    : pub.publish(std::span<const std::byte>(buf, sizeof payload + payload.filler));
                if (st != PublishStatus::ok) {
                    failures++;
                    return;
                }
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    for (int c = 0; c < TypeParam::consumers; ++c) {
        EXPECT_EQ(received[c], per_producer * TypeParam::producers);
        EXPECT_EQ(subs[c].lost(), 0u);
    }
}

// Ephemeral readers on a small overwrite ring under four producers: whatever arrives is whole
// and in id order, and delivered + lost accounts for every message exactly.
TEST(StressOverrun, LossIsCountedExactlyAndNothingTornIsDelivered) {
    TopicConfig config;
    config.capacity = 16 * 1024;
    config.on_full = OnFull::overwrite;
    LocalTopic topic(config);
    constexpr int producers = 4;
    constexpr uint64_t per_producer = 50000;
    auto sub = topic.subscriber();
    ASSERT_TRUE(sub.has_value());
    std::atomic<bool> done{false};
    std::atomic<int> bad{0};
    uint64_t delivered = 0, last_id = 0, lost_seen = 0;
    bool first = true;
    std::thread reader([&] {
        auto check = [&](const Message& m) {
            Payload p{};
            std::memcpy(&p, m.payload.data(), std::min(sizeof p, m.payload.size()));
            if (m.payload.size() != sizeof p || p.checksum != checksum_of(p.producer, p.seq)) bad++;
            if (m.id != (first ? 0 : last_id + 1) + m.lost_before) bad++;
            lost_seen += m.lost_before;
            last_id = m.id;
            first = false;
            ++delivered;
        };
        while (!done.load()) (void)sub->poll(check, 64);
        while (sub->poll(check, 64).status == ReceiveStatus::ok) {}
    });
    std::vector<std::thread> writers;
    for (int p = 0; p < producers; ++p)
        writers.emplace_back([&, p] {
            auto pub = topic.publisher();
            for (uint64_t seq = 0; seq < per_producer; ++seq) {
                Payload payload{uint32_t(p), 0, seq, checksum_of(uint32_t(p), seq)};
                if (pub.publish(std::as_bytes(std::span(&payload, 1))) != PublishStatus::ok) bad++;
            }
        });
    for (auto& w : writers) w.join();
    done = true;
    reader.join();
    EXPECT_EQ(bad.load(), 0);
    const uint64_t total = producers * per_producer;
    EXPECT_EQ(sub->lost(), lost_seen);
    EXPECT_EQ(delivered + sub->lost(), total);
    EXPECT_EQ(last_id, total - 1);
}

// Consumer groups: producers × members × window, on a small blocking ring. Every message is
// acked exactly once across the members with its checksum intact; every `NackEvery`-th first
// delivery is nacked (retried after a short backoff), and such a message is acked on its second
// attempt. The group's counters agree with what the members saw.
template <int P, int M, int Window, int NackEvery>
struct GroupShape {
    static constexpr int producers = P;
    static constexpr int members = M;
    static constexpr int window = Window;
    static constexpr int nack_every = NackEvery;
};

template <class S>
class GroupStress : public ::testing::Test {};
using GroupShapes = ::testing::Types<GroupShape<1, 1, 1, 0>, GroupShape<2, 4, 16, 0>, GroupShape<4, 2, 64, 0>,
                                     GroupShape<2, 3, 8, 97>>;
TYPED_TEST_SUITE(GroupStress, GroupShapes);

TYPED_TEST(GroupStress, EveryMessageIsAckedOnceWithItsChecksum) {
    constexpr uint64_t per_producer = 50000;
    constexpr uint64_t total = per_producer * TypeParam::producers;
    TopicConfig config;
    config.capacity = 64 * 1024;
    config.on_full = OnFull::block;
    LocalTopic topic(config);
    ASSERT_TRUE(topic.ok()) << topic.error().message;
    std::vector<Subscriber> members;
    for (int m = 0; m < TypeParam::members; ++m) {
        SubscribeOptions o;
        o.auto_ack = false;
        o.group_settings.window = TypeParam::window;
        o.group_settings.backoff_initial = std::chrono::microseconds(50);
        o.group_settings.backoff_max = std::chrono::microseconds(50);
        auto s = topic.member("workers", o, 1000 + uint64_t(m));
        ASSERT_TRUE(s.has_value()) << s.error().message;
        members.push_back(std::move(s.value()));
    }
    std::vector<std::atomic<uint8_t>> acked(total);
    std::atomic<uint64_t> settled{0};
    std::atomic<uint64_t> nacked{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int m = 0; m < TypeParam::members; ++m) {
        threads.emplace_back([&, m] {
            Subscriber& sub = members[size_t(m)];
            std::vector<Message> batch;
            auto take = [&](const Message& msg) {
                Payload p{};
                if (msg.payload.size() < sizeof p) return void(failures++);
                std::memcpy(&p, msg.payload.data(), sizeof p);
                if (p.producer >= uint32_t(TypeParam::producers) || p.checksum != checksum_of(p.producer, p.seq) ||
                    msg.payload.size() != sizeof p + p.filler || msg.id >= total)
                    return void(failures++);
                batch.push_back(msg);
            };
            while (settled.load() < total && failures == 0) {
                batch.clear();
                (void)sub.receive(take, std::chrono::milliseconds(20), 32);
                for (const Message& msg : batch) {  // settled after the poll, in reverse: acks in any order
                    const bool nack = TypeParam::nack_every != 0 && msg.attempt == 1 && msg.id % TypeParam::nack_every == 0;
                    if (nack) {
                        if (sub.nack(msg) != AckStatus::ok) failures++;
                        nacked++;
                        continue;
                    }
                    if (sub.ack(msg) != AckStatus::ok) failures++;
                    if (acked[msg.id].fetch_add(1) != 0) failures++;  // acked twice
                    settled++;
                }
            }
        });
    }
    for (int p = 0; p < TypeParam::producers; ++p) {
        threads.emplace_back([&, p] {
            auto pub = topic.publisher({}, uint32_t(p));
            std::byte buf[sizeof(Payload) + 100];
            for (uint64_t seq = 0; seq < per_producer; ++seq) {
                Payload payload{uint32_t(p), uint32_t((seq * 7 + p) % 100), seq, checksum_of(uint32_t(p), seq)};
                std::memcpy(buf, &payload, sizeof payload);
                std::memset(buf + sizeof payload, int(seq & 0xFF), payload.filler);
                if (pub.publish(std::span<const std::byte>(buf, sizeof payload + payload.filler), std::chrono::seconds(30)) !=
                    PublishStatus::ok) {
                    failures++;
                    return;
                }
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(settled.load(), total);
    for (uint64_t id = 0; id < total; ++id) {
        if (acked[id].load() != 1) {
            ADD_FAILURE() << "message " << id << " acked " << int(acked[id].load()) << " times";
            break;
        }
    }
    const auto& block = topic.segment().group_block(0);
    EXPECT_EQ(block.acked.load(), total);
    EXPECT_EQ(block.nacked.load(), nacked.load());
    EXPECT_EQ(block.redelivered.load(), nacked.load());
    if (TypeParam::nack_every != 0) {
        EXPECT_GT(nacked.load(), 0u);
    }
}


// Sleeping members of a group: one watches the topic's data futex and the others sleep on the
// group's wake word (so a publish wakes one member, not all); after each delivery they are back
// in that arrangement, and a burst draws them in with every message delivered once.
TEST(GroupWaking, OneMemberWatchesTheTopicTheOthersSleepOnTheGroupsWord) {
    TopicConfig config;
    config.capacity = 64 * 1024;
    LocalTopic topic(config);
    ASSERT_TRUE(topic.ok()) << topic.error().message;
    constexpr int kMembers = 3;
    std::vector<Subscriber> members;
    for (int m = 0; m < kMembers; ++m) {
        SubscribeOptions o;
        o.spin_polls = 0;  // asleep at once
        auto s = topic.member("workers", o, 2000 + uint64_t(m));
        ASSERT_TRUE(s.has_value()) << s.error().message;
        members.push_back(std::move(s.value()));
    }
    const auto& block = topic.segment().group_block(0);
    std::atomic<uint64_t> delivered{0};
    std::atomic<bool> stop{false};
    std::vector<std::atomic<uint8_t>> seen(1001);
    std::vector<std::thread> threads;
    for (int m = 0; m < kMembers; ++m)
        threads.emplace_back([&, m] {
            while (!stop.load())
                (void)members[size_t(m)].receive([&](const Message& msg) {
                    if (msg.id < seen.size()) seen[msg.id].fetch_add(1);
                    delivered.fetch_add(1);
                }, std::chrono::milliseconds(300));
        });
    auto until = [](auto&& done) {
        for (int i = 0; i < 1000 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return done();
    };
    // The arrangement, seen whole at one moment (members re-enter receive() every 300 ms).
    auto arranged = [&] { return block.watcher.load() != 0 && block.wake_sleepers.load() == uint32_t(kMembers - 1); };
    EXPECT_TRUE(until(arranged)) << "one watcher and two sleepers on the wake word";
    auto pub = topic.publisher({}, 0);
    ASSERT_EQ(pub.publish("one"), PublishStatus::ok);
    EXPECT_TRUE(until([&] { return delivered.load() == 1; }));
    EXPECT_TRUE(until(arranged)) << "back asleep, with a watcher";
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(pub.publish("burst", std::chrono::seconds(5)), PublishStatus::ok);
    EXPECT_TRUE(until([&] { return delivered.load() == 1001; }));
    stop = true;
    for (auto& t : threads) t.join();
    for (std::size_t id = 0; id < seen.size(); ++id) EXPECT_EQ(seen[id].load(), 1) << "message " << id;
}

}  // namespace
}  // namespace shmbus::detail
