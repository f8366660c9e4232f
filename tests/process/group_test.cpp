// Consumer groups against a real shmbusd: work shared among members with every message processed,
// redelivery after a member's death or a visibility timeout, nacks with backoff, dead letters,
// settings fixed at creation, and a group that survives shmbusd's restart.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "bus_fixture.h"
#include "core/futex.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

class Groups : public BusTest {
protected:
    void SetUp() override {
        make_dir();
        start_daemon();
    }

    SubscribeOptions member_options(const std::string& group, GroupSettings settings = {}) {
        SubscribeOptions o;
        o.group = group;
        o.group_settings = settings;
        o.from = StartFrom::earliest;
        return o;
    }

    void publish_numbers(Publisher& pub, uint64_t first, uint64_t count) {
        for (uint64_t i = first; i < first + count; ++i) {
            const std::string text = std::to_string(i);
            ASSERT_EQ(pub.publish(text, 10s), PublishStatus::ok) << i;
        }
    }
};

// 4 members, 100,000 messages: every message processed exactly once (nobody died or timed out),
// and each member, needed for the work, did a share of it.
TEST_F(Groups, EveryMessageIsProcessedOnceAcrossFourMembers) {
    constexpr uint64_t kMessages = 100'000;
    constexpr int kMembers = 4;
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    auto setup = c->subscribe("jobs", member_options("workers"));  // creates the group at the start
    ASSERT_TRUE(setup.has_value()) << setup.error().message;
    auto pub = c->publisher("jobs");
    ASSERT_TRUE(pub.has_value());
    std::vector<std::vector<uint64_t>> seen(kMembers);
    std::atomic<uint64_t> total{0};
    std::atomic<int> attached{0};
    std::vector<std::thread> members;
    for (int m = 0; m < kMembers; ++m) {
        members.emplace_back([&, m] {
            auto mc = connect();
            if (!mc) return;
            auto sub = mc->subscribe("jobs", member_options("workers"));
            if (!sub) return;
            attached.fetch_add(1);
            while (total.load() < kMessages) {
                (void)sub->receive([&](const Message& msg) {
                    EXPECT_EQ(msg.attempt, 1u);
                    EXPECT_EQ(std::to_string(msg.id), msg.text()) << "payload names its id";
                    seen[m].push_back(msg.id);
                    total.fetch_add(1);
                    // A pause every 64 messages: a member is slower than the publisher, so the
                    // group needs all four and wakes them (it wakes no more members than the
                    // backlog needs, and on two cores two members can keep up with a bare loop).
                    if (seen[m].size() % 64 == 0) std::this_thread::sleep_for(100us);
                }, 50ms, 16);
            }
        });
    }
    setup = make_error(Errc::disconnected, "closed");  // the setup member leaves before any work
    // Every member attached before the first message: the share each takes is the group's
    // dispatch, not how soon a thread got through connect and subscribe (a publish of 100,000
    // small messages can end before a late thread has attached).
    const auto attach_by = std::chrono::steady_clock::now() + 10s;
    while (attached.load() < kMembers && std::chrono::steady_clock::now() < attach_by) std::this_thread::sleep_for(1ms);
    ASSERT_EQ(attached.load(), kMembers) << "a member could not attach";
    publish_numbers(*pub, 0, kMessages);  // ids start at 0 on a new topic
    for (auto& t : members) t.join();
    std::set<uint64_t> all;
    uint64_t duplicates = 0;
    for (int m = 0; m < kMembers; ++m) {
        for (uint64_t id : seen[m]) duplicates += all.insert(id).second ? 0 : 1;
        EXPECT_GE(seen[m].size(), kMessages / 100) << "member " << m << " did less than 1% of the work";
    }
    EXPECT_EQ(duplicates, 0u);
    EXPECT_EQ(all.size(), kMessages);
    if (!all.empty()) {
        EXPECT_EQ(*all.rbegin(), kMessages - 1);
    }
}

