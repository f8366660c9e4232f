// The exactly-once examples under chaos: every process of an example (its sources, its services,
// and shmbusd itself) is SIGKILLed at random moments and started again, then the example's own
// check verifies the final database state: everything applied exactly once (orders: reserved,
// charged and shipped once, or dead-lettered with the provider's reason). The random seed is
// printed so a failure can be replayed (SHMBUS_CHAOS_SEED).
#include <sys/wait.h>

#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "bus_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

struct Example {
    const char* name;
    std::vector<std::string> services;              // run until the end, restarted when killed
    std::vector<std::vector<std::string>> sources;  // run to completion, restarted until they finish
    std::vector<std::string> check_extra;
    uint64_t count;
};

void PrintTo(const Example& e, std::ostream* os) { *os << e.name; }

class ExampleUnderChaos : public BusTest, public ::testing::WithParamInterface<Example> {
protected:
    struct Proc {
        std::vector<std::string> args;
        bool source = false;
        pid_t pid = -1;
        bool finished = false;
        int starts = 0;
    };

    std::string bin() const { return std::string(SHMBUS_EXAMPLES_DIR) + "/" + GetParam().name; }
    std::vector<std::string> common() const { return {"--dir", dir, "--data", path("data")}; }

    void start(Proc& p) {
        std::vector<std::string> args{bin()};
        args.insert(args.end(), p.args.begin(), p.args.end());
        const auto c = common();
        args.insert(args.end(), c.begin(), c.end());
        const std::string tag = p.args[0] + (p.args.size() > 2 && p.args[1] == "--name" ? "-" + p.args[2] : "");
        p.pid = spawn(args, {path(tag + ".out"), path(tag + "." + std::to_string(p.starts++) + ".err")});
    }
    // A source that exited on its own is done if it succeeded; one that was killed starts again.
    void reap_sources() {
        for (Proc& p : procs_) {
            if (!p.source || p.finished || p.pid <= 0) continue;
            int status = 0;
            if (waitpid(p.pid, &status, WNOHANG) != p.pid) continue;
            p.pid = -1;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) p.finished = true;
            else start(p);
        }
    }
    int check(std::string& out) {
        std::vector<std::string> args{bin(), "check", "--count", std::to_string(GetParam().count)};
        const auto c = common();
        args.insert(args.end(), c.begin(), c.end());
        args.insert(args.end(), GetParam().check_extra.begin(), GetParam().check_extra.end());
        auto r = run(args);
        out = r.out + r.err;
        return r.code;
    }
    void TearDown() override {
        for (Proc& p : procs_)
            if (p.pid > 0) kill(p.pid, SIGTERM);
        for (Proc& p : procs_)
            if (p.pid > 0) (void)wait_exit(p.pid, 10s);
        BusTest::TearDown();
    }

    std::vector<Proc> procs_;
};

TEST_P(ExampleUnderChaos, EveryProcessKilledAtRandomMomentsAndStillExactlyOnce) {
    const Example& e = GetParam();
    std::filesystem::create_directories(path("data"));
    const char* env_seed = std::getenv("SHMBUS_CHAOS_SEED");
    const uint64_t seed = env_seed ? std::strtoull(env_seed, nullptr, 10) : std::random_device{}();
    std::mt19937_64 rng(seed);
    std::printf("chaos seed %llu\n", (unsigned long long)seed);
    for (const auto& s : e.services) procs_.push_back({{s}, false});
    for (const auto& s : e.sources) procs_.push_back({s, true});
    for (Proc& p : procs_) start(p);

    // A source killed in its first moments (mid-way through its messages, for a fast one), then
    // three seconds of chaos: a kill every 50-250 ms, shmbusd's own halfway through.
    std::map<std::string, int> kills;
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 40));
    for (Proc& p : procs_) {
        if (!p.source || p.pid <= 0 || rng() % 2 == 0) continue;
        kill(p.pid, SIGKILL);
        (void)wait_exit(p.pid);  // it may have finished first
        p.pid = -1;
        ++kills[p.args[0]];
        start(p);
    }
    const auto chaos_end = std::chrono::steady_clock::now() + 3s;
    bool daemon_killed = false;
    while (std::chrono::steady_clock::now() < chaos_end) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 200));
        reap_sources();
        if (!daemon_killed && std::chrono::steady_clock::now() > chaos_end - 1500ms) {
            kill_daemon();
            std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 200));
            start_daemon();
            daemon_killed = true;
            continue;
        }
        std::vector<Proc*> live;
        for (Proc& p : procs_)
            if (p.pid > 0) live.push_back(&p);
        if (live.empty()) continue;
        Proc& victim = *live[rng() % live.size()];
        kill(victim.pid, SIGKILL);
        EXPECT_EQ(wait_exit(victim.pid), 128 + SIGKILL);
        victim.pid = -1;
        ++kills[victim.args[0]];
        start(victim);
    }
    for (const auto& [who, n] : kills) std::printf("killed %s %d times\n", who.c_str(), n);

    // Calm: the sources finish, the services drain, and the check must pass, never see a repeat.
    std::string out;
    int rc = 1;
    const auto deadline = std::chrono::steady_clock::now() + 90s;
    while (std::chrono::steady_clock::now() < deadline) {
        reap_sources();
        rc = check(out);
        if (rc != 1) break;
        std::this_thread::sleep_for(200ms);
    }
    EXPECT_EQ(rc, 0) << "seed " << seed << "\n" << out;
    for (const Proc& p : procs_) EXPECT_TRUE(!p.source || p.finished) << p.args[0];
}

