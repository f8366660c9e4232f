// Ring protocol edge cases, set up directly on a segment without a daemon.
#include <gtest/gtest.h>

#include <thread>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "local_topic.h"
#include "control/stats.h"
#include "ring_helpers.h"
#include "core/ring.h"

namespace shmbus::detail {
namespace {

using layout::RecordHeader;
using layout::RecordType;

// ---- typed over capacities ----

template <class T>
class RingByCapacity : public ::testing::Test {};
template <uint64_t N>
using Cap = std::integral_constant<uint64_t, N>;
using Capacities = ::testing::Types<Cap<4096>, Cap<65536>, Cap<(1u << 20)>>;
TYPED_TEST_SUITE(RingByCapacity, Capacities);

TYPED_TEST(RingByCapacity, IdsIncreaseAndPayloadsRoundTripAcrossManyWraps) {
    LocalTopic t(config(TypeParam::value, OnFull::overwrite));
    ASSERT_TRUE(t.ok()) << t.error().message;
    auto pub = t.publisher();
    auto sub = t.subscriber();
    ASSERT_TRUE(sub.has_value());
    const uint64_t laps = 5;
    uint64_t next = 0;
    uint64_t published = 0;
    for (uint64_t i = 0; published < laps * TypeParam::value; ++i) {
        const std::string msg = "m" + std::to_string(i) + std::string(i % 97, 'x');
        ASSERT_EQ(pub.publish(msg), PublishStatus::ok);
        published += layout::record_size(msg.size());
        std::vector<uint64_t> ids;
        auto got = drain(*sub, 1 << 20, &ids);
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0], msg);
        EXPECT_EQ(ids[0], next++);
    }
    EXPECT_EQ(sub->lost(), 0u);
}

TYPED_TEST(RingByCapacity, WrapWritesPaddingAndTheReaderStepsOverIt) {
    LocalTopic t(config(TypeParam::value, OnFull::overwrite));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    const Ring ring(t.segment());
    // Fill so that exactly 64 bytes remain before the end, then publish a record of 96 bytes.
    const uint64_t cap = TypeParam::value;
    const std::string filler(32, 'f');  // 64-byte records
    while (ring.tail_position() < cap - 64) ASSERT_EQ(pub.publish(filler), PublishStatus::ok);
    ASSERT_EQ(ring.tail_position(), cap - 64);
    const uint64_t before = drain(*sub).size();
    EXPECT_GT(before, 0u);
    const std::string big(64, 'B');  // record of 96 bytes: does not fit in the last 64
    ASSERT_EQ(pub.publish(big), PublishStatus::ok);
    EXPECT_EQ(ring.tail_position(), cap + 96);
    const auto* pad = ring.header_at(cap - 64);
    EXPECT_EQ(pad->type, uint16_t(RecordType::padding));
    EXPECT_EQ(pad->length, 64u - sizeof(RecordHeader));
    auto got = drain(*sub);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], big);
}

// The horizon is an upper bound of the tail that producers raise an eighth of a ring at a time:
// its line changes at most 8 times a lap (so a lappable reader's cached copy stays valid), it is
// never below a claim's end, and lapped() still answers exactly (from the tail) where it matters.
TYPED_TEST(RingByCapacity, TheHorizonBoundsTheTailAndMovesAnEighthOfARingAtATime) {
    LocalTopic t(config(TypeParam::value, OnFull::overwrite));
    auto pub = t.publisher();
    const Ring ring(t.segment());
    const uint64_t cap = TypeParam::value;
    const uint64_t block = cap / t.segment().index_entries();
    auto horizon = [&] { return t.segment().producers().horizon.load(); };
    const std::string msg(64, 'h');
    uint64_t changes = 0, last = horizon();
    while (ring.tail_position() < 3 * cap) {
        ASSERT_EQ(pub.publish(msg), PublishStatus::ok);
        const uint64_t tail = ring.tail_position(), h = horizon();
        ASSERT_GE(h, tail);
        ASSERT_LE(h, tail + cap / 8 + block);
        changes += h != last;
        last = h;
    }
    EXPECT_LE(changes, 3 * 8 + 1);  // three laps
    const uint64_t tail = ring.tail_position();
    EXPECT_FALSE(ring.lapped(tail - cap));      // exactly a ring behind: still whole
    EXPECT_TRUE(ring.lapped(tail - cap - 32));  // one record further: possibly overwritten
    EXPECT_FALSE(ring.lapped(tail - cap / 2));
}

TYPED_TEST(RingByCapacity, MaxSizeMessageFitsAndOneByteMoreIsRefused) {
    LocalTopic t(config(TypeParam::value, OnFull::overwrite));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    const std::string max(pub.max_message(), 'M');
    EXPECT_EQ(pub.max_message(), std::min<uint64_t>(kDefaultMaxMessage, max_message_for(TypeParam::value)));
    for (int i = 0; i < 20; ++i) {  // many laps of maximal records, padding included
        ASSERT_EQ(pub.publish(max), PublishStatus::ok);
        auto got = drain(*sub);
        ASSERT_EQ(got.size(), 1u);
        ASSERT_EQ(got[0], max);
    }
    EXPECT_EQ(pub.publish(std::string(pub.max_message() + 1, 'X')), PublishStatus::too_large);
    EXPECT_TRUE(drain(*sub).empty());
}

