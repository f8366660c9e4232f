// The recovery actions of shmbusd, driven directly on a segment: what a dead or stalled producer
// leaves in its slot is set by hand (Aeron-style), then the daemon's repair is checked from the
// readers' side.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "local_topic.h"
#include "supervisor/recovery.h"
#include "core/ring.h"
#include "ring_helpers.h"

namespace shmbus::detail {
namespace {

using namespace std::chrono_literals;

TopicConfig revocable(uint64_t capacity, OnFull on_full = OnFull::block) {
    TopicConfig c = config(capacity, on_full);
    c.unblock_timeout = 10ms;
    return c;
}

SealOutcome seal_dead(const Segment& seg, uint32_t slot) { return seal_abandoned_claim(seg, slot, {slot}); }

// Claims [start, end) by hand, as a producer in slot `slot` that announces it and wins the CAS,
// then dies before recording it.
void claim_unrecorded(const Segment& seg, uint32_t slot, uint64_t size) {
    const Ring ring(seg);
    const TailSnapshot tail = ring.read_tail();
    auto& p = seg.producer_slot(slot);
    p.state.store(uint32_t(layout::ProducerState::active));
    p.claim_end.store(tail.position + size);
    p.claim_id.store(tail.next_id);
    p.intent.store(tail.position + 1);
    ASSERT_TRUE(ring.cas_tail(tail, {tail.position + size, tail.next_id + 1}));
}

TEST(Recovery, AnAbandonedClaimIsSealedAsASkipRecord) {
    LocalTopic t(config(4096, OnFull::overwrite));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    auto& slot = t.segment().producer_slot(0);
    ASSERT_EQ(pub.publish("before"), PublishStatus::ok);  // a 64-byte record at 0
    EXPECT_EQ(slot.claim_start.load(), 0u);               // committed claims leave nothing open
    Loan open;
    ASSERT_EQ(pub.loan(100, open), PublishStatus::ok);   // the claim its owner dies holding
    EXPECT_EQ(slot.claim_start.load(), 64u + 1);
    EXPECT_EQ(slot.claim_end.load(), 64u + layout::record_size(100));
    EXPECT_EQ(slot.claim_id.load(), 1u);
    const auto left_open = std::array{slot.claim_start.load(), slot.claim_end.load(), slot.claim_id.load()};
    ASSERT_EQ(pub.publish("after"), PublishStatus::ok);  // another producer's message behind it
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"before"});  // readers wait at the open claim
    // One Publisher records only its latest claim; put back the state the dead owner left.
    slot.claim_end.store(left_open[1]);
    slot.claim_id.store(left_open[2]);
    slot.claim_start.store(left_open[0]);
    EXPECT_EQ(seal_dead(t.segment(), 0), SealOutcome::sealed);
    std::vector<uint64_t> ids;
    EXPECT_EQ(drain(*sub, 100, &ids), std::vector<std::string>{"after"});
    EXPECT_EQ(ids, std::vector<uint64_t>{2});
    EXPECT_EQ(sub->lost(), 0u);
    EXPECT_EQ(t.segment().producers().skip_records.load(), 1u);
    EXPECT_EQ(seal_dead(t.segment(), 0), SealOutcome::nothing);  // once only
    open.abandon();  // rewrites the sealed record as a skip: still a skip, nothing changes
    EXPECT_TRUE(drain(*sub).empty());
}

