// Work queues beyond the core of consumer groups, against a real shmbusd: headers, dead letters
// with their origin, messages waiting for a retry that never stall a block topic, rate limits,
// members joining and leaving under load, and the CLI's `group`, `dlq`, `pub --header` and
// `sub --exec`.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "bus_fixture.h"
#include "core/futex.h"
#include "core/wall_clock.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

class WorkQueue : public BusTest {
protected:
    void SetUp() override {
        make_dir();
        start_daemon();
    }

    static SubscribeOptions member_options(const std::string& group, GroupSettings settings = {}) {
        SubscribeOptions o;
        o.group = group;
        o.group_settings = settings;
        o.from = StartFrom::earliest;
        return o;
    }

    static SubscribeOptions from_earliest() {
        SubscribeOptions o;
        o.from = StartFrom::earliest;
        return o;
    }

    // Every JSON line of `text`.
    static std::vector<nlohmann::json> json_lines(const std::string& text) {
        std::vector<nlohmann::json> out;
        std::istringstream in(text);
        for (std::string line; std::getline(in, line);)
            if (!line.empty()) out.push_back(nlohmann::json::parse(line));
        return out;
    }
};

// Headers travel with the message to every kind of reader; the payload is what follows them.
TEST_F(WorkQueue, HeadersReachEveryKindOfSubscriber) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    auto ephemeral = c->subscribe("orders", from_earliest());
    SubscribeOptions durable_options = from_earliest();
    durable_options.durable_name = "audit";
    auto durable = c->subscribe("orders", durable_options);
    auto member = c->subscribe("orders", member_options("workers"));
    ASSERT_TRUE(ephemeral && durable && member);
    auto pub = c->publisher("orders");
    ASSERT_TRUE(pub.has_value());
    const Header headers[] = {{"trace-id", "4bf92f35"}, {"tenant", "acme"}};
    ASSERT_EQ(pub->publish("order 1", headers), PublishStatus::ok);
    ASSERT_EQ(pub->publish("order 2"), PublishStatus::ok);
    for (Subscriber* s : {&*ephemeral, &*durable, &*member}) {
        std::vector<std::pair<std::string, std::optional<std::string>>> got;
        EXPECT_TRUE(eventually([&] {
            (void)s->receive([&](const Message& m) {
                const auto tenant = m.headers.get("tenant");
                got.emplace_back(std::string(m.text()), tenant ? std::optional<std::string>(*tenant) : std::nullopt);
            }, 20ms);
            return got.size() >= 2;
        }));
        ASSERT_EQ(got.size(), 2u);
        EXPECT_EQ(got[0].first, "order 1");
        EXPECT_EQ(got[0].second, "acme");
        EXPECT_EQ(got[1].first, "order 2");
        EXPECT_FALSE(got[1].second.has_value());
    }
    const Header bad[] = {{"no spaces allowed", "x"}};
    EXPECT_EQ(pub->publish("x", bad), PublishStatus::bad_headers);
    const std::string big(pub->max_message(), 'x');
    EXPECT_EQ(pub->publish(big), PublishStatus::ok);
    EXPECT_EQ(pub->publish(big, headers), PublishStatus::too_large) << "max_message bounds headers and payload together";
}

