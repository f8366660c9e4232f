// The supervisor's recovery policy on one topic, with no daemon, no sockets and no processes:
// slots are registered as shmbusd would, liveness is a function the test decides, and time is
// passed in. What the policy did is read back from the slots and the topic's counters.
#include <gtest/gtest.h>
#include <unistd.h>

#include "groups/group.h"
#include "supervisor/group_admin.h"
#include "supervisor/registration.h"
#include "local_topic.h"
#include "ring_helpers.h"
#include "core/slots.h"
#include "topic_supervisor.h"

namespace shmbus::daemon {
namespace {

using namespace std::chrono_literals;
using detail::LocalTopic;
using detail::Registration;
using detail::SlotState;

constexpr Process kAlice{1001, 11};
constexpr Process kBob{1002, 22};

class Supervised : public ::testing::Test {
protected:
    explicit Supervised(TopicConfig config = detail::config(65536)) : topic_(config) {}
    void SetUp() override {
        ASSERT_TRUE(topic_.ok()) << topic_.error().message;
        auto seg = topic_.attach();
        ASSERT_TRUE(seg.has_value());
        sup_.emplace("t", std::move(seg.value()));
    }
    const detail::Segment& seg() { return sup_->segment(); }
    uint32_t producer(const Process& p, uint64_t session) { return *detail::register_producer(seg(), {p, 0, session}); }
    uint32_t consumer(const Process& p, uint64_t session, const char* durable_name = "") {
        const uint32_t slot = *detail::reserve_consumer_slot(seg());
        const auto kind = *durable_name != '\0' ? detail::SlotKind::durable : detail::SlotKind::ephemeral;
        EXPECT_TRUE(detail::attach_new_cursor(seg(), slot, kind, durable_name, Registration{p, 0, session},
                                              StartFrom::latest, 0)
                        .has_value());
        return slot;
    }
    SlotState state(uint32_t consumer_slot) { return detail::state_of(seg().consumer_slot(consumer_slot)); }
    bool producer_taken(uint32_t slot) { return detail::producer_active(seg().producer_slot(slot)); }
    const layout::RecoveryCounters& counters() { return seg().recovery(); }