// Claims `sizes.size()` records in one claim by hand, as publish_batch does, for a producer in
// slot `slot`: announced and won; with `headers`, every header written and the claim recorded;
// the first `committed` records committed. Returns the claim's first position.
uint64_t claim_batch(const Segment& seg, uint32_t slot, const std::vector<uint32_t>& lengths, bool headers, std::size_t committed) {
    const Ring ring(seg);
    const TailSnapshot tail = ring.read_tail();
    uint64_t bytes = 0;
    for (uint32_t l : lengths) bytes += layout::record_size(l);
    auto& p = seg.producer_slot(slot);
    p.state.store(uint32_t(layout::ProducerState::active));
    p.claim_end.store(tail.position + bytes);
    p.claim_id.store(tail.next_id);
    p.intent.store(tail.position + 1);
    EXPECT_TRUE(ring.cas_tail(tail, {tail.position + bytes, tail.next_id + lengths.size()}));
    if (!headers) return tail.position;
    uint64_t pos = tail.position;
    for (std::size_t k = 0; k < lengths.size(); ++k) {
        layout::write_header(*ring.header_at(pos), lengths[k], layout::RecordType::data, tail.next_id + k, 1);
        std::memset(ring.payload_at(pos), 'b', lengths[k]);
        pos += layout::record_size(lengths[k]);
    }
    p.claim_start.store(tail.position + 1);
    pos = tail.position;
    for (std::size_t k = 0; k < committed; ++k) {
        ring.header_at(pos)->commit.store(layout::commit_word(pos));
        pos += layout::record_size(lengths[k]);
    }
    return tail.position;
}

// A batch publisher killed between two commits: the committed messages are delivered, each
// uncommitted one becomes a skip record of its own, and the ids run on without a gap.
TEST(Recovery, ABatchKilledBetweenCommitsIsSealedRecordByRecord) {
    LocalTopic t(config(64 * 1024));
    auto pub = t.publisher({}, 0);
    auto sub = t.subscriber();
    ASSERT_EQ(pub.publish("before"), PublishStatus::ok);  // id 0
    (void)claim_batch(t.segment(), 1, {10, 100, 3, 40, 0}, true, 2);  // ids 1..5, 1 and 2 committed
    ASSERT_EQ(pub.publish("after"), PublishStatus::ok);   // id 6
    std::vector<uint64_t> ids;
    EXPECT_EQ(drain(*sub, 100, &ids).size(), 3u);  // before and the two committed; then it waits
    EXPECT_EQ(ids, (std::vector<uint64_t>{0, 1, 2}));
    EXPECT_EQ(seal_dead(t.segment(), 1), SealOutcome::sealed);
    ids.clear();
    EXPECT_EQ(drain(*sub, 100, &ids), std::vector<std::string>{"after"});
    EXPECT_EQ(ids, std::vector<uint64_t>{6});
    EXPECT_FALSE(sub->poll([](const Message&) {}).status == ReceiveStatus::corrupt);
    EXPECT_EQ(t.segment().producers().skip_records.load(), 3u);
}

// Killed after its claim won but before it wrote any header: the claim is only announced, and
// shmbusd lays it out as one skip record per id it took, which the tail behind it tells.
TEST(Recovery, ABatchOnlyAnnouncedIsSealedWithOneSkipRecordPerId) {
    LocalTopic t(config(64 * 1024));
    auto pub = t.publisher({}, 0);
    auto sub = t.subscriber();
    ASSERT_EQ(pub.publish("before"), PublishStatus::ok);
    (void)claim_batch(t.segment(), 1, {64, 64, 200, 8}, false, 0);  // ids 1..4, nothing written
    ASSERT_EQ(pub.publish("after"), PublishStatus::ok);                 // id 5
    EXPECT_EQ(seal_dead(t.segment(), 1), SealOutcome::sealed);
    std::vector<uint64_t> ids;
    EXPECT_EQ(drain(*sub, 100, &ids), (std::vector<std::string>{"before", "after"}));
    EXPECT_EQ(ids, (std::vector<uint64_t>{0, 5}));
    EXPECT_EQ(sub->lost(), 0u);
    EXPECT_EQ(t.segment().producers().skip_records.load(), 4u);
    // The same at the tail, with nothing behind it: the tail's next id tells how many.
    (void)claim_batch(t.segment(), 2, {30, 30, 30}, false, 0);  // ids 6..8
    EXPECT_EQ(seal_dead(t.segment(), 2), SealOutcome::sealed);
    ASSERT_EQ(pub.publish("last"), PublishStatus::ok);  // id 9
    ids.clear();
    EXPECT_EQ(drain(*sub, 100, &ids), std::vector<std::string>{"last"});
    EXPECT_EQ(ids, std::vector<uint64_t>{9});
}