// A member SIGKILLed while holding messages: every one of them is delivered again, to another
// member, with attempt 2; nothing is lost.
TEST_F(Groups, AKilledMembersMessagesAreRedelivered) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    auto pub = c->publisher("jobs");
    ASSERT_TRUE(pub.has_value());
    GroupSettings s;
    s.window = 8;
    auto created = c->subscribe("jobs", member_options("workers", s));
    ASSERT_TRUE(created.has_value()) << created.error().message;
    created = make_error(Errc::disconnected, "closed");
    publish_numbers(*pub, 0, 20);
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    const pid_t victim = fork();
    if (victim == 0) {
        close(ready[0]);
        auto vc = connect();
        if (!vc) _exit(3);
        SubscribeOptions o = member_options("workers", s);
        o.auto_ack = false;
        auto sub = vc->subscribe("jobs", o);
        if (!sub) _exit(4);
        uint32_t got = 0;
        while (got < 8) got += sub->receive([](const Message&) {}, 1s).count;
        (void)!write(ready[1], "x", 1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char x;
    ASSERT_EQ(read(ready[0], &x, 1), 1);  // the victim holds 8 unsettled messages
    close(ready[0]);
    kill(victim, SIGKILL);
    EXPECT_EQ(wait_exit(victim), 128 + SIGKILL);
    auto sub = c->subscribe("jobs", member_options("workers", s));
    ASSERT_TRUE(sub.has_value()) << sub.error().message;
    std::map<uint64_t, uint32_t> attempts;
    EXPECT_TRUE(eventually([&] {
        (void)sub->receive([&](const Message& m) { attempts[m.id] = m.attempt; }, 20ms);
        return attempts.size() == 20;
    }));
    uint32_t redelivered = 0;
    for (const auto& [id, attempt] : attempts) redelivered += attempt == 2 ? 1 : 0;
    EXPECT_EQ(redelivered, 8u);
    EXPECT_EQ(attempts.size(), 20u);
}

// A message not settled within the visibility timeout goes to another member with attempt 2; the
// first holder's late ack is refused as stale.
TEST_F(Groups, AMessageHeldPastItsVisibilityTimeoutGoesToAnotherMember) {
    auto c1 = connect();
    auto c2 = connect();
    ASSERT_TRUE(c1 && c2);
    GroupSettings s;
    s.visibility = 100ms;
    SubscribeOptions manual = member_options("workers", s);
    manual.auto_ack = false;
    auto slow = c1->subscribe("jobs", manual);
    ASSERT_TRUE(slow.has_value()) << slow.error().message;
    auto pub = c1->publisher("jobs");
    ASSERT_TRUE(pub.has_value());
    publish_numbers(*pub, 0, 1);
    std::optional<Message> held;
    std::string held_text;
    ASSERT_TRUE(eventually([&] {
        (void)slow->receive([&](const Message& m) { held = m; held_text = std::string(m.text()); }, 20ms);
        return held.has_value();
    }));
    auto other = c2->subscribe("jobs", member_options("workers", s));
    ASSERT_TRUE(other.has_value());
    uint32_t attempt = 0;
    ASSERT_TRUE(eventually([&] {
        (void)other->receive([&](const Message& m) { attempt = m.attempt; EXPECT_EQ(m.text(), held_text); }, 20ms);
        return attempt != 0;
    }, 5s));
    EXPECT_EQ(attempt, 2u);
    EXPECT_EQ(slow->ack(*held), AckStatus::stale);
    EXPECT_EQ(slow->in_flight(), 0u);
    auto stats = c1->topic_stats("jobs");
    ASSERT_TRUE(stats.has_value());
    ASSERT_EQ(stats->groups.size(), 1u);
    EXPECT_EQ(stats->groups[0].name, "workers");
    EXPECT_EQ(stats->groups[0].members.size(), 2u);
    EXPECT_EQ(stats->groups[0].delivered, 1u);
    EXPECT_EQ(stats->groups[0].redelivered, 1u);
    EXPECT_TRUE(stats->subscriptions.empty()) << "a group and its members are not subscriptions";
    const auto info = cli({"topic", "info", "jobs"});
    EXPECT_NE(info.out.find("group     workers"), std::string::npos) << info.out;
    EXPECT_NE(info.out.find("members 2 (pid " + std::to_string(getpid())), std::string::npos) << info.out;
    EXPECT_NE(info.out.find("redelivered 1"), std::string::npos) << info.out;
    const auto json = nlohmann::json::parse(cli({"topic", "info", "jobs", "--json"}).out);
    EXPECT_EQ(json["groups"][0]["name"], "workers");
    EXPECT_EQ(json["groups"][0]["visibility_ms"], 100);
}

// A second ack of one message is answered `stale` and changes nothing: the member's window still
// counts what it holds, so it is never handed more than `window` unsettled messages.
TEST_F(Groups, ASecondAckOfOneMessageDoesNotWidenTheWindow) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    GroupSettings s;
    s.window = 2;
    SubscribeOptions o = member_options("workers", s);
    o.auto_ack = false;
    auto sub = c->subscribe("jobs", o);
    ASSERT_TRUE(sub.has_value()) << sub.error().message;
    auto pub = c->publisher("jobs");
    ASSERT_TRUE(pub.has_value());
    publish_numbers(*pub, 0, 5);
    std::vector<Message> held;
    ASSERT_TRUE(eventually([&] {
        (void)sub->receive([&](const Message& m) { held.push_back(m); }, 20ms);
        return held.size() >= 2;
    }));
    ASSERT_EQ(held.size(), 2u);
    EXPECT_EQ(sub->ack(held[0]), AckStatus::ok);
    EXPECT_EQ(sub->ack(held[0]), AckStatus::stale);
    EXPECT_EQ(sub->nack(held[0]), AckStatus::stale);
    EXPECT_EQ(sub->in_flight(), 1u);
    uint32_t more = 0;
    for (int i = 0; i < 5; ++i) more += sub->receive([&](const Message& m) { held.push_back(m); }, 20ms).count;
    EXPECT_EQ(more, 1u) << "one place was free in a window of 2";
    EXPECT_EQ(sub->in_flight(), 2u);
    auto stats = c->topic_stats("jobs");
    ASSERT_TRUE(stats.has_value());
    EXPECT_EQ(stats->groups[0].acked, 1u);
}