TYPED_TEST(RingByCapacity, DurableGatesAFailTopicAtExactlyFull) {
    LocalTopic t(config(TypeParam::value, OnFull::fail));
    auto pub = t.publisher();
    auto sub = t.subscriber(durable("d"));
    ASSERT_TRUE(sub.has_value());
    const std::string msg(32, 'a');  // 64-byte records: the ring holds exactly capacity / 64
    const uint64_t fits = TypeParam::value / 64;
    for (uint64_t i = 0; i < fits; ++i) ASSERT_EQ(pub.publish(msg), PublishStatus::ok) << i;
    EXPECT_EQ(pub.publish(msg), PublishStatus::would_block);
    EXPECT_EQ(t.segment().producers().full_refusals.load(), 1u);
    // Reading without acking frees nothing.
    auto& core = Access::core(*sub);
    core.options.auto_ack = false;
    EXPECT_EQ(drain(*sub).size(), fits);
    EXPECT_EQ(pub.publish(msg), PublishStatus::would_block);
    sub->ack_delivered();
    EXPECT_EQ(pub.publish(msg), PublishStatus::ok);
}

// ---- single-capacity cases ----

// Publishers skip the StoreLoad fence and the waiter check while no subscriber may sleep: only
// spin_then_sleep subscribers count, for as long as they live.
TEST(Waking, OnlySubscribersThatMaySleepAreCountedWhileTheyLive) {
    LocalTopic topic(config(65536));
    ASSERT_TRUE(topic.ok()) << topic.error().message;
    const auto& may_sleep = topic.segment().consumers().may_sleep;
    EXPECT_EQ(may_sleep.load(), 0u);
    {
        SubscribeOptions spinning;
        spinning.wait = WaitStrategy::busy_spin;
        auto a = topic.subscriber(spinning);
        ASSERT_TRUE(a.has_value());
        EXPECT_EQ(may_sleep.load(), 0u) << "a busy-spinning subscriber never needs a wake";
        auto b = topic.subscriber();
        auto c = topic.subscriber();
        ASSERT_TRUE(b && c);
        EXPECT_EQ(may_sleep.load(), 2u);
        auto pub = topic.publisher();
        ASSERT_EQ(pub.publish("x"), PublishStatus::ok);
        uint32_t got = 0;
        (void)b->receive([&](const Message&) { ++got; }, std::chrono::seconds(1));
        EXPECT_EQ(got, 1u);
    }
    EXPECT_EQ(may_sleep.load(), 0u) << "counts leave with their subscribers";
}

// A single-producer topic's publisher stores the tail's two words at once: a reader never sees a
// position with another position's id. Fixed-size records and no wrap make the pair checkable:
// every record is 64 bytes, so position == 64 * id exactly.
TEST(SingleProducerTail, AReaderNeverSeesAPositionWithAnotherPositionsId) {
#if defined(__SANITIZE_THREAD__)
    // Under TSan the tail is claimed by the 16-byte CAS (store_tail), and TSan's runtime, built
    // without cmpxchg16b, carries a 16-byte atomic out under its own lock as two 8-byte stores,
    // which a reader's 8-byte loads do not take: the pair is atomic only outside TSan.
    GTEST_SKIP() << "TSan emulates 16-byte atomics; the property holds in the other builds";
#endif
    TopicConfig config;
    config.capacity = 16u << 20;
    config.single_producer = true;
    LocalTopic topic(config);
    ASSERT_TRUE(topic.ok());
    ASSERT_TRUE(topic.segment().single_producer());
    constexpr uint64_t kMessages = 200'000;  // 12.8 MB of 64-byte records: no wrap
    std::atomic<bool> done{false};
    uint64_t torn = 0, reads = 0;
    std::thread reader([&] {
        const Ring ring(topic.segment());
        while (!done.load(std::memory_order_acquire)) {
            const TailSnapshot t = ring.read_tail();
            if (t.position != t.next_id * 64) ++torn;
            ++reads;
        }
    });
    auto pub = topic.publisher();
    const std::array<std::byte, 8> payload{};
    for (uint64_t i = 0; i < kMessages; ++i) ASSERT_EQ(pub.publish(payload), PublishStatus::ok);
    done.store(true, std::memory_order_release);
    reader.join();
    EXPECT_EQ(torn, 0u) << "of " << reads << " reads";
    EXPECT_EQ(Ring(topic.segment()).read_tail().next_id, kMessages);
}

// ---- batches ----

std::vector<std::span<const std::byte>> spans_of(const std::vector<std::string>& texts) {
    std::vector<std::span<const std::byte>> out;
    for (const auto& t : texts) out.push_back(std::as_bytes(std::span<const char>(t.data(), t.size())));
    return out;
}

