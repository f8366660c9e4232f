// Named (idempotent) producers over an in-process topic: every message carries its producer's
// stamp, a sequence not above the last committed one writes nothing, and shmbusd's settlement of a
// dead holder's pending publish (settle_pending) is driven by setting the sequence table and the
// ring directly: a committed record counts, a half-written one never does.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "local_topic.h"
#include "core/ring.h"
#include "record/record_view.h"
#include "ring_helpers.h"
#include "supervisor/sequences.h"

namespace shmbus::detail {
namespace {

struct Seen {
    std::string producer;
    uint64_t sequence;
    std::string payload;
};

std::vector<Seen> drain_stamps(Subscriber& s) {
    std::vector<Seen> out;
    while (s.poll([&](const Message& m) { out.push_back({std::string(m.producer), m.sequence, std::string(m.text())}); }, 64)
               .status == ReceiveStatus::ok) {
    }
    return out;
}

PublisherOptions named(const char* name) {
    PublisherOptions o;
    o.producer = name;
    return o;
}

TEST(NamedProducer, StampsEveryMessageAndRefusesWhatIsNotAboveTheLastCommitted) {
    LocalTopic topic(config(64 * 1024));
    auto sub = topic.subscriber(durable("all", StartFrom::earliest));
    ASSERT_TRUE(sub);
    auto pub = topic.publisher(named("orders-api"));
    EXPECT_EQ(pub.last_sequence(), 0u);
    EXPECT_EQ(pub.publish("a"), PublishStatus::ok);                 // numbered 1
    EXPECT_EQ(pub.publish_sequence(5, "b"), PublishStatus::ok);     // gaps are allowed
    EXPECT_EQ(pub.publish_sequence(5, "b"), PublishStatus::duplicate);
    EXPECT_EQ(pub.publish_sequence(3, "x"), PublishStatus::duplicate);
    EXPECT_EQ(pub.publish_sequence(0, "x"), PublishStatus::duplicate);
    const Header h[] = {{"k", "v"}};
    EXPECT_EQ(pub.publish("c", h), PublishStatus::ok);              // numbered 6
    Loan loan;
    ASSERT_EQ(pub.loan(1, loan), PublishStatus::ok);
    EXPECT_EQ(loan.sequence(), 7u);
    loan.data()[0] = std::byte{'d'};
    EXPECT_EQ(loan.commit(), PublishStatus::ok);
    EXPECT_EQ(pub.last_sequence(), 7u);

    auto anonymous = topic.publisher({}, 1);
    EXPECT_EQ(anonymous.publish_sequence(9, "x"), PublishStatus::no_producer);
    EXPECT_EQ(anonymous.publish("e"), PublishStatus::ok);

    const auto seen = drain_stamps(*sub);
    ASSERT_EQ(seen.size(), 5u);
    const std::vector<std::pair<uint64_t, std::string>> want{{1, "a"}, {5, "b"}, {6, "c"}, {7, "d"}};
    for (std::size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(seen[i].producer, "orders-api");
        EXPECT_EQ(seen[i].sequence, want[i].first);
        EXPECT_EQ(seen[i].payload, want[i].second);
    }
    EXPECT_EQ(seen[4].producer, "");
    EXPECT_EQ(seen[4].sequence, 0u);
    EXPECT_EQ(seen[4].payload, "e");
}

TEST(NamedProducer, TheStampDoesNotCountAgainstMaxMessage) {
    TopicConfig c = config(64 * 1024);
    c.max_message = 64;
    LocalTopic topic(c);
    auto pub = topic.publisher(named("a-rather-long-producer-name-of-47-characters-xx"));
    EXPECT_EQ(pub.publish(std::string(64, 'x')), PublishStatus::ok);
    EXPECT_EQ(pub.publish(std::string(65, 'x')), PublishStatus::too_large);
}

TEST(NamedProducer, ALoanOvertakenByALaterSequenceIsNotPublished) {
    LocalTopic topic(config(64 * 1024));
    auto sub = topic.subscriber(durable("all", StartFrom::earliest));
    auto pub = topic.publisher(named("p"));
    Loan loan;
    ASSERT_EQ(pub.loan(1, loan), PublishStatus::ok);
    ASSERT_EQ(loan.sequence(), 1u);
    loan.data()[0] = std::byte{'l'};
    EXPECT_EQ(pub.publish_sequence(2, "later"), PublishStatus::ok);
    EXPECT_EQ(loan.commit(), PublishStatus::duplicate);
    const auto seen = drain_stamps(*sub);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].payload, "later");
}

// A holder's publish as far as `commit`: claimed and stamped, then marked pending; the commit
// word is stored only when `commit` is true (a holder killed before it leaves a half-written record).
uint64_t pending_publish(Publisher& pub, uint64_t sequence, bool commit) {
    auto& core = Access::core(pub);
    PublisherCore::MessageClaim claim;
    EXPECT_EQ(core.claim_message(sequence, 3, std::chrono::seconds(1), claim), PublishStatus::ok);
    std::memcpy(claim.data, "abc", 3);
    core.named->pending_position.store(claim.position + 1);
    core.named->pending_sequence.store(sequence);
    if (commit) {
        EXPECT_EQ(core.commit_record(claim.position, layout::RecordType::data), PublishStatus::ok);
    }
    return claim.position;
}

