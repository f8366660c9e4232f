// Randomized chaos: publishers, durable subscribers, members of a consumer group (which nack a
// share of first deliveries) and shmbusd run under load while a driver
// SIGKILLs and restarts random processes, and SIGSTOPs publishers (the topic has an
// unblock-timeout, so one stopped inside a claim loses it and publishes the message again). Afterwards every durable subscriber must have seen
// every committed message at least once, in id order, with duplicates only of unacked ones; the
// group's members together must have processed every committed message at least once;
// the final drain must finish within a bound (nobody waits on a dead process); and a clean
// shutdown must leave no segment and no socket behind.
//
//   SHMBUS_CHAOS_SECONDS  how long the killing goes on (default 5: CI-sized)
//   SHMBUS_CHAOS_SEED     replay a run; the seed of every run is printed
#include <random>

#include "peer_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

uint64_t env_or(const char* name, uint64_t fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

class Chaos : public PeerTest {
protected:
    static constexpr int kPublishers = 3;
    static constexpr int kSubscribers = 3;
    static constexpr int kMembers = 2;

    pid_t start_publisher(int slot) {
        const int producer = next_producer_++;
        pub_names_[slot] = "pub" + std::to_string(producer);
        pub_logs_.push_back(path("pub" + std::to_string(producer) + ".log"));
        return start_pub("pub" + std::to_string(producer),
                         {"chaos", "100000000", std::to_string(producer), "--pace-us", "50", "--hold-us", "50", "--size",
                          std::to_string(24 + slot * 40), "--log", pub_logs_.back(), "--wait-for-daemon"});
    }
    pid_t start_subscriber(int k, std::vector<std::string> extra = {}) {
        // Messages flow all the time (publishers are restarted at once), so a subscriber that waits
        // 3 s for the next one is stuck on something dead: it exits with status 5 and fails the test.
        std::vector<std::string> args{"chaos", "--durable", "c" + std::to_string(k), "--log", sub_log(k), "--wait-for-daemon",
                                      "--stall-limit-ms", "3000"};
        args.insert(args.end(), extra.begin(), extra.end());
        sub_names_[k] = "sub" + std::to_string(k) + "-" + std::to_string(++sub_runs_);
        return spawn_sub(sub_names_[k], args);
    }
    std::string sub_log(int k) const { return path("sub" + std::to_string(k) + ".log"); }
    pid_t start_member(int k) {
        const std::string name = "member" + std::to_string(k) + "-" + std::to_string(++member_runs_);
        return spawn({SHMBUS_PEER_PATH, "member", dir, "chaos", "--group", "workers", "--log", member_log(k), "--nack-every", "7",
                      "--wait-for-daemon"},
                     {path(name + ".out"), path(name + ".err")});
    }
    std::string member_log(int k) const { return path("member" + std::to_string(k) + ".log"); }
    // Ids any member logged as processed.
    std::set<uint64_t> processed_by_members() const {
        std::set<uint64_t> ids;
        for (int k = 0; k < kMembers; ++k) {
            std::istringstream in(read_file(member_log(k)));
            for (std::string line; std::getline(in, line);)
                if (!line.empty() && line.rfind("bad", 0) != 0) ids.insert(std::stoull(line));
        }
        return ids;
    }

    // Ids that publishers logged as committed (a publisher killed between commit and log may
    // have committed a few more: subscribers may see those too).
    std::set<uint64_t> committed_ids() const {
        std::set<uint64_t> ids;
        for (const auto& log : pub_logs_) {
            std::istringstream in(read_file(log));
            uint64_t id = 0, seq = 0;
            while (in >> id >> seq) ids.insert(id);
        }
        return ids;
    }

    std::string pub_names_[kPublishers], sub_names_[kSubscribers];  // of the running incarnations
    int next_producer_ = 0;
    int sub_runs_ = 0;
    int member_runs_ = 0;
    std::vector<std::string> pub_logs_;
};

TEST_F(Chaos, EveryDurableSubscriberSeesEveryCommittedMessageWhateverIsKilled) {
    const uint64_t seconds = env_or("SHMBUS_CHAOS_SECONDS", 5);
    const uint64_t seed = env_or("SHMBUS_CHAOS_SEED", std::random_device{}());
    std::printf("chaos: seed %llu, %llu s (replay with SHMBUS_CHAOS_SEED=%llu)\n", (unsigned long long)seed,
                (unsigned long long)seconds, (unsigned long long)seed);
    RecordProperty("seed", std::to_string(seed));
    std::mt19937_64 rng(seed);

    auto c = connect();
    TopicConfig config;
    config.capacity = 256 << 10;
    config.unblock_timeout = 20ms;  // publishers SIGSTOPped inside a claim lose it
    ASSERT_TRUE(c->create_topic("chaos", config).has_value());
    // Every durable subscription exists before the first message, so all must see all.
    for (int k = 0; k < kSubscribers; ++k) {
        SubscribeOptions o;
        o.durable_name = "c" + std::to_string(k);
        ASSERT_TRUE(c->subscribe("chaos", o).has_value());
    }
    GroupSettings group;  // as the members ask for it (peer.cpp, run_member)
    group.max_deliveries = 0;
    group.backoff_initial = 1ms;
    group.backoff_max = 5ms;
    group.visibility = 2s;
    ASSERT_TRUE(c->create_group("chaos", "workers", group, StartFrom::earliest).has_value());
    c = make_error(Errc::ok, "");  // our own client goes: only peers from here on

    std::vector<pid_t> pubs, subs, members;
    for (int p = 0; p < kPublishers; ++p) pubs.push_back(start_publisher(p));
    for (int k = 0; k < kSubscribers; ++k) subs.push_back(start_subscriber(k));
    for (int k = 0; k < kMembers; ++k) members.push_back(start_member(k));

    std::map<std::string, int> kills;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < end) {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(20, 200)(rng)));
        const int action = std::uniform_int_distribution<int>(0, 11)(rng);
        if (action >= 10) {  // a group member, holding whatever it holds
            const int k = std::uniform_int_distribution<int>(0, kMembers - 1)(rng);
            kill(members[k], SIGKILL);
            EXPECT_EQ(wait_exit(members[k]), 128 + SIGKILL) << "member " << k << " exited by itself";
            members[k] = start_member(k);
            ++kills["killed a group member"];
        } else if (action < 4) {  // a publisher, at whatever instruction it is at
            const int p = std::uniform_int_distribution<int>(0, kPublishers - 1)(rng);
            kill(pubs[p], SIGKILL);
            EXPECT_EQ(wait_exit(pubs[p]), 128 + SIGKILL) << "publisher exited by itself: " << read_file(path(pub_names_[p] + ".err"));
            pubs[p] = start_publisher(p);
            ++kills["killed a publisher"];
        } else if (action < 7) {  // a durable subscriber
            const int k = std::uniform_int_distribution<int>(0, kSubscribers - 1)(rng);
            kill(subs[k], SIGKILL);
            EXPECT_EQ(wait_exit(subs[k]), 128 + SIGKILL) << "subscriber c" << k << " exited by itself: "
                                                          << read_file(path(sub_names_[k] + ".err"));
            subs[k] = start_subscriber(k);
            ++kills["killed a subscriber"];
        } else if (action < 8) {  // a publisher stopped (likely inside a claim) and continued
            const int p = std::uniform_int_distribution<int>(0, kPublishers - 1)(rng);
            kill(pubs[p], SIGSTOP);
            std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(30, 200)(rng)));
            kill(pubs[p], SIGCONT);
            ++kills["stopped a publisher"];
        } else {  // the supervisor; back after a pause
            kill_daemon();
            std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 150)(rng)));
            start_daemon();
            ++kills["killed shmbusd"];
        }
    }
    for (auto& [what, n] : kills) std::printf("chaos: %s %d times\n", what.c_str(), n);

    // Stop the load; one last publisher marks the end, then every subscriber must drain to it.
    for (pid_t p : pubs) {
        kill(p, SIGKILL);
        EXPECT_EQ(wait_exit(p), 128 + SIGKILL) << "a publisher exited by itself";
    }
    for (pid_t s : subs) {
        kill(s, SIGKILL);
        EXPECT_EQ(wait_exit(s), 128 + SIGKILL) << "a subscriber exited by itself (stuck, or bad messages)";
    }
    pid_t last = start_pub("last", {"chaos", "100", "999", "--log", path("last.log")});
    pub_logs_.push_back(path("last.log"));
    ASSERT_EQ(wait_exit(last, 30s), 0) << read_file(path("last.err"));
    const std::set<uint64_t> committed = committed_ids();
    ASSERT_FALSE(committed.empty());
    const uint64_t final_id = *committed.rbegin();
    const auto drain_start = std::chrono::steady_clock::now();
    for (int k = 0; k < kSubscribers; ++k) subs[k] = start_subscriber(k, {"--until-id", std::to_string(final_id)});
    for (int k = 0; k < kSubscribers; ++k) EXPECT_EQ(wait_exit(subs[k], 60s), 0) << "subscriber c" << k << " did not drain";
    const double drain_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - drain_start).count();
    std::printf("chaos: %zu messages committed and logged; final drain took %.2f s\n", committed.size(), drain_s);
    EXPECT_LT(drain_s, 20.0) << "someone waited on a dead process";

    // The group: its members drain it (nothing taken and unsettled, nothing left to take).
    auto settled = [&] {
        auto st = connect()->topic_stats("chaos");
        return st && !st->groups.empty() && st->groups[0].lag == 0 && st->groups[0].in_flight == 0 &&
               st->groups[0].waiting_retry == 0;
    };
    EXPECT_TRUE(eventually(settled, 30s)) << "the group did not drain";
    for (pid_t m : members) {
        kill(m, SIGKILL);
        EXPECT_EQ(wait_exit(m), 128 + SIGKILL) << "a member exited by itself (stuck, or bad messages)";
    }
    const std::set<uint64_t> processed = processed_by_members();
    std::vector<uint64_t> unprocessed;
    std::set_difference(committed.begin(), committed.end(), processed.begin(), processed.end(), std::back_inserter(unprocessed));
    EXPECT_TRUE(unprocessed.empty()) << "the group never processed " << unprocessed.size() << " committed message(s), first "
                                     << unprocessed.front();
    if (auto st = connect()->topic_stats("chaos"); st && !st->groups.empty()) {
        const auto& g = st->groups[0];
        std::printf("chaos: group processed %zu distinct ids; %llu nacked, %llu redelivered, %llu moved to the tail\n",
                    processed.size(), (unsigned long long)g.nacked, (unsigned long long)g.redelivered,
                    (unsigned long long)g.reparked);
    }

    for (int k = 0; k < kSubscribers; ++k) {
        const DurableLog d = check_durable_log(sub_log(k));
        EXPECT_EQ(d.problem, "") << "subscriber c" << k;
        std::vector<uint64_t> missing;
        std::set_difference(committed.begin(), committed.end(), d.ids.begin(), d.ids.end(), std::back_inserter(missing));
        EXPECT_TRUE(missing.empty()) << "subscriber c" << k << " never saw " << missing.size() << " committed message(s), first "
                                     << missing.front();
        std::printf("chaos: c%d saw %zu distinct ids in %llu incarnations, %llu duplicates\n", k, d.ids.size(),
                    (unsigned long long)d.incarnations, (unsigned long long)d.duplicates);
    }

    if (auto st = connect()->topic_stats("chaos")) {
        const auto& r = st->recovery;
        std::printf("chaos: shmbusd sealed %llu dead claims, took back %llu stalled ones (%llu late commits refused), "
                    "released %llu producer slots, detached %llu durable cursors\n",
                    (unsigned long long)r.dead_claims_sealed, (unsigned long long)r.stalled_claims_unblocked,
                    (unsigned long long)r.late_commits_refused, (unsigned long long)r.producers_released,
                    (unsigned long long)r.subscribers_detached);
    }

    // A clean shutdown leaves nothing behind.
    const std::string prefix = "shmbus-" + read_file(path("bus.id")).substr(0, 16) + "-";
    ASSERT_EQ(cli({"topic", "delete", "chaos"}).code, 0);
    stop_daemon();
    for (const auto& e : std::filesystem::directory_iterator("/dev/shm"))
        EXPECT_NE(e.path().filename().string().rfind(prefix, 0), 0u) << "left behind: " << e.path();
    EXPECT_FALSE(std::filesystem::exists(socket_path(dir)));
}

}  // namespace
}  // namespace shmbus::test