TEST(Batch, EveryMessageArrivesInOrderWithConsecutiveIdsAcrossManyWraps) {
    for (bool single : {false, true}) {
        TopicConfig c = config(4096);
        c.single_producer = single;
        LocalTopic t(c);
        auto pub = t.publisher();
        auto sub = t.subscriber();
        std::vector<std::string> sent, got;
        uint64_t next = 0;
        for (int round = 0; round < 200; ++round) {
            std::vector<std::string> batch;
            for (int k = 0; k < 1 + round % 23; ++k) batch.push_back(std::to_string(next++) + std::string(size_t(round * 7 + k) % 90, 'x'));
            const BatchResult r = pub.publish_batch(spans_of(batch));
            ASSERT_EQ(r.status, PublishStatus::ok);
            ASSERT_EQ(r.published, batch.size());
            EXPECT_EQ(pub.last_id(), next - 1);
            sent.insert(sent.end(), batch.begin(), batch.end());
            std::vector<uint64_t> ids;
            const auto read = drain(*sub, 1 << 20, &ids);
            for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], got.size() + i);
            got.insert(got.end(), read.begin(), read.end());
        }
        EXPECT_EQ(got, sent);
        EXPECT_EQ(sub->lost(), 0u);
    }
}

TEST(Batch, OneClaimCarriesOneTimestampAndAnOversizedMessageStopsTheBatch) {
    LocalTopic t(config(64 * 1024));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    const std::string big(pub.max_message() + 1, 'b');
    const BatchResult r = pub.publish_batch(spans_of({"a", "b", big, "c"}));
    EXPECT_EQ(r.status, PublishStatus::too_large);
    EXPECT_EQ(r.published, 2u);
    std::vector<uint64_t> stamps;
    (void)sub->poll([&](const Message& m) { stamps.push_back(m.timestamp_ns); }, 10);
    ASSERT_EQ(stamps.size(), 2u);
    EXPECT_EQ(stamps[0], stamps[1]);
    EXPECT_NE(stamps[0], 0u);
    const BatchResult empty = pub.publish_batch({});
    EXPECT_EQ(empty.status, PublishStatus::ok);
    EXPECT_EQ(empty.published, 0u);
}

TEST(Batch, AFullFailTopicPublishesWhatFitsAndSaysWhy) {
    LocalTopic t(config(4096, OnFull::fail));
    auto pub = t.publisher();
    SubscribeOptions o;
    o.durable_name = "slow";  // never reads: holds the ring
    auto held = t.subscriber(o);
    ASSERT_TRUE(held);
    std::vector<std::string> batch(200, std::string(40, 'm'));  // 200 x 96 bytes: more than the ring
    const BatchResult r = pub.publish_batch(spans_of(batch));
    EXPECT_EQ(r.status, PublishStatus::would_block);
    EXPECT_GT(r.published, 0u);
    EXPECT_LT(r.published, 200u);
    EXPECT_EQ(drain(*held).size(), r.published);
}

TEST(Batch, NamedProducersAndRevocableTopicsPublishOneByOne) {
    TopicConfig c = config(64 * 1024);
    c.unblock_timeout = std::chrono::milliseconds(50);
    LocalTopic revocable(c);
    auto pub = revocable.publisher();
    auto sub = revocable.subscriber();
    EXPECT_EQ(pub.publish_batch(spans_of({"a", "b", "c"})).published, 3u);
    EXPECT_EQ(drain(*sub), (std::vector<std::string>{"a", "b", "c"}));

    LocalTopic named(config(64 * 1024));
    PublisherOptions po;
    po.producer = "orders";
    auto npub = named.publisher(po);
    auto nsub = named.subscriber();
    EXPECT_EQ(npub.publish_batch(spans_of({"x", "y"})).published, 2u);
    std::vector<uint64_t> sequences;
    (void)nsub->poll([&](const Message& m) { sequences.push_back(m.sequence); }, 10);
    EXPECT_EQ(sequences, (std::vector<uint64_t>{1, 2}));
}

TEST(BatchReceive, EveryMessageOnceInOrderInBatchesOfAtMostMax) {
    for (bool durable : {false, true}) {
        LocalTopic t(config(1u << 20));
        SubscribeOptions o;
        if (durable) o.durable_name = "d";
        auto sub = t.subscriber(o);
        ASSERT_TRUE(sub);
        auto pub = t.publisher();
        std::vector<std::string> sent;
        for (int i = 0; i < 5000; ++i) sent.push_back(std::to_string(i) + std::string(size_t(i * 13) % 300, char('a' + i % 26)));
        std::vector<std::string> got;
        uint64_t next_id = 0, batches = 0, bad = 0;
        std::size_t published = 0;
        while (got.size() < sent.size()) {
            if (published < sent.size()) {
                ASSERT_EQ(pub.publish(sent[published++]), PublishStatus::ok);
            }
            if (published % 7 != 0 && published < sent.size()) continue;  // let several wait
            const PollResult r = sub->poll_batch([&](std::span<const Message> batch) {
                ++batches;
                if (batch.empty() || batch.size() > 5) ++bad;
                for (const Message& m : batch) {
                    if (m.id != next_id++) ++bad;
                    got.emplace_back(m.text());
                }
            }, 5);
            ASSERT_NE(r.status, ReceiveStatus::corrupt);
        }
        EXPECT_EQ(bad, 0u);
        EXPECT_EQ(got, sent);
        EXPECT_GE(batches, sent.size() / 5);  // never more than 5 at once
        if (durable) {  // auto_ack covered every batch once its handler returned
            EXPECT_EQ(t.segment().consumer_slot(0).ack_id.load(), sent.size());
        }
    }
}