TEST(Recovery, AnAbandonedClaimAcrossTheWrapSealsItsPaddingToo) {
    LocalTopic t(config(4096, OnFull::overwrite));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    const Ring ring(t.segment());
    while (ring.tail_position() < 4096 - 64) ASSERT_EQ(pub.publish(std::string(32, 'f')), PublishStatus::ok);
    (void)drain(*sub);
    auto& slot = t.segment().producer_slot(0);
    // A claim of padding [4032, 4096) plus a 128-byte record at 4096, id 63, never written.
    const uint64_t start = 4096 - 64;
    const uint64_t end = 4096 + 128;
    ASSERT_TRUE(ring.cas_tail(ring.read_tail(), {end, 64}));
    slot.claim_end.store(end);
    slot.claim_id.store(63);
    slot.claim_start.store(start + 1);
    EXPECT_EQ(seal_dead(t.segment(), 0), SealOutcome::sealed);
    ASSERT_EQ(pub.publish("next"), PublishStatus::ok);
    std::vector<uint64_t> ids;
    EXPECT_EQ(drain(*sub, 100, &ids), std::vector<std::string>{"next"});
    EXPECT_EQ(ids, std::vector<uint64_t>{64});
}

TEST(Recovery, AHostileClaimDescriptionIsIgnored) {
    LocalTopic t(config(4096));
    auto& slot = t.segment().producer_slot(0);
    slot.claim_end.store(1ull << 40);
    slot.claim_id.store(0);
    slot.claim_start.store(1);
    EXPECT_EQ(seal_dead(t.segment(), 0), SealOutcome::nothing);
    slot.claim_end.store(33);
    slot.claim_start.store(1);
    EXPECT_EQ(seal_dead(t.segment(), 0), SealOutcome::nothing);
    slot.intent.store(4096 * 8 + 1);  // announced far beyond the tail: its CAS never won
    EXPECT_EQ(seal_dead(t.segment(), 0), SealOutcome::nothing);
}

// Killed between its winning CAS and recording the claim: the announcement names it.
TEST(Recovery, AClaimOnlyAnnouncedIsSealedOnceNoLiveProducerCanOwnIt) {
    LocalTopic t(config(4096));
    auto pub = t.publisher({}, 0);
    auto sub = t.subscriber();
    ASSERT_EQ(pub.publish("before"), PublishStatus::ok);
    claim_unrecorded(t.segment(), 1, 128);  // the dead producer, slot 1, id 1
    ASSERT_EQ(pub.publish("after"), PublishStatus::ok);
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"before"});
    EXPECT_EQ(seal_dead(t.segment(), 1), SealOutcome::sealed);
    std::vector<uint64_t> ids;
    EXPECT_EQ(drain(*sub, 100, &ids), std::vector<std::string>{"after"});
    EXPECT_EQ(ids, std::vector<uint64_t>{2});
}

// Killed after writing its payload but before its header (publish() writes a small record's
// header last, just before the commit): the header's bytes are still the last lap's record, and
// the claim, only announced, is sealed whole as one skip record.
TEST(Recovery, AClaimWithItsPayloadWrittenButNotItsHeaderIsSealedWhole) {
    LocalTopic t(config(4096, OnFull::overwrite));
    auto pub = t.publisher({}, 0);
    for (int i = 0; i < 100; ++i) ASSERT_EQ(pub.publish("a lap of records"), PublishStatus::ok);  // 6400 bytes: a lap
    auto sub = t.subscriber();
    ASSERT_TRUE(sub.has_value());
    ASSERT_EQ(pub.publish("before"), PublishStatus::ok);  // id 100
    const Ring ring(t.segment());
    const uint64_t start = ring.read_tail().position;
    RecordInfo stale{};
    ASSERT_EQ(ring.inspect(start - ring.capacity(), stale), RecordCheck::ready);  // the header there is last lap's
    ASSERT_LT(stale.id, 100u);
    claim_unrecorded(t.segment(), 1, 128);  // the dead producer, slot 1, id 101
    std::memset(ring.payload_at(start), 'p', 128 - sizeof(layout::RecordHeader));  // its payload, and no header
    ASSERT_EQ(pub.publish("after"), PublishStatus::ok);
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"before"});  // the unwritten header holds readers back
    EXPECT_EQ(seal_dead(t.segment(), 1), SealOutcome::sealed);
    std::vector<uint64_t> ids;
    EXPECT_EQ(drain(*sub, 100, &ids), std::vector<std::string>{"after"});
    EXPECT_EQ(ids, std::vector<uint64_t>{102});
    EXPECT_EQ(t.segment().producers().skip_records.load(), 1u);
}

