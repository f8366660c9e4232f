// bus-top as a person uses it: driven in a real terminal (tmux: send-keys, capture-pane) against
// a live bus, and its --once and --json snapshots read by a script.
#include <nlohmann/json.hpp>

#include "bus_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

class BusTop : public BusTest {
protected:
    void SetUp() override {
        BusTest::SetUp();
        socket_ = "shmbus-test-" + std::to_string(getpid());
        // A detached durable subscription holding three messages, and a topic with a live reader.
        ASSERT_EQ(cli({"sub", "orders", "--durable", "audit", "--count", "0"}).code, 0);
        ASSERT_EQ(cli({"pub", "orders", "a", "b", "c"}).code, 0);
        ASSERT_EQ(cli({"topic", "create", "prices"}).code, 0);
    }
    void TearDown() override {
        (void)tmux({"kill-server"});
        BusTest::TearDown();
    }
    RunResult tmux(std::vector<std::string> args) {
        args.insert(args.begin(), {"/usr/bin/tmux", "-L", socket_});
        return run(std::move(args), "", 10s);
    }
    std::string screen() { return tmux({"capture-pane", "-p", "-t", "top"}).out; }
    bool screen_shows(const std::string& text) {
        return eventually([&] { return screen().find(text) != std::string::npos; }, 5s);
    }
    std::string socket_;
};

TEST_F(BusTop, ALiveScreenShowsTheBusAndAnswersKeys) {
    if (access("/usr/bin/tmux", X_OK) != 0) GTEST_SKIP() << "needs tmux";
    const auto started = tmux({"new-session", "-d", "-s", "top", "-x", "160", "-y", "40",
                               std::string(BUS_TOP_PATH) + " --dir " + dir + " --interval 200ms"});
    ASSERT_EQ(started.code, 0) << started.err;
    ASSERT_TRUE(screen_shows("shmbusd pid " + std::to_string(daemon))) << screen();
    EXPECT_TRUE(screen_shows("topics 2")) << screen();
    const std::string s = screen();
    EXPECT_NE(s.find("orders"), std::string::npos) << s;
    EXPECT_NE(s.find("prices"), std::string::npos) << s;
    // The first topic (by name: orders) is selected; its subscriptions show, the ownerless one flagged.
    EXPECT_NE(s.find("subscriptions of orders"), std::string::npos) << s;
    EXPECT_NE(s.find("subscription 'audit' has no owner"), std::string::npos) << s;
    ASSERT_EQ(tmux({"send-keys", "-t", "top", "Down"}).code, 0);
    EXPECT_TRUE(screen_shows("subscriptions of prices")) << screen();
    ASSERT_EQ(tmux({"send-keys", "-t", "top", "s"}).code, 0);
    EXPECT_TRUE(screen_shows("sort: rate")) << screen();
    ASSERT_EQ(tmux({"send-keys", "-t", "top", "h"}).code, 0);
    EXPECT_TRUE(screen_shows("q quit  up/down select")) << screen();
    // Live figures move: publishing shows up in the view.
    ASSERT_EQ(cli({"pub", "orders", "d"}).code, 0);
    EXPECT_TRUE(eventually([&] {
        const std::string now = screen();
        const auto row = now.find("orders  ");
        return row != std::string::npos && now.find(" 4 ", row) != std::string::npos;  // its lag is 4 now
    }, 5s)) << screen();
    ASSERT_EQ(tmux({"send-keys", "-t", "top", "q"}).code, 0);
    EXPECT_TRUE(eventually([&] { return tmux({"has-session", "-t", "top"}).code != 0; }, 5s));
}

TEST_F(BusTop, OnceAndJsonPrintOneSnapshot) {
    const auto once = run({BUS_TOP_PATH, "--dir", dir, "--once", "--interval", "100ms"}, "", 10s);
    EXPECT_EQ(once.code, 0) << once.err;
    EXPECT_NE(once.out.find("shmbusd pid " + std::to_string(daemon)), std::string::npos) << once.out;
    EXPECT_NE(once.out.find("subscriptions of orders"), std::string::npos) << once.out;
    const auto r = run({BUS_TOP_PATH, "--dir", dir, "--json", "--interval", "100ms"}, "", 10s);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["supervisor"]["pid"], daemon);
    EXPECT_EQ(j["supervisor"]["topics"], 2);
    ASSERT_EQ(j["topics"].size(), 2u);
    const auto& orders = j["topics"][0];
    EXPECT_EQ(orders["name"], "orders");
    EXPECT_EQ(orders["slowest_lag"], 3);
    EXPECT_EQ(orders["depth_bytes"], 3 * 64);
    EXPECT_EQ(orders["subscriptions"][0]["name"], "audit");
    EXPECT_EQ(orders["subscriptions"][0]["alive"], false);
    EXPECT_EQ(orders["trouble"][0], "subscription 'audit' has no owner");
    EXPECT_EQ(run({BUS_TOP_PATH, "--dir", dir, "--interval", "soon", "--once"}, "", 10s).code, 2);
}