TEST(BatchReceive, CopiesThatFillTheArenaEndTheBatchEarly) {
    TopicConfig c = config(4u << 20);
    c.max_message = 64 * 1024;
    LocalTopic t(c);
    auto sub = t.subscriber();
    auto pub = t.publisher();
    for (int i = 0; i < 10; ++i) ASSERT_EQ(pub.publish(std::string(60 * 1024, char('0' + i))), PublishStatus::ok);
    std::vector<std::size_t> sizes;
    std::string firsts;
    while (firsts.size() < 10) {
        const PollResult r = sub->poll_batch([&](std::span<const Message> batch) {
            sizes.push_back(batch.size());
            for (const Message& m : batch) {
                EXPECT_EQ(m.payload.size(), 60u * 1024);
                EXPECT_EQ(m.text().find_first_not_of(m.text()[0]), std::string_view::npos);  // whole, not mixed
                firsts += m.text()[0];
            }
        });
        ASSERT_EQ(r.status, ReceiveStatus::ok);
    }
    EXPECT_EQ(firsts, "0123456789");
    for (std::size_t n : sizes) EXPECT_LE(n, 4u);  // 256 KiB of 60 KiB copies
}

TEST(BatchReceive, AnOverrunReaderCountsItsLossAndGetsNothingTorn) {
    LocalTopic t(config(4096, OnFull::overwrite));
    auto sub = t.subscriber();
    auto pub = t.publisher();
    uint64_t delivered = 0, last = 0;
    bool first = true;
    for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < 150; ++i) ASSERT_EQ(pub.publish("m" + std::to_string(round * 150 + i)), PublishStatus::ok);
        (void)sub->poll_batch([&](std::span<const Message> batch) {
            for (const Message& m : batch) {
                EXPECT_EQ(m.text(), "m" + std::to_string(m.id));
                EXPECT_TRUE(first || m.id > last);
                last = m.id;
                first = false;
                ++delivered;
            }
        }, 1000);
    }
    (void)sub->poll_batch([&](std::span<const Message> batch) { delivered += batch.size(); }, 1000);
    EXPECT_EQ(delivered + sub->lost(), 50u * 150);
    EXPECT_GT(sub->lost(), 0u);
}

TEST(BatchReceive, ReceiveBatchWaitsForTheFirstMessage) {
    LocalTopic t(config(64 * 1024));
    auto sub = t.subscriber();
    std::thread later([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        auto pub = t.publisher();
        (void)pub.publish_batch(spans_of({"a", "b", "c"}));
    });
    std::vector<std::string> got;
    while (got.size() < 3) {
        const PollResult r = sub->receive_batch([&](std::span<const Message> batch) {
            for (const Message& m : batch) got.emplace_back(m.text());
        }, std::chrono::seconds(5));
        ASSERT_EQ(r.status, ReceiveStatus::ok);
    }
    later.join();
    EXPECT_EQ(got, (std::vector<std::string>{"a", "b", "c"}));
}

// ---- in-place reads of large messages by ephemeral readers ----

// Whether `m` is a view into the subscriber's own mapping of the ring (read in place), not a copy.
bool in_ring(Subscriber& sub, const Message& m) {
    const Segment& seg = Access::core(sub).seg;
    return m.payload.data() >= seg.ring() && m.payload.data() < seg.ring() + seg.capacity();
}

TEST(InPlace, ALargeMessageIsReadInPlaceAndHeldWhileTheHandlerRuns) {
    LocalTopic t(config(64 * 1024, OnFull::fail));
    SubscribeOptions o;
    o.in_place_from = 1024;
    auto sub = t.subscriber(o);
    auto pub = t.publisher();
    ASSERT_EQ(pub.publish(std::string(4000, 'L')), PublishStatus::ok);
    ASSERT_EQ(pub.publish(std::string(100, 's')), PublishStatus::ok);  // small: copied
    uint64_t refused = 0, published = 0;
    std::vector<bool> placed;
    (void)sub->poll([&](const Message& m) {
        placed.push_back(in_ring(*sub, m));
        if (m.payload.size() != 4000) return;
        // Publishers may not pass a ring beyond the record while we read it: a fail topic refuses.
        for (int i = 0; i < 200; ++i) {
            const auto st = pub.publish(std::string(1000, char('a' + i % 26)));
            if (st == PublishStatus::would_block) ++refused;
            if (st == PublishStatus::ok) ++published;
        }
        EXPECT_EQ(m.text(), std::string(4000, 'L'));  // whole, after all that publishing
    }, 2);
    EXPECT_EQ(placed, (std::vector<bool>{true, false}));
    EXPECT_GT(refused, 0u);
    EXPECT_GT(published, 0u);
    EXPECT_LT(published, 70u);  // about a ring's worth of 1 KiB messages, not more
    EXPECT_EQ(t.segment().consumer_slot(0).hold.load(), 0u);  // let go after the handler
    EXPECT_EQ(pub.publish(std::string(1000, 'x')), PublishStatus::ok);  // and publishers go on
}