TEST(Recovery, AnAnnouncedClaimThatALiveProducerAlsoAnnouncedWaits) {
    LocalTopic t(config(4096));
    auto pub = t.publisher({}, 0);
    auto sub = t.subscriber();
    const uint64_t start = Ring(t.segment()).tail_position();
    claim_unrecorded(t.segment(), 1, 128);
    auto& live = t.segment().producer_slot(2);  // a live producer in its window, same position
    live.state.store(uint32_t(layout::ProducerState::active));
    live.intent.store(start + 1);
    EXPECT_EQ(seal_dead(t.segment(), 1), SealOutcome::retry_later);
    EXPECT_EQ(t.segment().producer_slot(1).intent.load(), start + 1);  // kept until settled
    EXPECT_EQ(seal_dead(t.segment(), 1), SealOutcome::retry_later);
    live.intent.store(start + 128 + 1);  // it lost that CAS and moved on: the claim was the dead one's
    EXPECT_EQ(seal_dead(t.segment(), 1), SealOutcome::sealed);
    EXPECT_EQ(t.segment().producer_slot(1).intent.load(), 0u);
    live.intent.store(0);
    ASSERT_EQ(pub.publish("after"), PublishStatus::ok);
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"after"});
}

TEST(Recovery, AnAnnouncementThatDoesNotEndAtABoundaryIsNotTrusted) {
    LocalTopic t(config(4096));
    auto pub = t.publisher({}, 0);
    auto sub = t.subscriber();
    claim_unrecorded(t.segment(), 1, 256);  // really 256 bytes...
    t.segment().producer_slot(1).claim_end.store(128);  // ...but the slot says 128
    ASSERT_EQ(pub.publish("after"), PublishStatus::ok);
    EXPECT_EQ(seal_dead(t.segment(), 1), SealOutcome::retry_later);
    EXPECT_TRUE(drain(*sub).empty());  // nothing was written over
}

TEST(Recovery, TheAnnouncementOfACommittedClaimIsLeftAlone) {
    LocalTopic t(config(4096));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    ASSERT_EQ(pub.publish("kept"), PublishStatus::ok);
    EXPECT_NE(t.segment().producer_slot(0).intent.load(), 0u);
    EXPECT_EQ(seal_dead(t.segment(), 0), SealOutcome::nothing);
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"kept"});
}

// ---- unblock-timeout: a live producer's claim taken back ----

TEST(Recovery, AStalledClaimIsTakenBackAndItsLateCommitRefused) {
    LocalTopic t(revocable(4096));
    auto stalled = t.publisher({}, 0);
    auto other = t.publisher({}, 1);
    auto sub = t.subscriber();
    Loan loan;
    ASSERT_EQ(stalled.loan(16, loan), PublishStatus::ok);
    ASSERT_EQ(other.publish("after"), PublishStatus::ok);
    EXPECT_TRUE(drain(*sub).empty());
    auto& slot = t.segment().producer_slot(0);
    const uint64_t tag = slot.claim_start.load();
    ASSERT_TRUE(take_back_stalled_claim(t.segment(), 0, tag));
    EXPECT_EQ(slot.revoked.load(), tag);
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"after"});
    std::memcpy(loan.data().data(), "late writes land", 16);  // harmless: nobody reads them
    EXPECT_EQ(loan.commit(), PublishStatus::revoked);
    EXPECT_EQ(slot.revoked.load(), 0u);
    EXPECT_EQ(t.segment().producers().late_commits.load(), 1u);
    EXPECT_TRUE(drain(*sub).empty());
    ASSERT_EQ(stalled.publish("again"), PublishStatus::ok);  // the publisher carries on
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"again"});
}

