// Request/reply through a real shmbusd: 4 responders and 4 callers with a responder SIGKILLed
// mid-run (every request answered once, to its own caller, or failed with a status saying why;
// nothing left in /dev/shm), and each status on its own: no responder, timed out (the late reply
// counted), responder died, responder error, gather, inboxes that belong to one connection, the CLI.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <dirent.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bus_fixture.h"
#include "shmbus/names.h"

namespace {

using namespace shmbus;
using namespace shmbus::test;
using namespace std::chrono_literals;
using Requests = BusTest;

// The shared-memory objects of bus `bus_id` whose names say they are inboxes (shmbusd names them
// after the topic, behind the bus id in hex).
std::vector<std::string> inbox_objects(uint64_t bus_id) {
    char id[17];
    std::snprintf(id, sizeof id, "%016llx", (unsigned long long)bus_id);
    std::vector<std::string> out;
    if (DIR* d = opendir("/dev/shm")) {
        while (const dirent* e = readdir(d))
            if (std::strstr(e->d_name, "_inbox.") != nullptr && std::strstr(e->d_name, id) != nullptr) out.emplace_back(e->d_name);
        closedir(d);
    }
    return out;
}

std::map<std::string, uint64_t> summary(const std::string& line) {
    std::map<std::string, uint64_t> out;
    std::istringstream in(line);
    std::string field;
    while (in >> field)
        if (const auto eq = field.find('='); eq != std::string::npos) out[field.substr(0, eq)] = std::stoull(field.substr(eq + 1));
    return out;
}

// Whether `topic` comes to have `responders` responders within 30 s (they are processes starting).
bool serves(Client& c, const std::string& topic, uint32_t responders) {
    return eventually([&] {
        auto s = c.topic_stats(topic);
        return s && s->requests.responders == responders;
    }, 30s);
}

// A responder on a thread of this process until `stop`, answering with `answer`.
template <class F>
std::thread serve_on_thread(Client& c, const std::string& topic, std::atomic<bool>& stop, F answer, ServeOptions o = {}) {
    auto r = c.serve(topic, o);
    EXPECT_TRUE(r) << r.error().message;
    return std::thread([r = std::make_shared<Result<Responder>>(std::move(r)), &stop, answer]() mutable {
        while (!stop.load() && *r) (void)(*r)->serve(answer, 20ms);
    });
}

TEST_F(Requests, FourRespondersFourCallersAResponderKilledEveryRequestAnsweredOnceOrSaysWhy) {
    const std::string topic = "quote";
    std::vector<pid_t> responders;
    // The one to be killed takes 50 ms over each request and says when one came: it is killed
    // holding one, the worst moment for its caller.
    const std::string busy = path("busy");
    for (int i = 0; i < 4; ++i) {
        std::vector<std::string> args{SHMBUS_CONVERSATION_PEER_PATH, "respond", dir, topic};
        if (i == 0) args.insert(args.end(), {"--hold-us", "50000", "--busy-file", busy});
        responders.push_back(spawn(args, SpawnOptions(path("responder" + std::to_string(i) + ".out"),
                                                      path("responder" + std::to_string(i) + ".err"))));
    }
    auto c = connect();
    ASSERT_TRUE(c);
    ASSERT_TRUE(serves(*c, topic, 4));

    constexpr uint64_t kPerCaller = 25'000;
    std::vector<pid_t> callers;
    for (int i = 0; i < 4; ++i)
        callers.push_back(spawn({SHMBUS_CONVERSATION_PEER_PATH, "call", dir, topic, std::to_string(kPerCaller), "caller" + std::to_string(i),
                                 "--timeout-ms", "5000"},
                                SpawnOptions(path("caller" + std::to_string(i) + ".out"), path("caller" + std::to_string(i) + ".err"))));
    // Mid-run: once a fifth of the requests were made, the slow responder is killed as soon as it
    // takes the next one.
    ASSERT_TRUE(eventually([&] {
        auto s = c->topic_stats(topic);
        return s && s->requests.requests >= 4 * kPerCaller / 5;
    }, 120s));
    std::filesystem::remove(busy);
    ASSERT_TRUE(eventually([&] { return std::filesystem::exists(busy); }, 120s));
    kill(responders[0], SIGKILL);
    EXPECT_EQ(wait_exit(responders[0]), 128 + SIGKILL);

    std::map<std::string, uint64_t> total;
    for (int i = 0; i < 4; ++i) {
        ASSERT_EQ(wait_exit(callers[i], 300s), 0) << read_file(path("caller" + std::to_string(i) + ".err"));
        const std::string out = read_file(path("caller" + std::to_string(i) + ".out"));
        for (const auto& [k, v] : summary(out)) total[k] += v;
        EXPECT_EQ(read_file(path("caller" + std::to_string(i) + ".err")), "");
    }
    EXPECT_EQ(total["wrong"], 0u);          // no reply went to the wrong caller, or to the wrong call
    EXPECT_EQ(total["other"], 0u);
    EXPECT_EQ(total["no_responder"], 0u);   // three responders were left all along
    EXPECT_EQ(total["responder_error"], 0u);
    EXPECT_EQ(total["ok"] + total["responder_died"] + total["timed_out"], 4 * kPerCaller);
    EXPECT_GE(total["ok"], 4 * kPerCaller - 64);  // at most the killed responder's window failed
    EXPECT_EQ(total["timed_out"], 0u);      // a dead responder's requests are answered, not left to time out
    EXPECT_GE(total["responder_died"], 1u); // it was killed holding requests: their callers were told

    auto s = c->topic_stats(topic);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->requests.requests, 4 * kPerCaller);
    EXPECT_EQ(s->requests.replies, total["ok"]);
    EXPECT_EQ(s->requests.responder_died, total["responder_died"]);
    EXPECT_EQ(s->requests.responders, 3u);
    std::printf("ok %llu, responder died %llu\n", (unsigned long long)total["ok"], (unsigned long long)total["responder_died"]);