TEST(InPlace, NeverOnOverwriteTopicsNorWhenOffNorNearTheTail) {
    for (OnFull policy : {OnFull::overwrite, OnFull::block}) {
        for (uint32_t from : {0u, 1024u}) {
            LocalTopic t(config(64 * 1024, policy));
            SubscribeOptions o;
            o.in_place_from = from;
            auto sub = t.subscriber(o);
            auto pub = t.publisher();
            ASSERT_EQ(pub.publish(std::string(4000, 'L')), PublishStatus::ok);
            bool placed = false;
            (void)sub->poll([&](const Message& m) { placed = in_ring(*sub, m); }, 1);
            EXPECT_EQ(placed, policy == OnFull::block && from != 0);
        }
    }
    // A record more than three quarters of a ring behind the tail cannot be held safely: copied.
    LocalTopic t(config(64 * 1024, OnFull::block));
    SubscribeOptions o;
    o.in_place_from = 1024;
    auto sub = t.subscriber(o);
    auto pub = t.publisher();
    for (int i = 0; i < 14; ++i) ASSERT_EQ(pub.publish(std::string(4000, char('0' + i))), PublishStatus::ok);  // 56 KiB
    std::vector<bool> placed;
    (void)sub->poll([&](const Message& m) {
        placed.push_back(in_ring(*sub, m));
        EXPECT_EQ(m.text().find_first_not_of(m.text()[0]), std::string_view::npos);
    }, 14);
    ASSERT_EQ(placed.size(), 14u);
    EXPECT_FALSE(placed.front());  // the first ones lie too far behind the tail
    EXPECT_TRUE(placed.back());
}

// A named producer's stamp takes a record past max_message: a reader that copies (one message at
// a time, or in a batch) has room for it. (Under ASan a short copy buffer is a heap overflow.)
// Payloads of 256 KiB and more are copied into the ring in prefetched steps (copy_into_ring):
// every byte arrives, whatever the size's remainder against the step, across wraps.
TEST(Ring, LargePayloadsArriveByteForByteAcrossWraps) {
    TopicConfig c = config(16u << 20, OnFull::overwrite);
    c.max_message = (2u << 20) - 32;  // an eighth of the ring, less a record header
    LocalTopic t(c);
    ASSERT_TRUE(t.ok()) << t.error().message;
    auto pub = t.publisher();
    auto sub = t.subscriber();
    ASSERT_TRUE(sub.has_value());
    const std::size_t sizes[] = {256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, 1u << 20, (1u << 20) + 4095, (2u << 20) - 32};
    for (int lap = 0; lap < 3; ++lap)
        for (std::size_t n : sizes) {
            std::string msg(n, '\0');
            for (std::size_t i = 0; i < n; ++i) msg[i] = char((i * 131 + n + std::size_t(lap)) & 0xff);
            ASSERT_EQ(pub.publish(msg), PublishStatus::ok);
            auto got = drain(*sub, 1 << 22);
            ASSERT_EQ(got.size(), 1u);
            ASSERT_EQ(got[0].size(), n);
            ASSERT_TRUE(got[0] == msg) << "size " << n << " lap " << lap;
        }
    EXPECT_EQ(sub->lost(), 0u);
}

TEST(Ring, AStampedMessageOfMaxMessageIsCopiedWhole) {
    TopicConfig c = config(1u << 20);
    c.max_message = 4096;
    LocalTopic t(c);
    PublisherOptions po;
    po.producer = "a-producer-with-a-rather-long-name-0123456789";
    auto pub = t.publisher(po);
    auto one = t.subscriber();
    auto batched = t.subscriber();
    const std::string big(4096, 'z');
    ASSERT_EQ(pub.publish(big), PublishStatus::ok);
    ASSERT_EQ(pub.publish(big), PublishStatus::ok);
    EXPECT_EQ(drain(*one), (std::vector<std::string>{big, big}));
    std::vector<std::string> got;
    while (got.size() < 2) {
        const PollResult r = batched->poll_batch([&](std::span<const Message> batch) {
            for (const Message& m : batch) got.emplace_back(m.text());
        });
        ASSERT_EQ(r.status, ReceiveStatus::ok);
    }
    EXPECT_EQ(got, (std::vector<std::string>{big, big}));
}

TEST(Ring, AHalfWrittenRecordIsInvisibleUntilCommitted) {
    LocalTopic t(config(65536));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    Loan loan;
    ASSERT_EQ(pub.loan(5, loan), PublishStatus::ok);
    std::memcpy(loan.data().data(), "hello", 5);
    EXPECT_TRUE(drain(*sub).empty());  // claimed, payload written, not committed
    ASSERT_EQ(pub.publish("after"), PublishStatus::ok);
    EXPECT_TRUE(drain(*sub).empty());  // a later commit does not expose the open claim
    EXPECT_EQ(loan.commit(), PublishStatus::ok);
    EXPECT_EQ(drain(*sub), (std::vector<std::string>{"hello", "after"}));
    EXPECT_EQ(loan.commit(), PublishStatus::aborted);
}