// A second loan on the same Publisher replaces the first in the slot; the first, taken back
// while it was the recorded one, is still refused. One claim per producer is taken back at a time.
TEST(Recovery, AnOlderLoanTakenBackIsRefusedAndOnlyOneClaimIsTakenBackAtATime) {
    LocalTopic t(revocable(4096));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    auto& slot = t.segment().producer_slot(0);
    Loan first, second;
    ASSERT_EQ(pub.loan(8, first), PublishStatus::ok);
    ASSERT_TRUE(take_back_stalled_claim(t.segment(), 0, slot.claim_start.load()));
    ASSERT_EQ(pub.loan(8, second), PublishStatus::ok);
    EXPECT_FALSE(take_back_stalled_claim(t.segment(), 0, slot.claim_start.load()));  // the first is unnoticed yet
    std::memcpy(second.data().data(), "second!!", 8);
    EXPECT_EQ(second.commit(), PublishStatus::ok);
    EXPECT_EQ(first.commit(), PublishStatus::revoked);
    EXPECT_EQ(slot.revoked.load(), 0u);
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"second!!"});
}

// shmbusd died between taking a claim back and sealing it: the late commit seals it itself, and
// a successor daemon finishes (or undoes) what it finds half done.
TEST(Recovery, ATakeBackLeftHalfDoneIsFinishedByTheLateCommitOrTheNextDaemon) {
    LocalTopic t(revocable(4096));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    auto& slot = t.segment().producer_slot(0);
    auto take_without_sealing = [&] {
        const uint64_t tag = slot.claim_start.load();
        slot.revoked.store(tag);
        uint64_t expected = tag;
        ASSERT_TRUE(slot.claim_start.compare_exchange_strong(expected, 0));
    };
    Loan a;
    ASSERT_EQ(pub.loan(8, a), PublishStatus::ok);
    take_without_sealing();
    ASSERT_EQ(pub.publish("after a"), PublishStatus::ok);
    EXPECT_TRUE(drain(*sub).empty());               // nobody sealed it yet
    EXPECT_EQ(a.commit(), PublishStatus::revoked);  // the late commit seals it as a skip record
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"after a"});

    Loan b;
    ASSERT_EQ(pub.loan(8, b), PublishStatus::ok);
    take_without_sealing();
    ASSERT_EQ(pub.publish("after b"), PublishStatus::ok);
    settle_take_back(t.segment(), 0);  // the next daemon, at start
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"after b"});
    EXPECT_EQ(b.commit(), PublishStatus::revoked);

    Loan c;  // marked, but the daemon died before its CAS: the claim stays the owner's
    ASSERT_EQ(pub.loan(7, c), PublishStatus::ok);
    slot.revoked.store(slot.claim_start.load());
    settle_take_back(t.segment(), 0);
    EXPECT_EQ(slot.revoked.load(), 0u);
    std::memcpy(c.data().data(), "still c", 7);
    EXPECT_EQ(c.commit(), PublishStatus::ok);
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"still c"});
}

TEST(Recovery, ACommitThatComesFirstWinsOverTheTakeBack) {
    LocalTopic t(revocable(4096));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    Loan loan;
    ASSERT_EQ(pub.loan(5, loan), PublishStatus::ok);
    const uint64_t tag = t.segment().producer_slot(0).claim_start.load();
    std::memcpy(loan.data().data(), "hello", 5);
    EXPECT_EQ(loan.commit(), PublishStatus::ok);
    EXPECT_FALSE(take_back_stalled_claim(t.segment(), 0, tag));
    EXPECT_EQ(drain(*sub), std::vector<std::string>{"hello"});
}