    LocalTopic topic_;
    std::optional<TopicSupervisor> sup_;
};

TEST_F(Supervised, AClosedConnectionReleasesOnlyTheSlotsItRegistered) {
    // One process, two connections (two Clients): closing one leaves the other's slots alone.
    const uint32_t p1 = producer(kAlice, 1), p2 = producer(kAlice, 2);
    const uint32_t c1 = consumer(kAlice, 1), c2 = consumer(kAlice, 2, "keep");
    const uint32_t bob = consumer(kBob, 1);  // same session number, another process
    EXPECT_EQ(sup_->release_connection(kAlice, 1, kClientGone), 2u);
    EXPECT_FALSE(producer_taken(p1));
    EXPECT_EQ(state(c1), SlotState::free);
    EXPECT_TRUE(producer_taken(p2));
    EXPECT_EQ(state(c2), SlotState::attached);
    EXPECT_EQ(state(bob), SlotState::attached);
    EXPECT_EQ(sup_->release_connection(kAlice, 2, kClientGone), 2u);
    EXPECT_EQ(state(c2), SlotState::detached);  // durable: the cursor is kept for its return
    EXPECT_EQ(seg().consumer_slot(c2).pid, 0);
}

TEST_F(Supervised, TheSameDeathSeenTwiceReleasesAndCountsOnce) {
    const uint32_t c = consumer(kAlice, 1);
    const uint32_t d = consumer(kAlice, 1, "d");
    const uint32_t p = producer(kAlice, 1);
    EXPECT_EQ(sup_->release_process(kAlice, kExited), 3u);
    EXPECT_EQ(sup_->release_process(kAlice, kExited), 0u);
    sup_->release_consumer(c, kAlice, kExited);
    sup_->release_producer(p, kAlice, kExited);
    EXPECT_EQ(counters().subscribers_freed.load(), 1u);
    EXPECT_EQ(counters().subscribers_detached.load(), 1u);
    EXPECT_EQ(counters().producers_released.load(), 1u);
    EXPECT_EQ(state(d), SlotState::detached);
}

TEST_F(Supervised, ALeaveThatIsNoDeathIsNotCountedAsARecovery) {
    const uint32_t c = consumer(kAlice, 1);
    sup_->release_consumer(c, kAlice, kUnsubscribed);
    EXPECT_EQ(state(c), SlotState::free);
    EXPECT_EQ(counters().subscribers_freed.load(), 0u);
}

TEST_F(Supervised, ASlotGivenToSomeoneElseIsNotReleasedForItsFormerOwner) {
    const uint32_t c = consumer(kAlice, 1);
    sup_->release_consumer(c, kAlice, kUnsubscribed);
    const uint32_t again = consumer(kBob, 7);
    ASSERT_EQ(again, c);  // the freed slot, handed out again
    sup_->release_consumer(c, kAlice, kExited);  // Alice's death, seen late
    EXPECT_EQ(state(c), SlotState::attached);
    EXPECT_EQ(seg().consumer_slot(c).pid, kBob.pid);
}

TEST_F(Supervised, ReconcileReleasesTheDeadAndReturnsTheLiving) {
    const uint32_t dead_c = consumer(kAlice, 1, "dur");
    const uint32_t dead_p = producer(kAlice, 1);
    const uint32_t live_c = consumer(kBob, 2);
    const uint32_t half = *detail::reserve_consumer_slot(seg());  // a subscribe left halfway
    const auto live = sup_->reconcile([](const Process& p) { return p == kBob; });
    ASSERT_EQ(live.size(), 1u);
    EXPECT_EQ(live[0], kBob);
    EXPECT_EQ(state(dead_c), SlotState::detached);
    EXPECT_FALSE(producer_taken(dead_p));
    EXPECT_EQ(state(live_c), SlotState::attached);
    EXPECT_EQ(state(half), SlotState::free);
    EXPECT_EQ(counters().owners_dead_at_restart.load(), 2u);
}

// shmbusd died inside create_group (slot made, block never activated) and inside delete_group
// (slot freed, block still active): the next one frees both leftovers, and keeps a whole group.
TEST_F(Supervised, ReconcileFreesHalfMadeGroupsAndKeepsWholeOnes) {
    const layout::GroupSettingsRecord settings = detail::settings_record(GroupSettings{});
    auto whole = detail::create_group(seg(), "whole", settings, StartFrom::latest, 0, Registration{kAlice, 0, 1});
    auto half = detail::create_group(seg(), "half", settings, StartFrom::latest, 0, Registration{kAlice, 0, 1});
    auto orphan = detail::create_group(seg(), "orphan", settings, StartFrom::latest, 0, Registration{kAlice, 0, 1});
    ASSERT_TRUE(whole && half && orphan);
    seg().group_block(half->block).state.store(uint32_t(layout::GroupState::free));  // never activated
    ASSERT_TRUE(detail::free_consumer(seg(), orphan->slot, detail::state_of(seg().consumer_slot(orphan->slot))));  // slot freed, block not
    (void)sup_->reconcile([](const Process&) { return true; });
    EXPECT_EQ(detail::state_of(seg().consumer_slot(half->slot)), SlotState::free) << "would hold publishers back for nothing";
    EXPECT_EQ(seg().group_block(orphan->block).state.load(), uint32_t(layout::GroupState::free));
    EXPECT_TRUE(detail::find_group(seg(), "whole").has_value());
    EXPECT_NE(detail::state_of(seg().consumer_slot(whole->slot)), SlotState::free);
    EXPECT_FALSE(detail::find_group(seg(), "orphan").has_value());
}

TEST_F(Supervised, ADeadPublishersOpenClaimIsSealedSoReadersMoveOn) {
    auto reader = topic_.subscriber();
    ASSERT_TRUE(reader.has_value());
    auto pub = topic_.publisher({}, 3);  // records its claims in producer slot 3
    auto& p = seg().producer_slot(3);
    p.pid = kAlice.pid;
    p.start_time = kAlice.start_time;
    Loan open;
    ASSERT_EQ(pub.loan(40, open), PublishStatus::ok);  // it dies holding this
    auto other = topic_.publisher({}, 4);
    ASSERT_EQ(other.publish("after"), PublishStatus::ok);
    EXPECT_TRUE(detail::drain(*reader).empty());  // stuck behind the open claim
    EXPECT_EQ(sup_->release_process(kAlice, kExited), 1u);
    EXPECT_EQ(detail::drain(*reader), std::vector<std::string>{"after"});
    EXPECT_EQ(counters().dead_claims_sealed.load(), 1u);
    EXPECT_FALSE(producer_taken(3));
    EXPECT_EQ(sup_->tick_period(), 0u);  // nothing left to re-check
}

class SupervisedWithTimeouts : public Supervised {
protected:
    static TopicConfig timeouts() {
        TopicConfig c = detail::config(65536);
        c.unblock_timeout = 20ms;
        c.expire_detached = 1s;
        return c;
    }
    SupervisedWithTimeouts() : Supervised(timeouts()) {}
};

TEST_F(SupervisedWithTimeouts, AStalledClaimIsTakenBackOnlyAfterTheTimeout) {
    EXPECT_EQ(sup_->tick_period(), kClaimTickNs);
    auto reader = topic_.subscriber();
    auto pub = topic_.publisher({}, 0);
    Loan stalled;
    ASSERT_EQ(pub.loan(16, stalled), PublishStatus::ok);
    const uint64_t t0 = 1'000'000'000;
    sup_->tick(t0, 0);                // first seen now
    sup_->tick(t0 + 19'000'000, 0);   // not yet: 19 ms
    EXPECT_EQ(counters().stalled_claims_unblocked.load(), 0u);
    sup_->tick(t0 + 20'000'000, 0);   // 20 ms: taken back and sealed
    EXPECT_EQ(counters().stalled_claims_unblocked.load(), 1u);
    EXPECT_EQ(stalled.commit(), PublishStatus::revoked);
    ASSERT_EQ(pub.publish("next"), PublishStatus::ok);
    EXPECT_EQ(detail::drain(*reader), std::vector<std::string>{"next"});
}

TEST_F(SupervisedWithTimeouts, ADetachedCursorExpiresAfterItsTimeAndNotBefore) {
    const uint32_t d = consumer(kAlice, 1, "forgotten");
    sup_->release_process(kAlice, kExited);
    const uint64_t detached_at = seg().consumer_slot(d).detached_ns;
    sup_->tick(0, detached_at + 999'000'000);
    EXPECT_EQ(state(d), SlotState::detached);
    sup_->tick(0, detached_at + 1'000'000'000);
    EXPECT_EQ(state(d), SlotState::free);
    EXPECT_EQ(counters().cursors_expired.load(), 1u);
}

}  // namespace
}  // namespace shmbus::daemon