TEST(Ring, ARecordWithEveryFieldButTheCommitWordIsInvisible) {
    LocalTopic t(config(65536));
    auto sub = t.subscriber();
    const Ring ring(t.segment());
    // Forge a complete record at position 0 and a tail past it, with the commit word wrong.
    auto* h = ring.header_at(0);
    h->length = 4;
    h->type = uint16_t(RecordType::data);
    h->id = 0;
    std::memcpy(ring.payload_at(0), "fake", 4);
    ASSERT_TRUE(ring.cas_tail({0, 0}, {64, 1}));
    h->commit.store(layout::commit_word(0) ^ 1);
    EXPECT_TRUE(drain(*sub).empty());
    h->commit.store(layout::commit_word(0));
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"fake"});
}

TEST(Ring, ARecordFromAnEarlierLapIsNotMistakenForANewOne) {
    const uint64_t cap = 65536;
    LocalTopic t(config(cap, OnFull::overwrite));
    auto pub = t.publisher();
    const Ring ring(t.segment());
    ASSERT_EQ(pub.publish("lap0"), PublishStatus::ok);  // a whole, committed record at offset 0
    // Move the tail a whole lap on without writing: position cap now maps to offset 0, where the
    // committed record of position 0 still sits.
    ASSERT_TRUE(ring.cas_tail(ring.read_tail(), {cap, 1}));
    auto sub = t.subscriber();  // starts at latest: position cap
    EXPECT_TRUE(drain(*sub).empty());
    ASSERT_EQ(pub.publish("lap1"), PublishStatus::ok);
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"lap1"});
}

TEST(Ring, AnAbandonedLoanBecomesASkipRecord) {
    LocalTopic t(config(65536));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    {
        Loan loan;
        ASSERT_EQ(pub.loan(16, loan), PublishStatus::ok);
        EXPECT_EQ(loan.id(), 0u);
    }  // dropped without commit
    ASSERT_EQ(pub.publish("next"), PublishStatus::ok);
    std::vector<uint64_t> ids;
    EXPECT_EQ(drain(*sub, 100, &ids), std::vector<std::string>{"next"});
    EXPECT_EQ(ids, std::vector<uint64_t>{1});
    EXPECT_EQ(t.segment().producers().aborted_loans.load(), 1u);
    EXPECT_EQ(sub->lost(), 0u);
}

TEST(Ring, AnOverrunEphemeralSubscriberReportsExactlyWhatItLost) {
    const uint64_t cap = 65536;
    LocalTopic t(config(cap, OnFull::block));  // ephemeral readers never gate, even on block
    auto pub = t.publisher();
    auto sub = t.subscriber();
    const uint64_t total = 5000;  // 64-byte records: 320000 bytes, about five laps
    for (uint64_t i = 0; i < total; ++i) ASSERT_EQ(pub.publish(std::to_string(i)), PublishStatus::ok);
    std::vector<uint64_t> ids;
    uint64_t lost_before = 0;
    auto got = drain(*sub, 1 << 20, &ids, &lost_before);
    ASSERT_FALSE(got.empty());
    EXPECT_GT(sub->lost(), 0u);
    EXPECT_EQ(sub->lost(), lost_before);
    EXPECT_EQ(sub->lost() + got.size(), total);
    EXPECT_EQ(ids.front(), sub->lost());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        EXPECT_EQ(ids[i], ids.front() + i);
        EXPECT_EQ(got[i], std::to_string(ids[i]));
    }
    // What it kept is the newest data: at least three quarters of a ring.
    EXPECT_GE(got.size() * 64, cap * 3 / 4 - cap / 256);
}

// `empty` is an honest answer: a reader that producers lapped while it was polling an empty ring
// says so on its very next poll, however many empty polls came before (a drain loop that stops at
// the first `empty` must not miss what is there). Records of 160 bytes put no record boundary of
// the later laps at the reader's position, so only the tail tells.
TEST(Ring, ALappedReaderIsNeverToldTheRingIsEmpty) {
    const uint64_t cap = 65536;
    LocalTopic t(config(cap, OnFull::overwrite));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    ASSERT_EQ(pub.publish("first"), PublishStatus::ok);
    auto noop = [](const Message&) {};
    ASSERT_EQ(sub->poll(noop).status, ReceiveStatus::ok);
    for (int i = 0; i < 5; ++i) ASSERT_EQ(sub->poll(noop).status, ReceiveStatus::empty);
    const std::string payload(128, 'x');  // a 160-byte record
    for (uint64_t i = 0; i < 2 * cap / 160; ++i) ASSERT_EQ(pub.publish(payload), PublishStatus::ok);
    const auto r = sub->poll(noop);
    EXPECT_EQ(r.status, ReceiveStatus::ok);
    EXPECT_GT(sub->lost(), 0u);
}

