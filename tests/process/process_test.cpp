// Real processes through a real shmbusd: fan-in, fan-out, durable recovery after SIGKILL,
// overrun accounting, on-full policies and slot release on death.
#include <set>

#include "peer_fixture.h"

namespace shmbus::test {
namespace {

class Process : public PeerTest {
protected:
    // A 4 KiB topic with the given policy and a durable subscription that attached once and left:
    // detached, its cursor stays at id 0.
    Client topic_with_detached_durable(OnFull on_full, const std::string& name) {
        auto c = connect();
        TopicConfig config;
        config.capacity = 4096;
        config.on_full = on_full;
        EXPECT_TRUE(c->create_topic("t", config).has_value());
        SubscribeOptions o;
        o.durable_name = name;
        EXPECT_TRUE(c->subscribe("t", o).has_value());
        return std::move(c.value());
    }

    void fan(int producers, int consumers, uint64_t per_producer, bool durable) {
        std::vector<pid_t> subs;
        for (int c = 0; c < consumers; ++c) {
            std::vector<std::string> a{"t", "--count", std::to_string(per_producer * producers), "--capacity", "256K"};
            if (durable) a.insert(a.end(), {"--durable", "d" + std::to_string(c)});
            subs.push_back(start_sub("sub" + std::to_string(c), a));
        }
        std::vector<pid_t> pubs;
        for (int p = 0; p < producers; ++p)
            pubs.push_back(start_pub("pub" + std::to_string(p),
                                     {"t", std::to_string(per_producer), std::to_string(p), "--size", std::to_string(24 + p * 40)}));
        for (int p = 0; p < producers; ++p)
            EXPECT_EQ(wait_exit(pubs[p]), 0) << read_file(path("pub" + std::to_string(p) + ".err"));
        for (int c = 0; c < consumers; ++c) {
            const Summary s = finish_sub("sub" + std::to_string(c), subs[c]);
            EXPECT_EQ(s.received, per_producer * producers);
            EXPECT_EQ(s.bad, 0u);
            EXPECT_EQ(s.lost, 0u);
            EXPECT_EQ(s.last_id, per_producer * producers - 1);
        }
    }
};

TEST_F(Process, OneToOne) { fan(1, 1, 200000, true); }
TEST_F(Process, FourToOne) { fan(4, 1, 50000, true); }
TEST_F(Process, OneToFour) { fan(1, 4, 100000, true); }
TEST_F(Process, FourToFourEphemeralOnABigRing) {
    auto c = connect();
    TopicConfig config;
    config.capacity = 64 << 20;  // holds everything: an ephemeral reader is never overrun here
    ASSERT_TRUE(c->create_topic("t", config).has_value());
    fan(4, 4, 20000, false);
}

TEST_F(Process, ADurableSubscriberKilledMidStreamSeesEveryMessageAtLeastOnce) {
    const uint64_t total = 30000;
    const std::string log = path("durable.log");
    pid_t sub = start_sub("s1", {"t", "--durable", "keeper", "--log", log, "--capacity", "64K", "--slow-us", "20"});
    pid_t pub = start_pub("p", {"t", std::to_string(total), "0"});
    ASSERT_TRUE(eventually([&] { return read_file(log).size() > 20000; }));  // a few thousand in
    kill(sub, SIGKILL);
    EXPECT_EQ(wait_exit(sub), 128 + SIGKILL);
    // The publisher is gated by the dead subscriber's cursor (block topic, 64 KiB ring): it waits.
    pid_t sub2 = start_sub("s2", {"t", "--durable", "keeper", "--log", log, "--until-id", std::to_string(total - 1)});
    EXPECT_EQ(wait_exit(pub), 0) << read_file(path("p.err"));
    const Summary s = finish_sub("s2", sub2);
    EXPECT_EQ(s.bad, 0u);
    EXPECT_EQ(s.last_id, total - 1);
    const DurableLog d = check_durable_log(log);
    EXPECT_EQ(d.problem, "");
    EXPECT_EQ(d.ids.size(), total);
    EXPECT_EQ(d.ids.empty() ? 0 : *d.ids.rbegin(), total - 1);
    EXPECT_LE(d.duplicates, 64u);  // at most the batch that was logged but not yet acked
}

TEST_F(Process, AnOverrunEphemeralSubscriberReportsTheExactNumberLost) {
    const uint64_t total = 40000;
    pid_t sub = start_sub("s", {"t", "--until-id", std::to_string(total - 1), "--capacity", "64K", "--on-full",
                                "overwrite", "--slow-us", "50"});
    pid_t pub = start_pub("p", {"t", std::to_string(total), "0", "--capacity", "64K", "--on-full", "overwrite"});
    EXPECT_EQ(wait_exit(pub), 0) << read_file(path("p.err"));
    const Summary s = finish_sub("s", sub);
    EXPECT_EQ(s.bad, 0u);
    EXPECT_GT(s.lost, 0u);
    EXPECT_EQ(s.received + s.lost, total);
    EXPECT_EQ(s.last_id, total - 1);
}

TEST_F(Process, FailRefusesAtOnceWhenADurableCursorIsBehind) {
    auto c = topic_with_detached_durable(OnFull::fail, "slow");  // detached, still gating
    pid_t pub = start_pub("p", {"t", "100", "0"});
    EXPECT_EQ(wait_exit(pub), 4);
    const std::string out = read_file(path("p.out"));
    EXPECT_NE(out.find("ok=64"), std::string::npos) << out;            // 4096 / 64-byte records
    EXPECT_NE(out.find("would_block=36"), std::string::npos) << out;
}

TEST_F(Process, BlockWaitsForTheAckAndTimesOutAtItsDeadline) {
    auto c = topic_with_detached_durable(OnFull::block, "slow");
    pid_t pub = start_pub("p", {"t", "70", "0", "--timeout-ms", "50"});
    EXPECT_EQ(wait_exit(pub), 4);
    EXPECT_NE(read_file(path("p.out")).find("timed_out=6"), std::string::npos) << read_file(path("p.out"));
    // Now a reader acks as it goes: a blocked publisher proceeds.
    pid_t sub = start_sub("s", {"t", "--durable", "slow", "--until-id", "1063"});
    pid_t pub2 = start_pub("p2", {"t", "1000", "1"});
    EXPECT_EQ(wait_exit(pub2), 0) << read_file(path("p2.out"));
    const Summary s = finish_sub("s", sub);
    EXPECT_EQ(s.bad, 0u);
    EXPECT_EQ(s.received, 1064u);  // the 64 that fitted, then the 1000
}

TEST_F(Process, OverwriteNeverBlocksEvenWithADurableSubscriptionBehind) {
    auto c = topic_with_detached_durable(OnFull::overwrite, "behind");
    SubscribeOptions o;
    o.durable_name = "behind";
    pid_t pub = start_pub("p", {"t", "10000", "0"});
    EXPECT_EQ(wait_exit(pub), 0);
    EXPECT_EQ(read_file(path("p.out")), "ok=10000\n");
    auto s = c.subscribe("t", o);  // resumes, finds its data overwritten, counts the loss
    ASSERT_TRUE(s.has_value());
    uint64_t got = 0, lost_before = 0;
    while (s->poll([&](const Message& m) { ++got; lost_before += m.lost_before; }).status == ReceiveStatus::ok) {}
    EXPECT_GT(got, 0u);
    EXPECT_EQ(got + s->lost(), 10000u);
    EXPECT_EQ(lost_before, s->lost());
}

TEST_F(Process, AClientThatDiesFreesItsSlotsAndKeepsDurableCursors) {
    pid_t e = start_sub("e", {"t"});
    pid_t d = start_sub("d", {"t", "--durable", "keep"});
    pid_t p = start_pub("p", {"t", "1000000000", "0", "--timeout-ms", "100000"});
    auto c = connect();
    ASSERT_TRUE(eventually([&] {
        auto st = c->topic_stats("t");
        return st && st->producers == 1 && st->subscriptions.size() == 2;
    }));
    for (pid_t pid : {e, d, p}) kill(pid, SIGKILL);
    for (pid_t pid : {e, d, p}) wait_exit(pid);
    ASSERT_TRUE(eventually([&] {
        auto st = c->topic_stats("t");
        return st && st->producers == 0 && st->subscriptions.size() == 1 && !st->subscriptions[0].attached;
    })) << read_file(path("daemon.log"));
    auto st = c->topic_stats("t");
    EXPECT_EQ(st->subscriptions[0].name, "keep");
    EXPECT_TRUE(st->subscriptions[0].durable);
}

TEST_F(Process, TheDaemonReadoptsTopicsAndCursorsAfterARestart) {
    {
        auto c = connect();
        auto pub = c->publisher("kept");
        ASSERT_TRUE(pub.has_value());
        SubscribeOptions o;
        o.durable_name = "cursor";
        o.from = StartFrom::earliest;
        auto sub = c->subscribe("kept", o);
        for (int i = 0; i < 10; ++i) ASSERT_EQ(pub->publish("m" + std::to_string(i)), PublishStatus::ok);
        int n = 0;
        (void)sub->poll([&](const Message&) { ++n; }, 4);
        EXPECT_EQ(n, 4);
    }
    stop_daemon();
    start_daemon();
    auto c = connect();
    auto names = c->list_topics();
    ASSERT_TRUE(names.has_value());
    EXPECT_EQ(*names, std::vector<std::string>{"kept"});
    SubscribeOptions o;
    o.durable_name = "cursor";
    auto sub = c->subscribe("kept", o);
    ASSERT_TRUE(sub.has_value());
    EXPECT_TRUE(sub->resumed());
    std::vector<std::string> rest;
    (void)sub->poll([&](const Message& m) { rest.emplace_back(m.text()); });
    EXPECT_EQ(rest.size(), 6u);
    EXPECT_EQ(rest.front(), "m4");
}

TEST_F(Process, ADurableNameAttachedByALiveProcessIsBusy) {
    auto c = connect();
    SubscribeOptions o;
    o.durable_name = "solo";
    auto first = c->subscribe("t", o);
    ASSERT_TRUE(first.has_value());
    auto second = c->subscribe("t", o);
    ASSERT_FALSE(second.has_value());
    EXPECT_EQ(second.error().code, Errc::busy);
}

}  // namespace
}  // namespace shmbus::test