INSTANTIATE_TEST_SUITE_P(
    Examples, ExampleUnderChaos,
    ::testing::Values(Example{"orders", {"inventory", "payment", "shipping"}, {{"shop", "--count", "300"}}, {}, 300},
                      Example{"notifications", {"email", "sms"}, {{"events", "--count", "1500"}}, {}, 1500},
                      Example{"logging", {"aggregator"},
                              {{"app", "--name", "web", "--count", "400"}, {"app", "--name", "api", "--count", "400"},
                               {"app", "--name", "worker", "--count", "400"}},
                              {"--name", "web,api,worker"}, 400},
                      Example{"etl", {"transform", "load"}, {{"extract", "--count", "600"}}, {}, 600}),
    [](const ::testing::TestParamInfo<Example>& info) { return std::string(info.param.name); });

// examples/run.sh works in $TMPDIR and leaves nothing behind: neither its directory nor the topics'
// shared memory in /dev/shm.
TEST_F(BusTest, TheExampleScriptLeavesNothingBehind) {
    const std::string tmp = path("tmp");
    std::filesystem::create_directories(tmp);
    const std::string build = std::filesystem::path(SHMBUS_EXAMPLES_DIR).parent_path().string();
    const auto r = run({"/usr/bin/env", "TMPDIR=" + tmp, "SHMBUS_BUILD_DIR=" + build,
                        std::string(SHMBUS_SOURCE_DIR) + "/examples/run.sh", "logging", "20"},
                       "", 120s);
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    const auto at = r.out.find("== logging: bus ");
    ASSERT_NE(at, std::string::npos) << r.out;
    const std::string bus_id = r.out.substr(at + 16, 16);
    EXPECT_TRUE(std::filesystem::is_empty(tmp));
    for (const auto& e : std::filesystem::directory_iterator("/dev/shm"))
        EXPECT_NE(e.path().filename().string().rfind("shmbus-" + bus_id + "-", 0), 0u) << e.path();
}

// The aggregator's lag is visible with the project's tools while it is stopped, and gone after.
TEST_F(BusTest, TheLoggingAggregatorsLagShowsInTopicInfo) {
    const std::string bin = std::string(SHMBUS_EXAMPLES_DIR) + "/logging";
    std::filesystem::create_directories(path("data"));
    const std::vector<std::string> common{"--dir", dir, "--data", path("data")};
    auto with = [&](std::vector<std::string> args) {
        args.insert(args.begin(), bin);
        args.insert(args.end(), common.begin(), common.end());
        return args;
    };
    pid_t agg = spawn(with({"aggregator"}), {path("agg.out"), path("agg.err")});
    auto lag = [&]() -> int64_t {
        const auto r = cli({"topic", "info", "logs", "--json"});
        if (r.code != 0) return -1;  // no topic yet
        const auto info = nlohmann::json::parse(r.out);
        for (const auto& s : info.at("subscriptions"))
            if (s.at("name") == "aggregator") return s.at("lag").get<int64_t>();
        return -1;
    };
    ASSERT_TRUE(eventually([&] { return lag() == 0; })) << read_file(path("agg.err"));
    kill(agg, SIGSTOP);
    EXPECT_EQ(run(with({"app", "--name", "web", "--count", "50"})).code, 0);
    EXPECT_EQ(lag(), 50);
    kill(agg, SIGCONT);
    EXPECT_TRUE(eventually([&] { return lag() == 0; }, 30s));
    EXPECT_EQ(run(with({"check", "--count", "50", "--name", "web"})).code, 0);
    kill(agg, SIGTERM);
    EXPECT_EQ(wait_exit(agg), 0);
}

// A consumer killed between its database commit and its ack: the messages it committed come again
// and are recognised, nothing is counted twice.
TEST_F(BusTest, AnAggregatorKilledBetweenItsCommitAndItsAckCountsNothingTwice) {
    const std::string bin = std::string(SHMBUS_EXAMPLES_DIR) + "/logging";
    std::filesystem::create_directories(path("data"));
    const std::vector<std::string> args{bin, "aggregator", "--dir", dir, "--data", path("data")};
    auto run_app = [&](const char* name) {
        return run({bin, "app", "--name", name, "--count", "300", "--dir", dir, "--data", path("data")}).code;
    };
    ASSERT_EQ(run_app("web"), 0);
    pid_t doomed = spawn(args, {path("agg1.out"), path("agg1.err"), "", std::nullopt, {"SHMBUS_CRASH_POINT=after_store_commit:120"}});
    EXPECT_EQ(wait_exit(doomed), 128 + SIGKILL) << read_file(path("agg1.err"));
    pid_t again = spawn(args, {path("agg2.out"), path("agg2.err")});
    ASSERT_EQ(run_app("api"), 0);
    std::string out;
    EXPECT_TRUE(eventually([&] {
        const auto r = run({bin, "check", "--count", "300", "--name", "web,api", "--dir", dir, "--data", path("data")});
        out = r.out;
        return r.code != 1;
    }, 30s));
    EXPECT_NE(out.find("web info: 180 of 180, 0 applied more than once"), std::string::npos) << out;
    EXPECT_EQ(run({bin, "check", "--count", "300", "--name", "web,api", "--dir", dir, "--data", path("data")}).code, 0) << out;
    kill(again, SIGTERM);
    EXPECT_EQ(wait_exit(again), 0);
}

}  // namespace
}  // namespace shmbus::test