// Processing time: one delivering poll in 16 notes its delivery, and the ack that covers it
// records the time taken in the slot, which statistics turn into percentiles.
TEST(Ring, ProcessingTimeIsSampledFromDeliveryToAck) {
    LocalTopic t(config(65536, OnFull::block));
    auto pub = t.publisher();
    SubscribeOptions o;
    o.durable_name = "timed";
    o.auto_ack = false;
    auto sub = t.subscriber(o);
    ASSERT_TRUE(sub.has_value());
    for (int i = 0; i < 64; ++i) {
        ASSERT_EQ(pub.publish("job"), PublishStatus::ok);
        ASSERT_EQ(sub->poll([](const Message&) {}, 1).count, 1u);
        std::this_thread::sleep_for(std::chrono::microseconds(200));  // "processing"
        sub->ack_delivered();
    }
    const TopicStats stats = collect_stats(t.segment());
    ASSERT_EQ(stats.subscriptions.size(), 1u);
    const auto& s = stats.subscriptions[0];
    EXPECT_EQ(s.processing_samples, 64u / SubscriberCore::kSampleEvery);
    ASSERT_TRUE(s.processing_p50_ns.has_value());
    EXPECT_GE(*s.processing_p50_ns, 200'000u);  // the upper edge of its bucket: at least the time slept
    EXPECT_GE(s.processing_sum_ns, s.processing_samples * 200'000);
}

TEST(Ring, ACorruptLengthIsReportedNotFollowed) {
    LocalTopic t(config(65536));
    auto pub = t.publisher();
    SubscribeOptions o = durable("d");
    auto sub = t.subscriber(o);
    ASSERT_EQ(pub.publish("ok"), PublishStatus::ok);
    const Ring ring(t.segment());
    ring.header_at(0)->length = 0xFFFFFFF0u;  // hostile: points far outside the ring
    auto r = sub->poll([](const Message&) { FAIL() << "corrupt record delivered"; });
    EXPECT_EQ(r.status, ReceiveStatus::corrupt);
    EXPECT_EQ(sub->poll([](const Message&) {}).status, ReceiveStatus::corrupt);  // stays stopped
}

TEST(Ring, ACorruptTypeOrIdIsReported) {
    LocalTopic t(config(65536));
    auto pub = t.publisher();
    auto sub = t.subscriber(durable("d"));
    ASSERT_EQ(pub.publish("a"), PublishStatus::ok);
    const Ring ring(t.segment());
    ring.header_at(0)->id = 77;
    EXPECT_EQ(sub->poll([](const Message&) {}).status, ReceiveStatus::corrupt);
    auto sub2 = t.subscriber(durable("e", StartFrom::earliest));
    ring.header_at(0)->id = 0;
    ring.header_at(0)->type = 9;
    EXPECT_EQ(sub2->poll([](const Message&) {}).status, ReceiveStatus::corrupt);
}

TEST(Ring, BlockWaitsUntilItsDeadlineThenTimesOut) {
    LocalTopic t(config(4096, OnFull::block));
    PublisherOptions po;
    po.block_timeout = std::chrono::milliseconds(30);
    auto pub = t.publisher(po);
    auto sub = t.subscriber(durable("d"));
    for (int i = 0; i < 4096 / 64; ++i) ASSERT_EQ(pub.publish(std::string(32, 'x')), PublishStatus::ok);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(pub.publish(std::string(32, 'x')), PublishStatus::timed_out);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(30));
}

TEST(Ring, SeekEarliestLatestAndId) {
    LocalTopic t(config(65536));
    auto pub = t.publisher();
    for (int i = 0; i < 100; ++i) ASSERT_EQ(pub.publish(std::to_string(i)), PublishStatus::ok);
    SubscribeOptions o;
    o.from = StartFrom::earliest;
    auto sub = t.subscriber(o);
    EXPECT_EQ(drain(*sub).size(), 100u);
    ASSERT_TRUE(sub->seek(StartFrom::id, 42).has_value());
    std::vector<uint64_t> ids;
    auto got = drain(*sub, 1 << 20, &ids);
    ASSERT_EQ(got.size(), 58u);
    EXPECT_EQ(ids.front(), 42u);
    EXPECT_EQ(got.front(), "42");
    ASSERT_TRUE(sub->seek(StartFrom::earliest).has_value());
    EXPECT_EQ(drain(*sub).size(), 100u);
    ASSERT_TRUE(sub->seek(StartFrom::latest).has_value());
    EXPECT_TRUE(drain(*sub).empty());
    auto bad = sub->seek(StartFrom::id, 1000);
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, Errc::invalid_argument);
    SubscribeOptions from_id;
    from_id.from = StartFrom::id;
    from_id.from_id = 99;
    auto sub2 = t.subscriber(from_id);
    EXPECT_EQ(drain(*sub2), std::vector<std::string>{"99"});
}

TEST(Ring, SeekToAnIdNoLongerRetainedStartsAtTheOldestAndCountsTheGap) {
    LocalTopic t(config(65536, OnFull::overwrite));
    auto pub = t.publisher();
    for (int i = 0; i < 5000; ++i) ASSERT_EQ(pub.publish(std::to_string(i)), PublishStatus::ok);
    SubscribeOptions o;
    o.from = StartFrom::id;
    o.from_id = 10;
    auto sub = t.subscriber(o);
    std::vector<uint64_t> ids;
    uint64_t lost_before = 0;
    auto got = drain(*sub, 1 << 20, &ids, &lost_before);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.back(), 4999u);
    EXPECT_EQ(lost_before, ids.front() - 10);
    EXPECT_EQ(sub->lost(), ids.front() - 10);
}