    // The callers are gone: so are their inboxes.
    EXPECT_TRUE(eventually([&] { return inbox_objects(c->bus_id()).empty(); })) << inbox_objects(c->bus_id()).front();
    for (std::size_t i = 1; i < responders.size(); ++i) {
        kill(responders[i], SIGKILL);
        (void)wait_exit(responders[i]);
    }
    EXPECT_TRUE(inbox_objects(c->bus_id()).empty());
}

TEST_F(Requests, NoResponderIsSaidAtOnceAndTheCliExitsOneSayingSo) {
    auto c = connect();
    ASSERT_TRUE(c);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = c->request("nobody", "hello", {.timeout = 10s});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::no_responder) << r.error().message;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
    const auto cli_run = cli({"request", "nobody", "hello", "--timeout", "10s"});
    EXPECT_EQ(cli_run.code, 1);
    EXPECT_NE(cli_run.err.find("no responder"), std::string::npos) << cli_run.err;
    auto s = c->topic_stats("nobody");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->requests.no_responder, 2u);
    EXPECT_EQ(s->requests.requests, 0u);
}

TEST_F(Requests, ATimedOutRequestSaysSoAndItsLateReplyIsDroppedAndCounted) {
    auto c = connect();
    ASSERT_TRUE(c);
    std::atomic<bool> stop{false};
    auto t = serve_on_thread(*c, "slow", stop, [](const Message& m, Answer& a) {
        if (m.text() == "slow") std::this_thread::sleep_for(300ms);
        (void)a.reply("re:" + std::string(m.text()));
    });
    auto caller = connect();
    ASSERT_TRUE(caller);
    auto late = caller->request("slow", "slow", {.timeout = 100ms});
    ASSERT_FALSE(late);
    EXPECT_EQ(late.error().code, Errc::timed_out);
    std::this_thread::sleep_for(400ms);  // its reply has come meanwhile
    auto next = caller->request("slow", "fast", {.timeout = 5s});
    ASSERT_TRUE(next) << next.error().message;
    EXPECT_EQ(next->text(), "re:fast");  // not the late "re:slow"
    auto s = c->topic_stats("slow");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->requests.timed_out, 1u);
    EXPECT_EQ(s->requests.late_replies, 1u);
    EXPECT_EQ(s->requests.replies, 1u);
    stop = true;
    t.join();
}