TEST(SettlePending, ACommittedRecordCountsAsCommitted) {
    LocalTopic topic(config(64 * 1024));
    auto pub = topic.publisher(named("p"));
    ASSERT_EQ(pub.publish_sequence(4, "x"), PublishStatus::ok);
    pending_publish(pub, 9, true);  // killed after its commit word, before telling the table
    const auto entry = find_sequence_entry(topic.segment(), "p");
    ASSERT_TRUE(entry);
    auto& e = topic.segment().sequence_entry(*entry);
    EXPECT_EQ(e.committed.load(), 4u);
    EXPECT_TRUE(settle_pending(topic.segment(), *entry));
    EXPECT_EQ(e.committed.load(), 9u);
    EXPECT_EQ(e.pending_sequence.load(), 0u);
}

TEST(SettlePending, AHalfWrittenRecordIsNeverCounted) {
    LocalTopic topic(config(64 * 1024));
    auto pub = topic.publisher(named("p"));
    ASSERT_EQ(pub.publish_sequence(4, "x"), PublishStatus::ok);
    pending_publish(pub, 9, false);
    const auto entry = find_sequence_entry(topic.segment(), "p");
    auto& e = topic.segment().sequence_entry(*entry);
    EXPECT_FALSE(settle_pending(topic.segment(), *entry));
    EXPECT_EQ(e.committed.load(), 4u);
    EXPECT_EQ(e.pending_sequence.load(), 0u);
}

TEST(SettlePending, ARecordOfAnotherSequenceProducerOrPositionIsNotCounted) {
    LocalTopic topic(config(64 * 1024));
    auto pub = topic.publisher(named("p"));
    auto other = topic.publisher(named("q"), 1);
    const auto entry = *find_sequence_entry(topic.segment(), "p");
    auto& e = topic.segment().sequence_entry(entry);
    const uint64_t mine = pending_publish(pub, 3, true);

    e.pending_sequence.store(7);  // the record holds 3, not 7
    EXPECT_FALSE(settle_pending(topic.segment(), entry));
    const uint64_t theirs = pending_publish(other, 7, true);
    e.pending_position.store(theirs + 1);  // q's record with sequence 7
    e.pending_sequence.store(7);
    EXPECT_FALSE(settle_pending(topic.segment(), entry));
    e.pending_position.store(mine + 2);  // not a record boundary
    e.pending_sequence.store(3);
    EXPECT_FALSE(settle_pending(topic.segment(), entry));
    e.pending_position.store(mine + 1 + 64 * 1024);  // a lap later: that record's commit word does not match
    e.pending_sequence.store(3);
    EXPECT_FALSE(settle_pending(topic.segment(), entry));
    EXPECT_EQ(e.committed.load(), 0u);
}

TEST(SequenceTable, ANameIsForgottenOnlyAfterEveryOtherEntryWasUsed) {
    TopicConfig c = config(64 * 1024);
    c.max_producers = 1;  // 4 entries
    LocalTopic topic(c);
    const Segment& seg = topic.segment();
    ASSERT_EQ(seg.sequence_entries(), layout::kSequenceEntriesPerProducer);
    uint64_t now = 1000;
    auto use = [&](const std::string& name) {
        auto e = hold_sequence_entry(seg, name, 0);
        ASSERT_TRUE(e) << e.error().message;
        seg.sequence_entry(*e).committed.store(5);
        release_sequence_entries(seg, 0, ++now);
    };
    use("p0");
    for (int i = 1; i < 4; ++i) use("p" + std::to_string(i));
    ASSERT_TRUE(find_sequence_entry(seg, "p0"));  // 3 other names: still remembered
    EXPECT_EQ(seg.sequence_entry(*find_sequence_entry(seg, "p0")).committed.load(), 5u);
    use("p4");                                       // the fourth pushes out the oldest
    EXPECT_FALSE(find_sequence_entry(seg, "p0"));
    auto again = hold_sequence_entry(seg, "p0", 0);
    ASSERT_TRUE(again);
    EXPECT_EQ(seg.sequence_entry(*again).committed.load(), 0u);  // starts over
}

TEST(SequenceTable, EveryEntryHeldRefusesANewName) {
    TopicConfig c = config(64 * 1024);
    c.max_producers = 1;
    LocalTopic topic(c);
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(hold_sequence_entry(topic.segment(), "p" + std::to_string(i), 0));
    auto refused = hold_sequence_entry(topic.segment(), "p4", 0);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Errc::no_free_slot);
}

// A stamp as a hostile publisher could leave it: never read past the record, and the payload stays whole.
TEST(ProducerStamp, ADamagedStampIsIgnored) {
    auto record = [](uint16_t name_length, std::size_t bytes) {
        std::vector<std::byte> data(bytes, std::byte{'z'});
        layout::ProducerStamp s{42, name_length, 0, 0};
        std::memcpy(data.data(), &s, std::min(sizeof s, bytes));
        return data;
    };
    for (const auto& [len, size] : std::vector<std::pair<uint16_t, std::size_t>>{{0, 40}, {48, 100}, {40, 30}, {9, 20}, {1, 8}}) {
        const auto data = record(len, size);
        Message m;
        split_record(data.data(), uint32_t(data.size()), layout::kRecordHasProducer, m);
        EXPECT_EQ(m.sequence, 0u) << len << " " << size;
        EXPECT_TRUE(m.producer.empty());
        EXPECT_EQ(m.payload.size(), size);
    }
    auto good = record(3, 24 + 5);
    std::memcpy(good.data() + 16, "abc", 3);
    Message m;
    split_record(good.data(), uint32_t(good.size()), layout::kRecordHasProducer, m);
    EXPECT_EQ(m.producer, "abc");
    EXPECT_EQ(m.sequence, 42u);
    EXPECT_EQ(m.payload.size(), 5u);
}

}  // namespace
}  // namespace shmbus::detail