// While the late writer may still write, its bytes are not handed to anyone else.
TEST(Recovery, ARevokedClaimHoldsProducersBackUntilItsOwnerNotices) {
    LocalTopic t(revocable(4096, OnFull::fail));
    auto stalled = t.publisher({}, 0);
    auto other = t.publisher({}, 1);
    auto sub = t.subscriber(durable("d"));
    Loan loan;
    ASSERT_EQ(stalled.loan(16, loan), PublishStatus::ok);
    const uint64_t start = t.segment().producer_slot(0).claim_start.load() - 1;
    ASSERT_TRUE(take_back_stalled_claim(t.segment(), 0, start + 1));
    const Ring ring(t.segment());
    for (int i = 0; i < 1000; ++i) {
        (void)drain(*sub);  // acks everything: only the revoked claim can hold producers back
        if (other.publish(std::string(100, 'x')) != PublishStatus::ok) break;
    }
    EXPECT_LE(ring.tail_position(), start + 4096);
    EXPECT_EQ(other.publish(std::string(100, 'x')), PublishStatus::would_block);
    EXPECT_EQ(loan.commit(), PublishStatus::revoked);
    (void)drain(*sub);
    EXPECT_EQ(other.publish(std::string(100, 'x')), PublishStatus::ok);
}

// The owner's commit and the daemon's take-back race: exactly one wins, every time, and readers
// see the message if and only if the commit won.
TEST(Recovery, CommitAndTakeBackRaceToExactlyOneOutcome) {
    LocalTopic t(revocable(1 << 16, OnFull::overwrite));
    auto pub = t.publisher();
    auto sub = t.subscriber();
    auto& slot = t.segment().producer_slot(0);
    std::atomic<uint64_t> target{0};
    std::atomic<bool> done{false};
    std::atomic<uint64_t> taken{0};
    std::thread daemon([&] {
        while (!done.load()) {
            const uint64_t tag = target.load();
            if (tag != 0 && take_back_stalled_claim(t.segment(), 0, tag)) taken.fetch_add(1);
        }
    });
    uint64_t committed = 0, revoked = 0;
    std::vector<std::string> seen;
    for (int i = 0; i < 3000; ++i) {
        Loan loan;
        ASSERT_EQ(pub.loan(8, loan), PublishStatus::ok);
        std::memcpy(loan.data().data(), "message!", 8);
        target.store(slot.claim_start.load());
        const PublishStatus st = loan.commit();
        target.store(0);
        (st == PublishStatus::ok ? committed : revoked) += 1;
        ASSERT_TRUE(st == PublishStatus::ok || st == PublishStatus::revoked) << to_string(st);
        for (auto& m : drain(*sub)) seen.push_back(m);
    }
    done.store(true);
    daemon.join();
    EXPECT_EQ(revoked, taken.load());
    EXPECT_EQ(seen.size(), committed);
    for (const auto& m : seen) EXPECT_EQ(m, "message!");
    EXPECT_EQ(committed + revoked, 3000u);
}

// A producer slot is written by a process shmbusd does not trust: a `revoked` word that is no
// record boundary (here 8 bytes before the ring's end, where a header would overrun it) is not
// taken for a record. Caught by ASan as a read past the mapping before the check existed.
TEST(Recovery, AGarbageRevokedWordInADeadProducersSlotIsIgnored) {
    LocalTopic t(config(4096));
    auto& p = t.segment().producer_slot(0);
    p.state.store(uint32_t(layout::ProducerState::active));
    for (const uint64_t garbage : {uint64_t(4096 - 8 + 1), uint64_t(7), ~uint64_t{0}}) {
        p.revoked.store(garbage);
        EXPECT_EQ(seal_dead(t.segment(), 0), SealOutcome::nothing) << garbage;
        EXPECT_EQ(p.revoked.load(), 0u);  // settled: cleared
        p.revoked.store(garbage);
        settle_take_back(t.segment(), 0);  // what a restarted daemon does for a live owner
        p.revoked.store(0);
    }
}

}  // namespace
}  // namespace shmbus::detail