TEST_F(Requests, AResponderThatDiesHoldingTheRequestIsReportedNotRetried) {
    // The only responder is a process killed while it holds the request: the caller learns it at
    // once (its liveness check), not at its deadline.
    auto c = connect();
    ASSERT_TRUE(c);
    const pid_t responder = spawn({SHMBUS_CLI_PATH, "--dir", dir, "serve", "held", "--exec", "sleep 30"},
                                  SpawnOptions(path("serve.out"), path("serve.err")));
    ASSERT_TRUE(serves(*c, "held", 1));
    std::thread killer([&] {
        std::this_thread::sleep_for(300ms);
        kill(responder, SIGKILL);
    });
    const auto t0 = std::chrono::steady_clock::now();
    auto r = c->request("held", "x", {.timeout = 20s});
    killer.join();
    (void)wait_exit(responder);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::responder_died) << r.error().message;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
    // A second responder in the group answers the requests of one that dies holding them: the
    // dead one's request is answered "responder died" by the survivor, which joined after the
    // request was taken.
    const pid_t doomed = spawn({SHMBUS_CLI_PATH, "--dir", dir, "serve", "held2", "--exec", "sleep 30"},
                               SpawnOptions(path("serve2.out"), path("serve2.err")));
    ASSERT_TRUE(serves(*c, "held2", 1));
    Result<Reply> held = make_error(Errc::ok, "");
    std::thread caller([&] { held = c->request("held2", "x", {.timeout = 20s}); });
    ASSERT_TRUE(eventually([&] {
        auto s = c->topic_stats("held2");
        return s && !s->groups.empty() && s->groups[0].in_flight == 1;
    }));
    std::atomic<bool> stop{false};
    auto survivor = serve_on_thread(*c, "held2", stop, [](const Message&, Answer& a) { (void)a.reply("ok"); });
    kill(doomed, SIGKILL);
    caller.join();
    (void)wait_exit(doomed);
    ASSERT_FALSE(held);
    EXPECT_EQ(held.error().code, Errc::responder_died) << held.error().message;
    auto after = c->request("held2", "y", {.timeout = 5s});  // the survivor serves on
    ASSERT_TRUE(after) << after.error().message;
    EXPECT_EQ(after->text(), "ok");
    stop = true;
    survivor.join();
}

TEST_F(Requests, AResponderErrorAndAGatherOverTwoServiceGroups) {
    auto c = connect();
    ASSERT_TRUE(c);
    std::atomic<bool> stop{false};
    auto a = serve_on_thread(*c, "prices", stop, [](const Message& m, Answer& ans) {
        if (m.text() == "bad") (void)ans.fail("no such product");
        else (void)ans.reply("a:" + std::string(m.text()), std::vector<Header>{{"source", "a"}});
    });
    ServeOptions other;
    other.group = "mirror";
    auto b = serve_on_thread(*c, "prices", stop, [](const Message& m, Answer& ans) { (void)ans.reply("b:" + std::string(m.text())); }, other);
    auto caller = connect();
    ASSERT_TRUE(caller);
    auto all = caller->gather("prices", "x", {.request = {.timeout = 5s}});
    ASSERT_TRUE(all) << all.error().message;
    ASSERT_EQ(all->size(), 2u);
    std::vector<std::string> texts{std::string((*all)[0].text()), std::string((*all)[1].text())};
    std::sort(texts.begin(), texts.end());
    EXPECT_EQ(texts, (std::vector<std::string>{"a:x", "b:x"}));
    // request(): the first reply (either group's); the other is dropped as extra.
    auto one = caller->request("prices", "y", {.timeout = 5s});
    ASSERT_TRUE(one) << one.error().message;
    EXPECT_TRUE(one->text() == "a:y" || one->text() == "b:y") << one->text();
    stop = true;
    a.join();
    b.join();
    // With one group left, a failure is the caller's error, in the responder's words.
    std::atomic<bool> stop2{false};
    auto only = serve_on_thread(*c, "solo", stop2, [](const Message& m, Answer& ans) {
        if (m.text() == "bad") (void)ans.fail("no such product");
        else (void)ans.reply("ok", std::vector<Header>{{"source", "solo"}});
    });
    auto bad = caller->request("solo", "bad", {.timeout = 5s});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, Errc::responder_error);
    EXPECT_NE(bad.error().message.find("no such product"), std::string::npos) << bad.error().message;
    auto good = caller->request("solo", "good", {.timeout = 5s});
    ASSERT_TRUE(good);
    ASSERT_EQ(good->headers.size(), 1u);
    EXPECT_EQ(good->headers[0], (std::pair<std::string, std::string>{"source", "solo"}));
    EXPECT_EQ(good->responder_pid, getpid());
    stop2 = true;
    only.join();
}