// A consumer group shows in its topic's details: members, lag, in flight, waiting retry; a group
// with work and no members is trouble.
TEST_F(BusTop, GroupsShowWithTheirProgressAndTrouble) {
    ASSERT_EQ(cli({"group", "create", "orders", "workers", "--from", "earliest"}).code, 0);
    const auto once = run({BUS_TOP_PATH, "--dir", dir, "--once", "--interval", "100ms"}, "", 10s);
    EXPECT_EQ(once.code, 0) << once.err;
    EXPECT_NE(once.out.find("groups of orders"), std::string::npos) << once.out;
    EXPECT_NE(once.out.find("group 'workers' has work and no members"), std::string::npos) << once.out;
    const auto r = run({BUS_TOP_PATH, "--dir", dir, "--json", "--interval", "100ms"}, "", 10s);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    const auto& orders = j["topics"][0];
    ASSERT_EQ(orders["groups"].size(), 1u);
    EXPECT_EQ(orders["groups"][0]["name"], "workers");
    EXPECT_EQ(orders["groups"][0]["members"], 0);
    EXPECT_EQ(orders["groups"][0]["lag"], 3);
    EXPECT_EQ(orders["groups"][0]["in_flight"], 0);
}

// A group's backlog is its topic's: it counts in the topic row's MAX LAG (and so in --sort lag),
// and a group whose lag grows over the interval makes the topic red, like a subscription's.
TEST_F(BusTop, AGroupsLagCountsInItsTopicsRowAndGrowingIsTrouble) {
    ASSERT_EQ(cli({"topic", "create", "jobs"}).code, 0);  // no other reader: its lag is the group's alone
    ASSERT_EQ(cli({"group", "create", "jobs", "workers", "--from", "earliest"}).code, 0);
    auto group_lag = [&]() -> int64_t {
        const auto r = cli({"group", "info", "jobs", "workers", "--json"});
        return r.code == 0 ? nlohmann::json::parse(r.out).at("lag").get<int64_t>() : -1;
    };
    const pid_t member = spawn({SHMBUS_CLI_PATH, "--dir", dir, "sub", "jobs", "--group", "workers"},
                               {path("member.out"), path("member.err")});
    ASSERT_TRUE(eventually([&] { return group_lag() == 0; })) << read_file(path("member.err"));
    kill(member, SIGSTOP);  // a member that stopped working: the group's lag grows from here
    const pid_t publisher = spawn({"/bin/sh", "-c", "while :; do " + std::string(SHMBUS_CLI_PATH) + " --dir " + dir +
                                                        " pub jobs x >/dev/null; sleep 0.01; done"});
    ASSERT_TRUE(eventually([&] { return group_lag() > 0; }));
    const auto r = run({BUS_TOP_PATH, "--dir", dir, "--json", "--interval", "300ms"}, "", 10s);
    kill(publisher, SIGKILL);
    (void)wait_exit(publisher);
    kill(member, SIGKILL);
    (void)wait_exit(member);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    nlohmann::json jobs;
    for (const auto& t : j["topics"])
        if (t["name"] == "jobs") jobs = t;
    ASSERT_EQ(jobs["groups"].size(), 1u) << r.out;
    const uint64_t lag = jobs["groups"][0]["lag"];
    EXPECT_GT(lag, 0u);
    EXPECT_EQ(uint64_t(jobs["slowest_lag"]), lag);  // the topic row's MAX LAG (and --sort lag)
    EXPECT_TRUE(jobs["groups"][0]["lag_growing"]);
    bool named = false;
    for (const auto& why : jobs["trouble"]) named = named || why == "group 'workers' lag growing";
    EXPECT_TRUE(named) << jobs["trouble"].dump();
}