TEST(Ring, ANewDurableSubscriptionFromEarliestNeverReachesBelowTheJoinFloor) {
    const uint64_t cap = 65536;
    LocalTopic t(config(cap, OnFull::block));
    auto pub = t.publisher();
    for (int i = 0; i < 5000; ++i) ASSERT_EQ(pub.publish(std::to_string(i)), PublishStatus::ok);
    const Ring ring(t.segment());
    auto sub = t.subscriber(durable("late", StartFrom::earliest));
    ASSERT_TRUE(sub.has_value());
    const auto& core = Access::core(*sub);
    EXPECT_GE(core.position, gating_join_floor(ring.tail_position(), cap));
    // The oldest indexed boundary above the floor: within one index block (plus a record) of it.
    EXPECT_LE(core.position, gating_join_floor(ring.tail_position(), cap) + t.segment().index_block() + 64);
    std::vector<uint64_t> ids;
    drain(*sub, 1 << 20, &ids);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.back(), 4999u);
}

TEST(Ring, AckedDurableCursorPersistsInTheSlot) {
    LocalTopic t(config(65536));
    auto pub = t.publisher();
    auto sub = t.subscriber(durable("d"));
    for (int i = 0; i < 10; ++i) ASSERT_EQ(pub.publish(std::to_string(i)), PublishStatus::ok);
    int n = 0;
    Message third;
    auto& core = Access::core(*sub);
    core.options.auto_ack = false;
    (void)sub->poll([&](const Message& m) {
        if (++n == 3) third = m;
    });
    ASSERT_EQ(sub->ack(third), AckStatus::ok);
    const auto& slot = t.segment().consumer_slot(core.slot_index);
    EXPECT_EQ(slot.ack_id.load(), 3u);
    EXPECT_EQ(slot.ack_position.load(), Access::end_position(third));
}

// Publishers check the tail they read: one that is no record boundary (written by someone else)
// makes the publish fail as corrupt instead of writing a padding header past the ring's end.
TEST(Ring, AMisalignedTailIsReportedNotWrittenThrough) {
    LocalTopic t(config(4096, OnFull::overwrite));
    auto pub = t.publisher();
    ASSERT_EQ(pub.publish("fine"), PublishStatus::ok);
    auto& tail = t.segment().producers().tail;
    tail.position = 4096 - 8;  // a padding header here would end 24 bytes past the ring
    EXPECT_EQ(pub.publish("x"), PublishStatus::corrupt);
    Loan loan;
    EXPECT_EQ(pub.loan(8, loan), PublishStatus::corrupt);
    tail.position = 64;  // repaired: publishing goes on
    EXPECT_EQ(pub.publish("again"), PublishStatus::ok);
}

TEST(Ring, ASubscriptionThatCannotStartGivesItsSlotBack) {
    LocalTopic t(config(65536));
    SubscribeOptions ahead = durable("ahead", StartFrom::id);
    ahead.from_id = 1000;  // never published
    for (int i = 0; i < 3; ++i) {
        auto sub = t.subscriber(ahead);
        ASSERT_FALSE(sub.has_value());
        EXPECT_EQ(sub.error().code, Errc::invalid_argument);
    }
    for (uint32_t i = 0; i < t.segment().max_consumers(); ++i)
        EXPECT_EQ(SlotState(t.segment().consumer_slot(i).state.load()), SlotState::free) << "slot " << i;
}

// An ack moves only the cursor of the subscriber that delivered the message, and only for
// messages of its current stream.
TEST(Ring, AnAckIsRefusedForAMessageThisSubscriberDidNotDeliver) {
    LocalTopic t(config(65536));
    auto pub = t.publisher();
    auto mine = t.subscriber(durable("mine"));
    auto other = t.subscriber(durable("other"));
    for (int i = 0; i < 10; ++i) ASSERT_EQ(pub.publish(std::to_string(i)), PublishStatus::ok);
    Access::core(*mine).options.auto_ack = false;
    Access::core(*other).options.auto_ack = false;
    Message last_of_other;
    (void)other->poll([&](const Message& m) { last_of_other = m; });
    const auto& slot = t.segment().consumer_slot(Access::core(*mine).slot_index);
    EXPECT_EQ(mine->ack(last_of_other), AckStatus::not_delivered);
    EXPECT_EQ(mine->ack(Message{}), AckStatus::not_delivered);  // made by hand
    EXPECT_EQ(slot.ack_id.load(), 0u);

    Message fifth;
    (void)mine->poll([&](const Message& m) {
        if (m.id == 5) fifth = m;
    });
    ASSERT_TRUE(mine->seek(StartFrom::earliest).has_value());
    EXPECT_EQ(mine->ack(fifth), AckStatus::stale);  // delivered before the seek
    EXPECT_EQ(slot.ack_id.load(), 0u);
    Message again;
    (void)mine->poll([&](const Message& m) {
        if (m.id == 5) again = m;
    });
    EXPECT_EQ(mine->ack(again), AckStatus::ok);
    EXPECT_EQ(slot.ack_id.load(), 6u);
}

}  // namespace
}  // namespace shmbus::detail