TEST_F(Requests, AnInboxIsItsConnectionsAloneHiddenFromListsAndGoneWithIt) {
    auto c = connect();
    ASSERT_TRUE(c);
    std::atomic<bool> stop{false};
    // Written by the responder's thread before its reply: the lock tells ThreadSanitizer what the
    // reply's way through shared memory (mapped at other addresses) already ensures.
    std::mutex inbox_lock;
    std::string inbox_seen;
    auto t = serve_on_thread(*c, "echo", stop, [&](const Message& m, Answer& a) {
        {
            std::lock_guard lock(inbox_lock);
            inbox_seen = std::string(m.headers.get(kReplyTo).value_or(""));
        }
        (void)a.reply(m.payload);
    });
    std::string inbox;
    {
        auto caller = connect();
        ASSERT_TRUE(caller);
        auto r = caller->request("echo", "hi", {.timeout = 5s});
        ASSERT_TRUE(r) << r.error().message;
        {
            std::lock_guard lock(inbox_lock);
            inbox = inbox_seen;
        }
        EXPECT_TRUE(is_inbox_name(inbox)) << inbox;
        EXPECT_FALSE(inbox_objects(c->bus_id()).empty());  // its segment, cursor and owner objects
        auto names = c->list_topics();
        ASSERT_TRUE(names);
        EXPECT_EQ(*names, std::vector<std::string>{"echo"});
        // Another connection, even of the same user, may not read it, look at it or make it again.
        auto thief = c->subscribe(inbox);
        ASSERT_FALSE(thief);
        EXPECT_EQ(thief.error().code, Errc::permission_denied);
        EXPECT_FALSE(c->topic_stats(inbox));
        EXPECT_EQ(cli({"pub", inbox, "forged"}).code, 2);  // the CLI takes topic names only
    }
    EXPECT_TRUE(eventually([&] { return inbox_objects(c->bus_id()).empty(); }));
    // A reply to a caller that is gone is dropped: the responder goes on.
    auto p = c->publisher(inbox);
    EXPECT_FALSE(p);
    stop = true;
    t.join();
}

TEST_F(Requests, TheCliServesWithACommandAndCarriesItsFailure) {
    const pid_t server = spawn({SHMBUS_CLI_PATH, "--dir", dir, "serve", "upper", "--exec",
                                "if [ \"$(cat)\" = bad ]; then echo broken >&2; exit 3; fi; echo \"$SHMBUS_TOPIC\""},
                               SpawnOptions(path("serve.out"), path("serve.err")));
    auto c = connect();
    ASSERT_TRUE(c);
    ASSERT_TRUE(serves(*c, "upper", 1));
    auto ok = cli({"request", "upper", "hello"});
    EXPECT_EQ(ok.code, 0) << ok.err;
    EXPECT_EQ(ok.out, "upper\n");
    auto bad = cli({"request", "upper", "bad"});
    EXPECT_EQ(bad.code, 1);
    EXPECT_NE(bad.err.find("exit status 3"), std::string::npos) << bad.err;
    EXPECT_NE(bad.err.find("broken"), std::string::npos) << bad.err;
    EXPECT_EQ(cli({"serve", "upper"}).code, 2);  // no --exec
    EXPECT_EQ(cli({"request", "upper", "x", "--timeout", "0"}).code, 2);
    EXPECT_EQ(cli({"request", "upper", "x", "--max-replies", "2"}).code, 2);
    auto info = cli({"topic", "info", "upper", "--json"});
    ASSERT_EQ(info.code, 0);
    const auto j = nlohmann::json::parse(info.out);
    EXPECT_EQ(j["requests"]["requests"], 2);
    EXPECT_EQ(j["requests"]["replies"], 2);
    EXPECT_EQ(j["requests"]["responders"], 1);
    kill(server, SIGTERM);
    EXPECT_EQ(wait_exit(server), 0);
}

}  // namespace