// The most common problem: a durable reader limited to 300 messages a second throttles the
// publisher on a full ring. Nothing is refused, yet the row is red, says publishers wait and who
// holds them back; topic info and the metrics have the same figures (waiting_publishers,
// full_wait_ns, depth_bytes).
TEST_F(BusTop, APublisherWaitingForRoomIsTroubleNamingWhoHoldsItBack) {
    ASSERT_EQ(cli({"topic", "create", "slow", "--capacity", "64K"}).code, 0);
    const pid_t reader = spawn({SHMBUS_CLI_PATH, "--dir", dir, "sub", "slow", "--durable", "reader", "--rate", "300/s"},
                               {path("reader.out"), path("reader.err")});
    // The reader's cursor first: a publisher that got ahead of it would find nothing to hold it back.
    ASSERT_TRUE(eventually([&] {
        auto c = connect();
        auto s = c ? c->topic_stats("slow") : Result<TopicStats>(make_error(Errc::topic_not_found, ""));
        return s && std::any_of(s->subscriptions.begin(), s->subscriptions.end(), [](const SubscriptionStats& x) { return x.durable && x.attached; });
    })) << read_file(path("reader.err"));
    const pid_t publisher = spawn({"/bin/sh", "-c", "yes x | head -n 100000 | " + std::string(SHMBUS_CLI_PATH) + " --dir " + dir +
                                                        " pub slow --timeout 60s"},
                                  {path("pub.out"), path("pub.err")});
    auto info = [&] {
        const auto r = cli({"topic", "info", "slow", "--json"});
        return r.code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
    };
    ASSERT_TRUE(eventually([&] { return info().value("waiting_publishers", 0) > 0; })) << read_file(path("pub.err"));
    const auto r = run({BUS_TOP_PATH, "--dir", dir, "--json", "--interval", "300ms"}, "", 10s);
    const nlohmann::json topic = info();
    kill(publisher, SIGKILL);
    (void)wait_exit(publisher);
    kill(reader, SIGKILL);
    (void)wait_exit(reader);
    EXPECT_GT(topic.value("full_wait_ns", uint64_t(0)), 0u);
    EXPECT_GT(topic.value("depth_bytes", uint64_t(0)), 32u * 1024);  // over half the ring unacked
    ASSERT_EQ(r.code, 0) << r.err;
    const auto all = nlohmann::json::parse(r.out);
    nlohmann::json slow;
    for (const auto& t : all["topics"])
        if (t["name"] == "slow") slow = t;
    ASSERT_FALSE(slow.is_null()) << r.out;
    EXPECT_EQ(slow["full_refusals"], 0);  // throttled, never refused
    EXPECT_GT(double(slow["waited_s_in_interval"]), 0.1);
    bool named = false;
    for (const auto& why : slow["trouble"])
        named = named || why.get<std::string>().rfind("publishers waiting for room, held back by durable subscription 'reader'", 0) == 0;
    EXPECT_TRUE(named) << slow["trouble"].dump();
}

// A group whose oldest unsettled message was first delivered longer ago than its visibility
// timeout (a command that never finishes, killed and retried) is trouble, with the age in the
// topic's JSON.
TEST_F(BusTop, AGroupMessageUnsettledPastItsVisibilityIsTrouble) {
    ASSERT_EQ(cli({"topic", "create", "tasks"}).code, 0);
    ASSERT_EQ(cli({"group", "create", "tasks", "workers", "--visibility", "200ms", "--max-deliveries", "100"}).code, 0);
    const pid_t member = spawn({SHMBUS_CLI_PATH, "--dir", dir, "sub", "tasks", "--group", "workers", "--exec", "sleep 10"},
                               {path("member.out"), path("member.err")});
    ASSERT_EQ(cli({"pub", "tasks", "stuck"}).code, 0);
    auto age = [&]() -> double {
        const auto r = cli({"group", "info", "tasks", "workers", "--json"});
        if (r.code != 0) return -1;
        const auto j = nlohmann::json::parse(r.out);
        return j.contains("oldest_unsettled_ms") && !j["oldest_unsettled_ms"].is_null() ? j["oldest_unsettled_ms"].get<double>() / 1000 : -1;
    };
    ASSERT_TRUE(eventually([&] { return age() > 0.5; })) << read_file(path("member.err"));
    const auto r = run({BUS_TOP_PATH, "--dir", dir, "--json", "--interval", "100ms"}, "", 10s);
    kill(member, SIGKILL);
    (void)wait_exit(member);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto all = nlohmann::json::parse(r.out);
    nlohmann::json tasks;
    for (const auto& t : all["topics"])
        if (t["name"] == "tasks") tasks = t;
    ASSERT_FALSE(tasks.is_null()) << r.out;
    EXPECT_GT(tasks["oldest_unsettled_s"].get<double>(), 0.5);
    bool named = false;
    for (const auto& why : tasks["trouble"])
        named = named || why.get<std::string>().rfind("group 'workers' has a message unsettled for ", 0) == 0;
    EXPECT_TRUE(named) << tasks["trouble"].dump();
}

}  // namespace
}  // namespace shmbus::test
