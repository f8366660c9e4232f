// Idempotent producers through real processes: a named producer SIGKILLed at every point of a
// publish (and shmbusd killed with it) is run again over the same input, and the topic holds each
// sequence exactly once, in order, each message whole.
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "peer_fixture.h"
#include "test_payload.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
using test::Payload;
using test::checksum_of;

class IdempotentProducer : public PeerTest {
protected:
    // Every message of `topic` from the start: (sequence, producer name) in log order, checking
    // that each payload is the peer's message `sequence - 1`, whole.
    struct Log {
        std::vector<uint64_t> sequences;
        uint64_t bad = 0;
    };
    Log read_all(const std::string& topic) {
        Log out;
        auto c = connect();
        EXPECT_TRUE(c);
        SubscribeOptions o;
        o.from = StartFrom::earliest;
        auto sub = c->subscribe(topic, o);
        EXPECT_TRUE(sub) << sub.error().message;
        for (;;) {
            auto r = sub->poll([&](const Message& m) {
                Payload p{};
                std::memcpy(&p, m.payload.data(), std::min(sizeof p, m.payload.size()));
                if (m.producer != "orders" || p.seq + 1 != m.sequence || p.checksum != checksum_of(p.producer, p.seq)) ++out.bad;
                out.sequences.push_back(m.sequence);
            }, 256);
            if (r.status != ReceiveStatus::ok) break;
        }
        return out;
    }
    // 1..n once each, in order.
    static void expect_exactly_once(const Log& log, uint64_t n) {
        EXPECT_EQ(log.bad, 0u);
        ASSERT_EQ(log.sequences.size(), n);
        for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(log.sequences[i], i + 1) << "at " << i;
    }
    std::map<std::string, uint64_t> outcomes(const std::string& name) {
        std::map<std::string, uint64_t> out;
        std::istringstream in(read_file(path(name + ".out")));
        std::string word;
        while (in >> word)
            if (auto eq = word.find('='); eq != std::string::npos) out[word.substr(0, eq)] = std::stoull(word.substr(eq + 1));
        return out;
    }
};

// Killed at each point of its 101st publish, then run again over the same 1000 messages.
class KilledMidPublish : public IdempotentProducer, public ::testing::WithParamInterface<const char*> {};

TEST_P(KilledMidPublish, RunningTheSameInputAgainPublishesEachSequenceOnce) {
    ASSERT_EQ(cli({"topic", "create", "t", "--capacity", "1M"}).code, 0);
    pid_t dead = start_pub("dead", {"t", "1000", "0", "--named", "orders"}, {std::string("SHMBUS_CRASH_POINT=") + GetParam() + ":101"});
    EXPECT_EQ(wait_exit(dead), 128 + SIGKILL);
    pid_t again = start_pub("again", {"t", "1000", "0", "--named", "orders"});
    EXPECT_EQ(wait_exit(again), 0) << read_file(path("again.err"));
    const auto o = outcomes("again");
    // Before the commit word, message 101 was not published; after it, it was.
    const bool committed = std::string(GetParam()) == "after_commit";
    EXPECT_EQ(o.count("duplicate") ? o.at("duplicate") : 0, committed ? 101u : 100u) << read_file(path("again.out"));
    expect_exactly_once(read_all("t"), 1000);
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, KilledMidPublish, ::testing::Values("in_claim", "after_claim", "before_commit", "after_commit"));

// shmbusd is dead while the producer dies right after a commit: the next shmbusd settles it.
TEST_F(IdempotentProducer, AProducerThatDiedWhileTheSupervisorWasDownIsSettledAtRestart) {
    ASSERT_EQ(cli({"topic", "create", "t", "--capacity", "1M"}).code, 0);
    pid_t dead = start_pub("dead", {"t", "1000", "0", "--named", "orders", "--pace-us", "2000"},
                           {"SHMBUS_CRASH_POINT=after_commit:150"});
    ASSERT_TRUE(eventually([&] { auto s = stats("t"); return s && s->published >= 5; }));
    kill_daemon();
    EXPECT_EQ(wait_exit(dead), 128 + SIGKILL);
    start_daemon();
    pid_t again = start_pub("again", {"t", "1000", "0", "--named", "orders"});
    EXPECT_EQ(wait_exit(again), 0) << read_file(path("again.err"));
    EXPECT_EQ(outcomes("again")["duplicate"], 150u);
    expect_exactly_once(read_all("t"), 1000);
    EXPECT_NE(read_file(path("daemon.log")).find("right after committing sequence 150"), std::string::npos);
}

