// Multi-process tests that drive the test peer (tests/process/peer.cpp) against a fresh shmbusd.
#pragma once

#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bus_fixture.h"

namespace shmbus::test {

// The summary line a `peer sub` prints.
struct Summary {
    uint64_t received = 0, lost = 0, bad = 0, last_id = 0;
};

inline Summary parse_summary(const std::string& out) {
    Summary s;
    std::sscanf(out.c_str(), "received=%lu lost=%lu bad=%lu last_id=%lu", &s.received, &s.lost, &s.bad, &s.last_id);
    return s;
}

class PeerTest : public BusTest {
protected:
    // Starts a subscriber peer and waits until it has subscribed.
    pid_t start_sub(const std::string& name, std::vector<std::string> extra, std::vector<std::string> env = {}) {
        const std::string ready = path(name + ".ready");
        std::filesystem::remove(ready);
        std::vector<std::string> args{SHMBUS_PEER_PATH, "sub", dir};
        args.insert(args.end(), extra.begin(), extra.end());
        args.insert(args.end(), {"--ready", ready});
        pid_t pid = spawn(args, {path(name + ".out"), path(name + ".err"), "", std::nullopt, std::move(env)});
        EXPECT_TRUE(eventually([&] { return std::filesystem::exists(ready); })) << read_file(path(name + ".err"));
        return pid;
    }
    // Starts a subscriber peer without waiting for it (it may die before subscribing).
    pid_t spawn_sub(const std::string& name, std::vector<std::string> extra, std::vector<std::string> env = {}) {
        std::vector<std::string> args{SHMBUS_PEER_PATH, "sub", dir};
        args.insert(args.end(), extra.begin(), extra.end());
        return spawn(args, {path(name + ".out"), path(name + ".err"), "", std::nullopt, std::move(env)});
    }
    pid_t start_pub(const std::string& name, std::vector<std::string> extra, std::vector<std::string> env = {}) {
        std::vector<std::string> args{SHMBUS_PEER_PATH, "pub", dir};
        args.insert(args.end(), extra.begin(), extra.end());
        return spawn(args, {path(name + ".out"), path(name + ".err"), "", std::nullopt, std::move(env)});
    }
    std::optional<TopicStats> stats(const std::string& topic) {
        auto c = connect();
        if (!c) return std::nullopt;
        auto s = c->topic_stats(topic);
        if (!s) return std::nullopt;
        return std::move(s.value());
    }
    Summary finish_sub(const std::string& name, pid_t pid) {
        EXPECT_EQ(wait_exit(pid), 0) << read_file(path(name + ".err"));
        return parse_summary(read_file(path(name + ".out")));
    }
};

}  // namespace shmbus::test

namespace shmbus::test {

// Reads the --log of every incarnation of one durable subscriber and checks the at-least-once
// contract: ids increase within an incarnation; each incarnation starts no later than one past
// the last id logged before it (nothing skipped) and no earlier than the last ack recorded
// before it (only unacked messages come again). Returns the ids seen; `problem` says what broke.
struct DurableLog {
    std::set<uint64_t> ids;
    uint64_t duplicates = 0;
    uint64_t incarnations = 0;
    std::string problem;
};

inline DurableLog check_durable_log(const std::string& path) {
    DurableLog out;
    std::istringstream in(read_file(path));
    std::string line;
    bool any = false;
    uint64_t last_logged = 0, last_ack = 0, prev = 0;
    bool fresh = true;  // no message yet in this incarnation
    while (std::getline(in, line)) {
        unsigned long long a = 0, b = 0, c = 0;
        if (std::sscanf(line.c_str(), "attach %llu", &a) == 1) {
            ++out.incarnations;
            // Skip records (sealed claims) are stepped over and acked, never logged: the ack covers them.
            if (any && a > std::max(last_logged + 1, last_ack)) out.problem += "incarnation resumed at " + std::to_string(a) + " after " + std::to_string(last_logged) + "; ";
            if (a < last_ack) out.problem += "incarnation resumed at " + std::to_string(a) + " before ack " + std::to_string(last_ack) + "; ";
            fresh = true;
        } else if (std::sscanf(line.c_str(), "bad %llu", &a) == 1) {
            out.problem += "bad message " + std::to_string(a) + "; ";
        } else if (std::sscanf(line.c_str(), "ack %llu", &a) == 1) {
            last_ack = a;
        } else if (std::sscanf(line.c_str(), "%llu %llu %llu", &a, &b, &c) == 3) {
            if (!fresh && a <= prev) out.problem += "id " + std::to_string(a) + " after " + std::to_string(prev) + "; ";
            if (!out.ids.insert(a).second) ++out.duplicates;
            prev = a;
            last_logged = any ? std::max<uint64_t>(last_logged, a) : a;
            any = true;
            fresh = false;
        }
    }
    return out;
}

}  // namespace shmbus::test