// A poison message is nacked on every delivery: it reaches `<topic>.dlq` after exactly
// max-deliveries attempts, with the backoff between them, while the other messages flow.
TEST_F(Groups, APoisonMessageReachesTheDeadLetterTopicAfterMaxDeliveries) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    GroupSettings s;
    s.max_deliveries = 3;
    s.backoff_initial = 40ms;
    s.backoff_max = 40ms;
    SubscribeOptions o = member_options("workers", s);
    o.auto_ack = false;
    auto sub = c->subscribe("jobs", o);
    ASSERT_TRUE(sub.has_value()) << sub.error().message;
    SubscribeOptions dlq_options;
    dlq_options.from = StartFrom::earliest;
    auto dlq = c->subscribe("jobs.dlq", dlq_options);
    ASSERT_TRUE(dlq.has_value()) << dlq.error().message;
    auto pub = c->publisher("jobs");
    ASSERT_TRUE(pub.has_value());
    ASSERT_EQ(pub->publish("poison"), PublishStatus::ok);
    publish_numbers(*pub, 1, 50);
    std::vector<uint64_t> poison_times;
    std::set<std::string> good;
    std::string dead;
    ASSERT_TRUE(eventually([&] {
        (void)sub->receive([&](const Message& m) {
            if (m.text() == "poison") {
                poison_times.push_back(detail::monotonic_ns());
                EXPECT_EQ(m.attempt, poison_times.size());
                EXPECT_EQ(sub->nack(m), AckStatus::ok);
            } else {
                good.insert(std::string(m.text()));
                EXPECT_EQ(sub->ack(m), AckStatus::ok);
            }
        }, 10ms);
        (void)dlq->poll([&](const Message& m) { dead = std::string(m.text()); });
        return !dead.empty() && good.size() == 50;
    }, 10s));
    EXPECT_EQ(dead, "poison");
    ASSERT_EQ(poison_times.size(), 3u);
    for (std::size_t i = 1; i < poison_times.size(); ++i)
        EXPECT_GE(poison_times[i] - poison_times[i - 1], 20'000'000u) << "backoff (jittered in its upper half of 40 ms)";
}