// The topic's memory of a name lives in its segment: a clean or a crashed shmbusd restart keeps it.
TEST_F(IdempotentProducer, ARestartedProducerResumesAfterItsLastCommittedSequence) {
    ASSERT_EQ(cli({"topic", "create", "t"}).code, 0);
    PublisherOptions o;
    o.producer = "orders";
    {
        auto c = connect();
        auto p = c->publisher("t", o);
        ASSERT_TRUE(p) << p.error().message;
        EXPECT_EQ(p->last_sequence(), 0u);
        for (uint64_t s = 1; s <= 7; ++s) ASSERT_EQ(p->publish_sequence(s * 10, "x"), PublishStatus::ok);
    }
    stop_daemon();
    start_daemon();
    auto c = connect();
    auto p = c->publisher("t", o);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->last_sequence(), 70u);
    EXPECT_EQ(p->publish_sequence(70, "x"), PublishStatus::duplicate);
    EXPECT_EQ(p->publish("y"), PublishStatus::ok);
    EXPECT_EQ(p->last_sequence(), 71u);
}

TEST_F(IdempotentProducer, OneLivePublisherPerNameAndTopic) {
    ASSERT_EQ(cli({"topic", "create", "t"}).code, 0);
    auto c = connect();
    PublisherOptions o;
    o.producer = "orders";
    auto first = c->publisher("t", o);
    ASSERT_TRUE(first);
    auto second = c->publisher("t", o);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, Errc::busy);
    EXPECT_NE(second.error().message.find("held by pid"), std::string::npos) << second.error().message;
    o.producer = "other";
    EXPECT_TRUE(c->publisher("t", o));  // another name is fine
    o.producer = "no spaces";
    auto bad = c->publisher("t", o);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, Errc::invalid_name);
}

// The CLI numbers its input; the same input again publishes only what is missing.
TEST_F(IdempotentProducer, CliPublishesOnlyWhatIsMissingAndShowsTheStamp) {
    ASSERT_EQ(cli({"topic", "create", "t"}).code, 0);
    {
        std::ofstream(path("three")) << "a\nb\nc\n";
        std::ofstream(path("five")) << "a\nb\nc\nd\ne\n";
    }
    ASSERT_EQ(cli({"pub", "t", "--producer", "etl", "--seq", "1"}, path("three")).code, 0);
    const auto again = cli({"pub", "t", "--producer", "etl", "--seq", "1"}, path("five"));
    ASSERT_EQ(again.code, 0) << again.err;
    EXPECT_NE(again.err.find("skipped 3"), std::string::npos) << again.err;
    ASSERT_EQ(cli({"pub", "t", "--producer", "etl"}, path("three")).code, 0);  // numbered 6, 7, 8
    const auto out = cli({"sub", "t", "--from", "earliest", "--count", "8", "--format", "json"});
    ASSERT_EQ(out.code, 0) << out.err;
    std::istringstream lines(out.out);
    std::string line;
    std::vector<std::pair<uint64_t, std::string>> seen;
    while (std::getline(lines, line)) {
        const auto j = nlohmann::json::parse(line);
        EXPECT_EQ(j.at("producer"), "etl");
        seen.emplace_back(j.at("sequence").get<uint64_t>(), j.at("payload").get<std::string>());
    }
    EXPECT_EQ(seen, (std::vector<std::pair<uint64_t, std::string>>{
                        {1, "a"}, {2, "b"}, {3, "c"}, {4, "d"}, {5, "e"}, {6, "a"}, {7, "b"}, {8, "c"}}));
    const auto info = nlohmann::json::parse(cli({"topic", "info", "t", "--json"}).out);
    ASSERT_EQ(info.at("named_producers").size(), 1u);
    EXPECT_EQ(info.at("named_producers")[0].at("name"), "etl");
    EXPECT_EQ(info.at("named_producers")[0].at("last_sequence"), 8);
    EXPECT_TRUE(info.at("named_producers")[0].at("pid").is_null());  // nobody holds it now
    EXPECT_NE(cli({"topic", "info", "t"}).out.find("producer  etl"), std::string::npos);
    EXPECT_EQ(cli({"pub", "t", "--seq", "3", "x"}).code, 2);  // --seq without --producer
    EXPECT_EQ(cli({"pub", "t", "--producer", "etl", "--seq", "0", "x"}).code, 2);
}

}  // namespace
}  // namespace shmbus::test
