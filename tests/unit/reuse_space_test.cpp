// PublisherOptions::reuse_space: a large message goes to the ring's start, where the previous one
// lies, once every reader has read everything; and never when a reader present still wants what the
// ring holds. Set up directly on a segment without a daemon; the ring's state is read back directly.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/ring.h"
#include "local_topic.h"
#include "ring_helpers.h"
#include "supervisor/recovery.h"

namespace shmbus::detail {
namespace {

using layout::RecordType;

constexpr uint64_t kCapacity = 16u << 20;
constexpr std::size_t kLarge = 1u << 20;

TopicConfig large_topic(OnFull on_full = OnFull::block) {
    TopicConfig c = config(kCapacity, on_full);
    c.max_message = kLarge;
    return c;
}

PublisherOptions reusing() {
    PublisherOptions o;
    o.reuse_space = true;
    return o;
}

// Every byte differs with the message's number and the byte's place.
std::string message(int n, std::size_t size = kLarge) {
    std::string m(size, '\0');
    for (std::size_t i = 0; i < size; ++i) m[i] = char((i * 131 + std::size_t(n) * 7) & 0xff);
    return m;
}

// Payloads compared without printing a megabyte on failure.
::testing::AssertionResult same(const std::vector<std::string>& got, const std::vector<std::string>& want) {
    if (got.size() != want.size()) return ::testing::AssertionFailure() << got.size() << " messages, not " << want.size();
    for (std::size_t i = 0; i < got.size(); ++i)
        if (got[i] != want[i]) return ::testing::AssertionFailure() << "message " << i << " differs (" << got[i].size() << " bytes)";
    return ::testing::AssertionSuccess();
}

// Where in the ring the last record went: the tail's offset less the record's size.
uint64_t last_offset(const Ring& ring, std::size_t size) {
    return (ring.tail_position() - layout::record_size(size)) & (ring.capacity() - 1);
}

// Records of kLarge bytes fit kSlots times in the window they cycle through.
constexpr uint64_t kRecord = layout::record_size(kLarge);
constexpr uint64_t kSlots = kReuseSpaceWindow / kRecord;
static_assert(kSlots == 3);

TEST(ReuseSpace, LargeMessagesCycleThroughTheRingsStartOnceEveryReaderHasReadEverything) {
    for (const OnFull on_full : {OnFull::block, OnFull::overwrite}) {
        LocalTopic t(large_topic(on_full));
        ASSERT_TRUE(t.ok()) << t.error().message;
        const Ring ring(t.segment());
        auto pub = t.publisher(reusing());
        auto reader = t.subscriber();  // ephemeral: reads large messages in place where it may
        auto cursor = t.subscriber(durable("d", StartFrom::earliest));
        ASSERT_TRUE(reader.has_value() && cursor.has_value());
        for (int n = 0; n < 40; ++n) {
            const std::string m = message(n);
            ASSERT_EQ(pub.publish(m), PublishStatus::ok);
            EXPECT_EQ(last_offset(ring, m.size()), uint64_t(n) % kSlots * kRecord) << "message " << n;
            // Each time round, the tail went to the next lap (padding to the ring's end first).
            EXPECT_EQ(ring.tail_position(), uint64_t(n) / kSlots * kCapacity + (uint64_t(n) % kSlots + 1) * kRecord);
            for (Subscriber* s : {&*reader, &*cursor}) {
                const auto got = drain(*s, 1 << 22);
                ASSERT_EQ(got.size(), 1u);
                ASSERT_TRUE(got[0] == m) << "message " << n;
            }
        }
        EXPECT_EQ(reader->lost(), 0u);
        EXPECT_EQ(cursor->lost(), 0u);
        // The padding before message 39 (the first of its lap) carries its id.
        const auto* pad = ring.header_at(12 * kCapacity + kSlots * kRecord);
        EXPECT_EQ(layout::get_field(pad->type), uint16_t(RecordType::padding));
        EXPECT_EQ(layout::get_field(pad->id), 39u);
    }
}

TEST(ReuseSpace, AReaderThatHasNotReadEverythingKeepsTheOrdinaryPlacementAndLosesNothing) {
    LocalTopic t(large_topic(OnFull::overwrite));
    const Ring ring(t.segment());
    auto pub = t.publisher(reusing());
    auto fast = t.subscriber();
    auto slow = t.subscriber();
    std::vector<std::string> sent;
    for (int n = 0; n < 10; ++n) {
        sent.push_back(message(n));
        ASSERT_EQ(pub.publish(sent.back()), PublishStatus::ok);
        EXPECT_EQ(last_offset(ring, kLarge), uint64_t(n) * layout::record_size(kLarge)) << "message " << n;
        EXPECT_EQ(drain(*fast, 1 << 22).size(), 1u);
    }
    EXPECT_TRUE(same(drain(*slow, 1 << 22), sent));  // everything still there, in order
    EXPECT_EQ(slow->lost(), 0u);
    // Now both have read everything: the next one goes to the start.
    ASSERT_EQ(pub.publish(message(10)), PublishStatus::ok);
    EXPECT_EQ(last_offset(ring, kLarge), 0u);
    EXPECT_TRUE(same(drain(*slow, 1 << 22), {message(10)}));
}

TEST(ReuseSpace, AnUnackedDurableCursorKeepsTheOrdinaryPlacementAndIsNotHeldUp) {
    LocalTopic t(large_topic(OnFull::block));
    const Ring ring(t.segment());
    auto pub = t.publisher(reusing());
    SubscribeOptions manual = durable("manual", StartFrom::earliest);
    manual.auto_ack = false;
    auto cursor = t.subscriber(manual);
    auto read_and_ack = [&](int n) {
        EXPECT_TRUE(same(drain(*cursor, 1 << 22), {message(n)}));
        cursor->ack_delivered();
    };
    for (int n = 0; n <= 3; ++n) {
        ASSERT_EQ(pub.publish(message(n)), PublishStatus::ok);
        read_and_ack(n);
    }
    EXPECT_EQ(last_offset(ring, kLarge), 0u);  // message 3 went round
    ASSERT_EQ(pub.publish(message(4)), PublishStatus::ok);
    ASSERT_EQ(drain(*cursor, 1 << 22).size(), 1u);  // delivered, not acked
    ASSERT_EQ(pub.publish(message(5)), PublishStatus::ok);
    ASSERT_EQ(pub.publish(message(6)), PublishStatus::ok);  // past the window: not held up, placed after
    EXPECT_EQ(last_offset(ring, kLarge), 3 * kRecord);
    cursor->ack_delivered();
    EXPECT_TRUE(same(drain(*cursor, 1 << 22), {message(5), message(6)}));
    cursor->ack_delivered();
    ASSERT_EQ(pub.publish(message(7)), PublishStatus::ok);
    EXPECT_EQ(last_offset(ring, kLarge), 0u);
    read_and_ack(7);
}

TEST(ReuseSpace, AGroupThatHasNotSettledAMessageKeepsTheOrdinaryPlacement) {
    LocalTopic t(large_topic(OnFull::overwrite));
    const Ring ring(t.segment());
    auto pub = t.publisher(reusing());
    ASSERT_EQ(pub.publish(message(0)), PublishStatus::ok);
    SubscribeOptions g;
    g.auto_ack = false;
    auto member = t.member("workers", g, 1);
    ASSERT_TRUE(member.has_value()) << member.error().message;
    ASSERT_TRUE(same(drain(*member, 1 << 22), {message(0)}));  // taken, not settled
    for (int n = 1; n < 4; ++n) {
        ASSERT_EQ(pub.publish(message(n)), PublishStatus::ok);
        EXPECT_EQ(last_offset(ring, kLarge), uint64_t(n) * layout::record_size(kLarge)) << "message " << n;
    }
}

TEST(ReuseSpace, SmallMessagesAndPublishersWithoutTheOptionFollowTheLastRecord) {
    LocalTopic t(large_topic(OnFull::overwrite));
    const Ring ring(t.segment());
    auto reusing_pub = t.publisher(reusing(), 0);
    auto plain_pub = t.publisher({}, 1);
    auto reader = t.subscriber();
    uint64_t expected_tail = 0;
    for (int n = 0; n < 5; ++n) {  // 6.3 MiB: no ordinary wrap
        const std::string small = message(n, kReuseSpaceFrom - 1);
        ASSERT_EQ(reusing_pub.publish(small), PublishStatus::ok);
        expected_tail += layout::record_size(small.size());
        EXPECT_EQ(ring.tail_position(), expected_tail);
        ASSERT_EQ(plain_pub.publish(message(n)), PublishStatus::ok);
        expected_tail += layout::record_size(kLarge);
        EXPECT_EQ(ring.tail_position(), expected_tail);
        EXPECT_EQ(drain(*reader, 1 << 22).size(), 2u);
    }
    EXPECT_EQ(reader->lost(), 0u);
}

// What the option gives up: a subscription that starts later finds what the window holds, not a
// ring's worth.
TEST(ReuseSpace, ALaterSubscriptionFromTheEarliestFindsAtMostTheWindowsWorth) {
    LocalTopic t(large_topic(OnFull::overwrite));
    auto pub = t.publisher(reusing());
    auto reader = t.subscriber();
    std::vector<std::string> sent;
    for (int n = 0; n < 8; ++n) {
        sent.push_back(message(n));
        ASSERT_EQ(pub.publish(sent.back()), PublishStatus::ok);
        ASSERT_EQ(drain(*reader, 1 << 22).size(), 1u);
    }
    SubscribeOptions from_earliest;
    from_earliest.from = StartFrom::earliest;
    auto late = t.subscriber(from_earliest);
    ASSERT_TRUE(late.has_value());
    std::vector<uint64_t> ids;
    const auto got = drain(*late, 1 << 22, &ids);
    // The newest messages only: those since the last time round (6, 7), and at most what the window
    // still holds of the time before.
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.back(), 7u);
    EXPECT_GE(ids.front(), 8 - kSlots);
    EXPECT_LE(ids.front(), 6u);
    for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], ids.front() + i);
    EXPECT_TRUE(same(got, std::vector<std::string>(sent.begin() + std::ptrdiff_t(ids.front()), sent.end())));
}