// A dead letter keeps its payload and headers and says where it came from and why.
// A dead letter larger than the dead-letter topic's messages never waits silently: a dead-letter
// topic made on first use has room for its topic's largest message, and one made smaller by hand
// refuses it, which `topic info` shows (the message waits in retry, never lost).
TEST_F(WorkQueue, ADeadLetterTooLargeForItsTopicIsReportedAndOneMadeOnFirstUseFits) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    TopicConfig large;
    large.capacity = 4 << 20;
    large.max_message = 200 << 10;
    ASSERT_TRUE(c->create_topic("big", large));
    ASSERT_TRUE(c->create_topic("small", large));
    ASSERT_TRUE(c->create_topic("small.dlq", {}));  // 64 KiB messages: too small for the letter below
    const std::string letter(100 << 10, 'x');
    for (const std::string topic : {"big", "small"}) {
        SubscribeOptions o = member_options("workers");
        o.auto_ack = false;
        auto sub = c->subscribe(topic, o);
        auto pub = c->publisher(topic);
        ASSERT_TRUE(sub && pub);
        ASSERT_EQ(pub->publish(letter), PublishStatus::ok);
        ASSERT_TRUE(eventually([&] {
            (void)sub->receive([&](const Message& m) { (void)sub->reject(m, "poison"); }, 20ms);
            const auto g = c->topic_stats(topic)->groups[0];
            return g.dead_lettered == 1 || g.dead_letters_refused == 1;
        })) << topic;
    }
    EXPECT_EQ(c->topic_stats("big")->groups[0].dead_lettered, 1u) << "the dlq made on first use took it";
    EXPECT_EQ(c->topic_stats("big")->groups[0].dead_letters_refused, 0u);
    EXPECT_EQ(c->topic_stats("small")->groups[0].dead_lettered, 0u);
    EXPECT_EQ(c->topic_stats("small")->groups[0].dead_letters_refused, 1u);
    EXPECT_EQ(c->topic_stats("small")->groups[0].waiting_retry, 1u) << "kept, not lost";
    const auto info = cli({"topic", "info", "small"});
    EXPECT_NE(info.out.find("1 message(s) refused by the dead-letter topic (too large for it)"), std::string::npos) << info.out;
    const auto json = nlohmann::json::parse(cli({"topic", "info", "small", "--json"}).out);
    EXPECT_EQ(json["groups"][0]["dead_letters_refused"], 1) << json.dump();
}