// reject() sends a message to the dead-letter topic at once.
TEST_F(Groups, RejectSendsAMessageToTheDeadLetterTopicAtOnce) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    SubscribeOptions o = member_options("workers");
    o.auto_ack = false;
    auto sub = c->subscribe("jobs", o);
    ASSERT_TRUE(sub.has_value());
    SubscribeOptions dlq_options;
    dlq_options.from = StartFrom::earliest;
    auto dlq = c->subscribe("jobs.dlq", dlq_options);
    ASSERT_TRUE(dlq.has_value());
    auto pub = c->publisher("jobs");
    ASSERT_EQ(pub->publish("malformed order"), PublishStatus::ok);
    bool rejected = false;
    ASSERT_TRUE(eventually([&] {
        (void)sub->receive([&](const Message& m) { rejected = sub->reject(m, "cannot parse") == AckStatus::ok; }, 10ms);
        return rejected;
    }));
    std::string dead;
    EXPECT_TRUE(eventually([&] {
        (void)dlq->poll([&](const Message& m) { dead = std::string(m.text()); });
        return !dead.empty();
    }));
    EXPECT_EQ(dead, "malformed order");
}

// Settings are fixed when a group is created: a member asking for others is refused with the
// difference named; one that asks for nothing in particular joins.
TEST_F(Groups, AMemberAskingForOtherSettingsIsRefused) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    GroupSettings s;
    s.window = 16;
    auto first = c->subscribe("jobs", member_options("workers", s));
    ASSERT_TRUE(first.has_value());
    GroupSettings other;
    other.window = 32;
    auto refused = c->subscribe("jobs", member_options("workers", other));
    ASSERT_FALSE(refused.has_value());
    EXPECT_NE(refused.error().message.find("window 16 (asked: 32)"), std::string::npos) << refused.error().message;
    auto plain = c->subscribe("jobs", member_options("workers"));
    EXPECT_TRUE(plain.has_value());
    GroupSettings bad;
    bad.window = 0;
    auto invalid = c->subscribe("jobs", member_options("other", bad));
    ASSERT_FALSE(invalid.has_value());
    EXPECT_EQ(invalid.error().code, Errc::invalid_argument);
    SubscribeOptions both = member_options("workers");
    both.durable_name = "audit";
    EXPECT_FALSE(c->subscribe("jobs", both).has_value());
}

// A group holds publishers back like a durable subscription: on a `fail` topic, a full ring of
// unsettled messages refuses the next publish until members settle them.
TEST_F(Groups, AGroupGatesPublishersUntilItsMessagesAreSettled) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    TopicConfig tc;
    tc.capacity = 4096;
    tc.on_full = OnFull::fail;
    ASSERT_TRUE(c->create_topic("small", tc));
    SubscribeOptions o = member_options("workers");
    o.auto_ack = false;
    auto sub = c->subscribe("small", o);
    ASSERT_TRUE(sub.has_value()) << sub.error().message;
    auto pub = c->publisher("small");
    ASSERT_TRUE(pub.has_value());
    const std::string payload(200, 'x');
    int published = 0;
    while (pub->publish(payload) == PublishStatus::ok) ++published;
    ASSERT_GT(published, 0);
    std::vector<Message> held;
    (void)sub->poll([&](const Message& m) { held.push_back(m); }, 1000);  // taken, not settled: still gating
    EXPECT_EQ(pub->publish(payload), PublishStatus::would_block);
    for (const auto& m : held) EXPECT_EQ(sub->ack(m), AckStatus::ok);
    EXPECT_EQ(pub->publish(payload), PublishStatus::ok);
}