// A publisher killed between the padding claim's CAS and its padding: shmbusd seals the padding
// (it is longer than any record's claim), and readers go on to the record at the ring's start.
TEST(ReuseSpace, AnEarlyWrapWhoseOwnerDiedBeforeItsPaddingIsSealedAsPadding) {
    LocalTopic t(large_topic(OnFull::overwrite));
    const Ring ring(t.segment());
    auto pub = t.publisher(reusing(), 1);
    auto reader = t.subscriber();
    ASSERT_EQ(pub.publish(message(0)), PublishStatus::ok);
    ASSERT_EQ(drain(*reader, 1 << 22).size(), 1u);
    // What the dead producer in slot 0 left: the claim announced and won, nothing written.
    const TailSnapshot tail = ring.read_tail();
    const uint64_t end = tail.position + kCapacity - (tail.position & (kCapacity - 1));
    auto& p = t.segment().producer_slot(0);
    p.state.store(uint32_t(layout::ProducerState::active));
    p.claim_end.store(end);
    p.claim_id.store(tail.next_id);
    p.intent.store(tail.position + 1);
    ASSERT_TRUE(ring.cas_tail(tail, {end, tail.next_id}));
    ASSERT_EQ(pub.publish(message(1)), PublishStatus::ok);  // lands at the ring's start, behind the hole
    EXPECT_TRUE(drain(*reader, 1 << 22).empty());          // readers wait at the unwritten padding
    EXPECT_EQ(seal_abandoned_claim(t.segment(), 0, {0}), SealOutcome::sealed);
    EXPECT_TRUE(same(drain(*reader, 1 << 22), {message(1)}));
    EXPECT_EQ(reader->lost(), 0u);
    EXPECT_EQ(p.intent.load(), 0u);
    // A claim of padding alone that stops short of the ring's end is no producer's: left alone.
    const TailSnapshot now = ring.read_tail();
    p.claim_end.store(now.position + longest_claim(kCapacity) + 64);
    p.claim_id.store(now.next_id);
    p.intent.store(now.position + 1);
    ASSERT_TRUE(ring.cas_tail(now, {now.position + longest_claim(kCapacity) + 64, now.next_id}));
    EXPECT_EQ(seal_abandoned_claim(t.segment(), 0, {0}), SealOutcome::nothing);
}

}  // namespace
}  // namespace shmbus::detail