TEST_F(WorkQueue, ADeadLetterCarriesItsOrigin) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    SubscribeOptions o = member_options("workers");
    o.auto_ack = false;
    auto sub = c->subscribe("jobs", o);
    auto dlq = c->subscribe("jobs.dlq", from_earliest());
    auto pub = c->publisher("jobs");
    ASSERT_TRUE(sub && dlq && pub);
    const Header headers[] = {{"customer", "42"}};
    ASSERT_EQ(pub->publish("first"), PublishStatus::ok);
    ASSERT_EQ(pub->publish("bad order", headers), PublishStatus::ok);
    const uint64_t before = detail::WallClock::system_ns();
    ASSERT_TRUE(eventually([&] {
        uint32_t n = 0;
        (void)sub->receive([&](const Message& m) {
            ++n;
            if (m.text() == "bad order") EXPECT_EQ(sub->reject(m, "customer 42 is closed"), AckStatus::ok);
            else EXPECT_EQ(sub->ack(m), AckStatus::ok);
        }, 20ms);
        return sub->in_flight() == 0 && c->topic_stats("jobs")->groups[0].dead_lettered == 1;
    }));
    std::map<std::string, std::string> got;
    std::string payload;
    ASSERT_TRUE(eventually([&] {
        (void)dlq->poll([&](const Message& m) {
            payload = std::string(m.text());
            for (const Header& h : m.headers) got[std::string(h.key)] = std::string(h.value);
        });
        return !payload.empty();
    }));
    EXPECT_EQ(payload, "bad order");
    EXPECT_EQ(got["customer"], "42");
    EXPECT_EQ(got[std::string(kDeadLetterTopic)], "jobs");
    EXPECT_EQ(got[std::string(kDeadLetterId)], "1");
    EXPECT_EQ(got[std::string(kDeadLetterAttempts)], "1");
    EXPECT_EQ(got[std::string(kDeadLetterReason)], "customer 42 is closed");
    const std::string first = got[std::string(kDeadLetterFirstDelivery)];
    EXPECT_EQ(first.size(), std::string("2026-11-28T14:42:35.123456789Z").size()) << first;
    EXPECT_GE(first, rfc3339_utc(before - 5'000'000'000ull));
    EXPECT_LE(first, got[std::string(kDeadLetterLastDelivery)]);
}

// A poison message waiting out a long backoff does not hold a block topic's publishers back:
// many rings' worth of messages flow past it, then it comes back with its id and attempt, and
// nobody else on the topic ever sees the record that carried it.
TEST_F(WorkQueue, AMessageWaitingForItsRetryNeverStallsABlockTopic) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    TopicConfig tc;
    tc.capacity = 64 * 1024;
    tc.on_full = OnFull::block;
    ASSERT_TRUE(c->create_topic("jobs", tc));
    GroupSettings s;
    s.backoff_initial = 1500ms;
    s.backoff_max = 1500ms;
    s.max_deliveries = 3;
    SubscribeOptions o = member_options("workers", s);
    o.auto_ack = false;
    auto sub = c->subscribe("jobs", o);
    auto watcher = c->subscribe("jobs", from_earliest());  // an ephemeral reader of the same topic
    auto pub = c->publisher("jobs");
    ASSERT_TRUE(sub && watcher && pub);
    const Header headers[] = {{"kind", "poison"}};
    ASSERT_EQ(pub->publish("poison", headers), PublishStatus::ok);
    std::vector<uint32_t> poison_attempts;
    uint64_t poison_id = UINT64_MAX;
    uint64_t good = 0;
    auto handle = [&](const Message& m) {
        if (m.text() == "poison") {
            poison_attempts.push_back(m.attempt);
            EXPECT_EQ(m.headers.get("kind"), "poison");
            if (poison_id == UINT64_MAX) poison_id = m.id;
            EXPECT_EQ(m.id, poison_id) << "a retried message keeps its id";
            EXPECT_EQ(sub->nack(m), AckStatus::ok);
        } else {
            ++good;
            EXPECT_EQ(sub->ack(m), AckStatus::ok);
        }
    };
    ASSERT_TRUE(eventually([&] {
        (void)sub->receive(handle, 10ms);
        return poison_attempts.size() == 1;
    }));
    // The watcher reads the original before the publisher below starts lapping the ring: an
    // ephemeral reader lapped before its first poll would never see it (it would count as lost).
    uint64_t watched_poison = 0, watched = 0;
    auto watch = [&](const Message& m) {
        ++watched;
        if (m.text() == "poison") ++watched_poison;
    };
    ASSERT_EQ(watcher->poll(watch).count, 1u);
    // 8 rings of 1 KiB messages: without moving the poison message this would block at one ring.
    const std::string payload(1000, 'g');
    constexpr int kGood = 8 * 64;
    std::atomic<bool> published{false};
    std::atomic<int> failures{0};
    std::thread publisher([&] {
        for (int i = 0; i < kGood; ++i)
            if (pub->publish(payload, 1s) != PublishStatus::ok) failures.fetch_add(1);
        published = true;
    });
    while (!published.load() || good < kGood) {
        (void)sub->receive(handle, 5ms);
        (void)watcher->poll(watch);
        if (published.load() && failures.load() > 0) break;
    }
    publisher.join();
    EXPECT_EQ(failures.load(), 0) << "a publisher timed out behind the message waiting for its retry";
    EXPECT_EQ(good, uint64_t(kGood));
    EXPECT_EQ(poison_attempts.size(), 1u) << "the backoff had not passed yet";
    ASSERT_TRUE(eventually([&] {
        (void)sub->receive(handle, 10ms);
        return poison_attempts.size() >= 2;
    }));
    EXPECT_EQ(poison_attempts[1], 2u);
    auto stats = c->topic_stats("jobs");
    ASSERT_TRUE(stats.has_value());
    EXPECT_GE(stats->groups[0].reparked, 1u);
    EXPECT_EQ(watched_poison, 1u) << "other readers see the original once, never its retry records";
    EXPECT_LE(watched, uint64_t(kGood) + 1);
}

// One rate limit for the whole group: two members together stay under it.
TEST_F(WorkQueue, AGroupsRateLimitIsSharedByItsMembers) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    GroupSettings s;
    s.rate = RateLimit{100, 1};  // one delivery per 10 ms
    auto setup = c->subscribe("calls", member_options("api", s));
    ASSERT_TRUE(setup.has_value()) << setup.error().message;
    auto pub = c->publisher("calls");
    for (int i = 0; i < 41; ++i) ASSERT_EQ(pub->publish("call"), PublishStatus::ok);
    std::atomic<int> total{0};
    std::mutex mu;
    std::vector<uint64_t> times;
    auto work = [&] {
        auto mc = connect();
        if (!mc) return;
        auto sub = mc->subscribe("calls", member_options("api"));
        if (!sub) return;
        const auto end = std::chrono::steady_clock::now() + 20s;
        while (total.load() < 41 && std::chrono::steady_clock::now() < end)
            (void)sub->receive([&](const Message&) {
                std::lock_guard lock(mu);
                times.push_back(detail::monotonic_ns());
                total.fetch_add(1);
            }, 50ms);
    };
    setup = make_error(Errc::disconnected, "closed");
    std::thread a(work), b(work);
    a.join();
    b.join();
    ASSERT_EQ(total.load(), 41);
    std::sort(times.begin(), times.end());
    const uint64_t span = times.back() - times.front();
    EXPECT_GE(span, 350'000'000u) << "40 intervals of 10 ms (tolerance for timer slack)";
    EXPECT_LE(span, 10'000'000'000u);
}