// The group lives in the topic's segment: shmbusd SIGKILLed and restarted, members go on where
// the group was, and nothing is lost.
TEST_F(Groups, TheGroupSurvivesARestartOfShmbusd) {
    {
        auto c = connect();
        ASSERT_TRUE(c.has_value());
        auto sub = c->subscribe("jobs", member_options("workers"));
        ASSERT_TRUE(sub.has_value());
        auto pub = c->publisher("jobs");
        publish_numbers(*pub, 0, 100);
        uint32_t got = 0;
        while (got < 40) got += sub->receive([](const Message&) {}, 100ms, 40 - got).count;
    }
    kill_daemon();
    start_daemon();
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    auto sub = c->subscribe("jobs", member_options("workers"));
    ASSERT_TRUE(sub.has_value()) << sub.error().message;
    EXPECT_TRUE(sub->resumed());
    std::set<uint64_t> ids;
    EXPECT_TRUE(eventually([&] {
        (void)sub->receive([&](const Message& m) { ids.insert(m.id); }, 20ms);
        return ids.size() >= 60;
    }));
    EXPECT_EQ(ids.size(), 60u);
    if (!ids.empty()) {
        EXPECT_EQ(*ids.begin(), 40u);
    }
}

// The CLI: two `sub --group` members share ten messages; together they print each exactly once,
// and `--format json` shows the attempt. Group options without --group are usage errors.
TEST_F(Groups, TwoCliMembersShareTheMessages) {
    ASSERT_EQ(cli({"sub", "jobs", "--group", "workers", "--from", "earliest", "--count", "0", "--window", "4"}).code, 0);
    const pid_t a = spawn({SHMBUS_CLI_PATH, "--dir", dir, "sub", "jobs", "--group", "workers", "--format", "json"},
                          {path("a.out"), path("a.err")});
    const pid_t b = spawn({SHMBUS_CLI_PATH, "--dir", dir, "sub", "jobs", "--group", "workers", "--format", "json"},
                          {path("b.out"), path("b.err")});
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    ASSERT_TRUE(eventually([&] {  // both have joined (and so handle SIGTERM) before anything is published
        auto stats = c->topic_stats("jobs");
        return stats && stats->groups.size() == 1 && stats->groups[0].members.size() == 2;
    }));
    std::vector<std::string> messages = {"pub", "jobs"};
    for (int i = 0; i < 10; ++i) messages.push_back("job-" + std::to_string(i));
    ASSERT_EQ(cli(messages).code, 0);
    auto lines = [&] {
        std::multiset<std::string> out;
        for (const char* f : {"a.out", "b.out"}) {
            std::istringstream in(read_file(path(f)));
            for (std::string line; std::getline(in, line);)
                if (!line.empty()) out.insert(nlohmann::json::parse(line)["payload"].get<std::string>());
        }
        return out;
    };
    EXPECT_TRUE(eventually([&] { return lines().size() >= 10; }));
    kill(a, SIGTERM);
    kill(b, SIGTERM);
    EXPECT_EQ(wait_exit(a), 0) << read_file(path("a.err"));
    EXPECT_EQ(wait_exit(b), 0) << read_file(path("b.err"));
    const auto got = lines();
    EXPECT_EQ(got.size(), 10u);
    EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), 10u);
    const std::string first = read_file(path("a.out")).empty() ? read_file(path("b.out")) : read_file(path("a.out"));
    EXPECT_EQ(nlohmann::json::parse(first.substr(0, first.find('\n')))["attempt"], 1);
    EXPECT_EQ(cli({"sub", "jobs", "--window", "4"}).code, 2);
    EXPECT_EQ(cli({"sub", "jobs", "--group", "workers", "--durable", "x"}).code, 2);
    EXPECT_EQ(cli({"sub", "jobs", "--group", "workers", "--backoff", "soon"}).code, 2);
    EXPECT_EQ(cli({"sub", "jobs", "--group", "bad name"}).code, 2);
}

}  // namespace
}  // namespace shmbus::test