// A plain subscription's own rate limit, with its burst.
TEST_F(WorkQueue, ASubscriptionsRateLimitAllowsItsBurstThenPaces) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    SubscribeOptions o = from_earliest();
    o.rate = RateLimit{50, 5};  // 20 ms apart after a burst of 5
    auto sub = c->subscribe("ticks", o);
    auto pub = c->publisher("ticks");
    ASSERT_TRUE(sub && pub);
    for (int i = 0; i < 25; ++i) ASSERT_EQ(pub->publish("t"), PublishStatus::ok);
    std::vector<uint64_t> times;
    const auto t0 = detail::monotonic_ns();
    while (times.size() < 25 && detail::monotonic_ns() - t0 < 10'000'000'000ull)
        (void)sub->receive([&](const Message&) { times.push_back(detail::monotonic_ns()); }, 100ms);
    ASSERT_EQ(times.size(), 25u);
    EXPECT_LT(times[4] - times[0], 15'000'000u) << "the burst comes at once";
    EXPECT_GE(times[24] - times[0], 300'000'000u) << "then 20 intervals of 20 ms (tolerance for timer slack)";
}

// Members join and leave while messages flow: every message is processed, none lost.
TEST_F(WorkQueue, MembersJoiningAndLeavingUnderLoadLoseNothing) {
    constexpr uint64_t kMessages = 20'000;
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    auto steady = c->subscribe("jobs", member_options("workers"));
    auto pub = c->publisher("jobs");
    ASSERT_TRUE(steady && pub);
    std::mutex mu;
    std::set<uint64_t> seen;
    uint64_t repeats = 0;
    auto note = [&](const Message& m) {
        std::lock_guard lock(mu);
        if (!seen.insert(m.id).second) ++repeats;
    };
    std::atomic<bool> done{false};
    std::thread churn([&] {
        auto mc = connect();
        if (!mc) return;
        while (!done.load()) {
            auto sub = mc->subscribe("jobs", member_options("workers"));
            if (!sub) continue;
            for (int polls = 0; polls < 20 && !done.load(); ++polls) (void)sub->receive(note, 1ms, 32);
        }  // each leaves with everything it took acked
    });
    std::thread publisher([&] {
        for (uint64_t i = 0; i < kMessages; ++i) EXPECT_EQ(pub->publish(std::to_string(i), 10s), PublishStatus::ok);
    });
    EXPECT_TRUE(eventually([&] {
        (void)steady->receive(note, 5ms, 64);
        std::lock_guard lock(mu);
        return seen.size() == kMessages;
    }, 60s));
    done = true;
    publisher.join();
    churn.join();
    EXPECT_EQ(seen.size(), kMessages);
    EXPECT_EQ(repeats, 0u) << "nobody died or timed out, so nothing is processed twice";
}

// The CLI's group commands: create (again with the same settings: fine; with others: the
// difference named), info and list (text and JSON), delete (refused while members hold it).
TEST_F(WorkQueue, GroupCommandsCreateShowListAndDelete) {
    auto r = cli({"group", "create", "jobs", "workers", "--window", "8", "--max-deliveries", "2", "--backoff", "10ms..1s",
                  "--rate", "100/s:10", "--from", "earliest"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(cli({"group", "create", "jobs", "workers", "--window", "8", "--max-deliveries", "2", "--backoff", "10ms..1s",
                   "--rate", "100/s:10"}).code, 0);
    r = cli({"group", "create", "jobs", "workers", "--window", "9"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("window 8 (asked: 9)"), std::string::npos) << r.err;
    EXPECT_EQ(cli({"group", "create", "jobs", "other", "--rate", "fast"}).code, 2);
    ASSERT_EQ(cli({"pub", "jobs", "a", "b", "c"}).code, 0);
    r = cli({"group", "info", "jobs", "workers", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto info = nlohmann::json::parse(r.out);
    EXPECT_EQ(info["name"], "workers");
    EXPECT_EQ(info["lag"], 3);
    EXPECT_EQ(info["settings"]["window"], 8);
    EXPECT_EQ(info["settings"]["max_deliveries"], 2);
    EXPECT_EQ(info["settings"]["backoff_initial_ms"], 10);
    EXPECT_EQ(info["settings"]["rate_per_second"], 100.0);
    EXPECT_EQ(info["settings"]["rate_burst"], 10);
    r = cli({"group", "info", "jobs", "workers"});
    EXPECT_NE(r.out.find("rate 100/s:10"), std::string::npos) << r.out;
    EXPECT_EQ(cli({"group", "info", "jobs", "nobody"}).code, 1);
    r = cli({"group", "list", "jobs", "--json"});
    ASSERT_EQ(r.code, 0);
    EXPECT_EQ(nlohmann::json::parse(r.out).size(), 1u);
    const pid_t member = spawn({SHMBUS_CLI_PATH, "--dir", dir, "sub", "jobs", "--group", "workers"});
    auto c = connect();
    ASSERT_TRUE(eventually([&] {
        auto s = c->topic_stats("jobs");
        return s && !s->groups.empty() && s->groups[0].members.size() == 1;
    }));
    r = cli({"group", "delete", "jobs", "workers"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("has members"), std::string::npos) << r.err;
    kill(member, SIGTERM);
    EXPECT_EQ(wait_exit(member), 0);
    EXPECT_EQ(cli({"group", "delete", "jobs", "workers"}).code, 0);
    r = cli({"group", "list", "jobs"});
    EXPECT_NE(r.out.find("no groups"), std::string::npos) << r.out;
    // Deleted, it holds nothing back: a small fail topic takes more than a ring again.
    EXPECT_EQ(cli({"group", "delete", "jobs", "workers"}).code, 1);
}

// `pub --header` and `sub --format json`'s headers object.
TEST_F(WorkQueue, CliHeadersGoInWithPubAndComeOutAsJson) {
    ASSERT_EQ(cli({"sub", "orders", "--durable", "d", "--count", "0"}).code, 0);
    auto r = cli({"pub", "orders", "--header", "tenant=acme", "--header", "trace=a=b", "one", "two"});
    ASSERT_EQ(r.code, 0) << r.err;
    r = cli({"sub", "orders", "--durable", "d", "--count", "2", "--format", "json"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["payload"], "one");
    EXPECT_EQ(lines[1]["headers"]["tenant"], "acme");
    EXPECT_EQ(lines[1]["headers"]["trace"], "a=b") << "the first '=' splits key from value";
    EXPECT_EQ(cli({"pub", "orders", "--header", "novalue", "x"}).code, 2);
    EXPECT_EQ(cli({"pub", "orders", "--header", "bad key=1", "x"}).code, 2);
}

// Headers reach `--exec` as environment variables within what exec accepts (128 KiB of them):
// the rest are counted in SHMBUS_HEADERS_OMITTED, and the command still runs.
TEST_F(WorkQueue, ExecExportsHeadersWithinExecsLimitsAndCountsTheRest) {
    { const auto made = cli({"topic", "create", "jobs", "--max-message", "1MiB", "--capacity", "16MiB"}); ASSERT_EQ(made.code, 0) << made.err; }
    ASSERT_EQ(cli({"group", "create", "jobs", "workers"}).code, 0);
    std::vector<Header> headers{{"plain", "v0"}};
    const std::string big(4000, 'h');
    std::vector<std::string> keys;
    for (int i = 0; i < 40; ++i) keys.push_back("big" + std::to_string(i));
    for (const std::string& k : keys) headers.push_back({k, big});
    {
        auto c = connect();
        ASSERT_TRUE(c);
        auto pub = c->publisher("jobs");
        ASSERT_TRUE(pub);
        ASSERT_EQ(pub->publish(std::string_view("payload"), headers), PublishStatus::ok);
    }
    const std::string log = path("exec.log");
    const std::string command = "env | grep '^SHMBUS_HEADER' | sort > " + log;
    auto r = cli({"sub", "jobs", "--group", "workers", "--exec", command, "--count", "1"});
    ASSERT_EQ(r.code, 0) << r.err;
    const std::string env = read_file(log);
    EXPECT_NE(env.find("SHMBUS_HEADER_PLAIN=v0\n"), std::string::npos) << env;
    EXPECT_NE(env.find("SHMBUS_HEADER_BIG0="), std::string::npos) << "headers within the limits are exported";
    EXPECT_NE(env.find("SHMBUS_HEADERS_OMITTED="), std::string::npos) << env.substr(0, 200);
}

// A command that exits 65 rejects its message at once (no retries), and the last lines of what it
// wrote to standard error go with the dead letter's reason; `dlq list` shows the payload.
TEST_F(WorkQueue, ExecStatus65RejectsAtOnceWithTheCommandsErrorsInTheReason) {
    ASSERT_EQ(cli({"group", "create", "jobs", "workers", "--max-deliveries", "5"}).code, 0);
    ASSERT_EQ(cli({"pub", "jobs", "poison pill"}).code, 0);
    const std::string command = "cat >/dev/null; echo 'first line' >&2; echo 'parse error at byte 7' >&2; exit 65";
    auto r = cli({"sub", "jobs", "--group", "workers", "--exec", command, "--count", "1"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("parse error at byte 7"), std::string::npos) << "the command's stderr is passed on: " << r.err;
    EXPECT_NE(r.err.find("rejected"), std::string::npos) << r.err;
    const auto letters = nlohmann::json::parse(cli({"dlq", "list", "jobs", "--json"}).out);
    ASSERT_EQ(letters.size(), 1u);
    EXPECT_EQ(letters[0]["headers"]["shmbus-attempts"], "1") << "rejected on its first attempt";
    EXPECT_EQ(letters[0]["headers"]["shmbus-reason"], "command exit status 65: first line | parse error at byte 7");
    const auto text = cli({"dlq", "list", "jobs"});
    EXPECT_NE(text.out.find("payload: poison pill"), std::string::npos) << text.out;
    EXPECT_EQ(connect()->topic_stats("jobs")->groups[0].dead_lettered, 1u);
}

// `sub --exec`: the payload on stdin, the message in the environment; exit 0 acks, anything
// else nacks until the dead-letter topic; `dlq list` and `dlq replay` then bring it back.
TEST_F(WorkQueue, ExecAcksOnSuccessNacksOnFailureAndDlqReplays) {
    ASSERT_EQ(cli({"group", "create", "jobs", "workers", "--max-deliveries", "2", "--backoff", "10ms..20ms"}).code, 0);
    ASSERT_EQ(cli({"pub", "jobs", "--header", "customer=7", "ok-1", "fail-2", "ok-3"}).code, 0);
    const std::string log = path("exec.log");
    const std::string command = "p=$(cat); echo \"$SHMBUS_TOPIC $SHMBUS_MESSAGE_ID $SHMBUS_ATTEMPT $SHMBUS_HEADER_CUSTOMER $p\" >> " + log +
                                "; case $p in fail*) exit 3;; esac";
    auto r = cli({"sub", "jobs", "--group", "workers", "--exec", command, "--count", "4"});
    ASSERT_EQ(r.code, 0) << r.err;
    const std::string ran = read_file(log);
    EXPECT_NE(ran.find("jobs 0 1 7 ok-1"), std::string::npos) << ran;
    EXPECT_NE(ran.find("jobs 1 1 7 fail-2"), std::string::npos) << ran;
    EXPECT_NE(ran.find("jobs 1 2 7 fail-2"), std::string::npos) << ran;
    EXPECT_NE(ran.find("jobs 2 1 7 ok-3"), std::string::npos) << ran;
    EXPECT_NE(r.err.find("exit status 3"), std::string::npos) << r.err;
    r = cli({"dlq", "list", "jobs", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    auto letters = nlohmann::json::parse(r.out);
    ASSERT_EQ(letters.size(), 1u) << r.out;
    EXPECT_EQ(letters[0]["payload"], "fail-2");
    EXPECT_EQ(letters[0]["headers"]["shmbus-origin-id"], "1");
    EXPECT_EQ(letters[0]["headers"]["shmbus-attempts"], "2");
    EXPECT_EQ(letters[0]["headers"]["customer"], "7");
    EXPECT_EQ(letters[0]["headers"]["shmbus-reason"], "command exit status 3");
    r = cli({"dlq", "replay", "jobs"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("replayed 1"), std::string::npos);
    EXPECT_EQ(nlohmann::json::parse(cli({"dlq", "list", "jobs", "--json"}).out).size(), 0u);
    EXPECT_EQ(cli({"dlq", "replay", "jobs"}).out.find("replayed 0") != std::string::npos, true) << "nothing twice";
    r = cli({"sub", "jobs", "--group", "workers", "--count", "1", "--format", "json"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto back = json_lines(r.out);
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0]["payload"], "fail-2");
    EXPECT_EQ(back[0]["headers"]["customer"], "7") << "its own headers come back";
    EXPECT_FALSE(back[0]["headers"].contains("shmbus-reason")) << "the origin headers do not";
    EXPECT_EQ(cli({"sub", "jobs", "--exec", "true"}).code, 2) << "--exec needs --group";
}

// `dlq replay --id`: one dead letter out of order; the others stay listed, and it is not
// replayed again by a later full replay.
TEST_F(WorkQueue, ReplayingOneDeadLetterOutOfOrderReplaysItOnce) {
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    SubscribeOptions o = member_options("workers");
    o.auto_ack = false;
    auto sub = c->subscribe("jobs", o);
    auto pub = c->publisher("jobs");
    ASSERT_TRUE(sub && pub);
    for (const char* p : {"a", "b", "c"}) ASSERT_EQ(pub->publish(p), PublishStatus::ok);
    int rejected = 0;
    ASSERT_TRUE(eventually([&] {
        (void)sub->receive([&](const Message& m) { rejected += sub->reject(m, "no") == AckStatus::ok; }, 10ms);
        return rejected == 3;
    }));
    ASSERT_TRUE(eventually([&] { return c->topic_stats("jobs")->groups[0].dead_lettered == 3; }));
    auto r = cli({"dlq", "replay", "jobs", "--id", "1"});
    ASSERT_EQ(r.code, 0) << r.err;
    auto listed = nlohmann::json::parse(cli({"dlq", "list", "jobs", "--json"}).out);
    ASSERT_EQ(listed.size(), 2u) << listed.dump();
    EXPECT_EQ(listed[0]["payload"], "a") << listed.dump();
    EXPECT_EQ(listed[1]["payload"], "c");
    EXPECT_EQ(cli({"dlq", "replay", "jobs", "--id", "1"}).code, 1) << "already replayed";
    r = cli({"dlq", "replay", "jobs"});
    EXPECT_NE(r.out.find("replayed 2"), std::string::npos) << r.out;
    std::multiset<std::string> back;
    (void)eventually([&] {
        (void)sub->receive([&](const Message& m) {
            back.insert(std::string(m.text()));
            (void)sub->ack(m);
        }, 10ms);
        return back.size() >= 3;
    }, 2s);
    EXPECT_EQ(back, (std::multiset<std::string>{"a", "b", "c"}));
}

// `--exec` with `--parallel N` runs N commands at once (each waits until all N have started),
// and a command still running at the visibility timeout is killed and its message nacked.
TEST_F(WorkQueue, ExecRunsCommandsInParallelAndKillsOnesPastTheVisibilityTimeout) {
    ASSERT_EQ(cli({"group", "create", "jobs", "workers", "--visibility", "1s", "--max-deliveries", "0", "--backoff",
                   "10ms..10ms"}).code, 0);
    ASSERT_EQ(cli({"pub", "jobs", "p1", "p2", "p3"}).code, 0);
    const std::string barrier = path("started");
    // Each command notes its start, then waits (up to 5 s) until three have started.
    const std::string command = "touch " + barrier + ".$SHMBUS_MESSAGE_ID; i=0; while [ $(ls " + barrier +
                                ".* | wc -l) -lt 3 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; [ $i -lt 50 ]";
    auto r = cli({"sub", "jobs", "--group", "workers", "--exec", command, "--parallel", "3", "--count", "3"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.err.find("nacked"), std::string::npos) << "all three ran at once: " << r.err;
    ASSERT_EQ(cli({"pub", "jobs", "slow"}).code, 0);
    const std::string marks = path("attempts");
    r = cli({"sub", "jobs", "--group", "workers", "--exec",
             "echo $SHMBUS_ATTEMPT >> " + marks + "; [ $SHMBUS_ATTEMPT -ge 2 ] || sleep 30", "--count", "2"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("killed at the visibility timeout"), std::string::npos) << r.err;
    EXPECT_EQ(read_file(marks), "1\n2\n");
}

}  // namespace
}  // namespace shmbus::test
