// The fast paths through real processes. Single-producer topics: shmbusd registers one publisher
// at a time, a publisher SIGKILLed mid-claim is recovered like any other and its successor is let
// in. Batches: a batch publisher killed mid-claim leaves no gap in the ids. In-place reads: a
// reader killed while it holds a large message in place holds publishers no longer than its life.
// Every message arrives once, in order, whole.
#include <fstream>

#include <nlohmann/json.hpp>

#include "local_topic.h"
#include "peer_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

class SingleProducer : public PeerTest {
protected:
    void write_file(const std::string& file, const std::string& text) { std::ofstream(file) << text; }
};

TEST_F(SingleProducer, ASecondPublisherIsRefusedWhileTheFirstLives) {
    ASSERT_EQ(cli({"topic", "create", "t", "--single-producer", "--capacity", "64K"}).code, 0);
    const auto info = cli({"topic", "info", "t", "--json"});
    ASSERT_EQ(info.code, 0) << info.err;
    EXPECT_EQ(nlohmann::json::parse(info.out).at("single_producer"), true);
    EXPECT_NE(cli({"topic", "info", "t"}).out.find("single-producer"), std::string::npos);

    auto first_client = connect();
    ASSERT_TRUE(first_client);
    auto first = first_client->publisher("t");
    ASSERT_TRUE(first) << first.error().message;
    auto refused = [](const Result<Publisher>& second) {
        ASSERT_FALSE(second);
        EXPECT_EQ(second.error().code, Errc::busy);
        EXPECT_NE(second.error().message.find("single-producer"), std::string::npos) << second.error().message;
        EXPECT_NE(second.error().message.find(std::to_string(getpid())), std::string::npos) << second.error().message;
    };
    refused(first_client->publisher("t"));  // from the same client
    refused(connect()->publisher("t"));     // and from another
    // A group would move retried messages to the tail as a second producer.
    SubscribeOptions o;
    o.group = "workers";
    auto member = first_client->subscribe("t", o);
    ASSERT_FALSE(member);
    EXPECT_NE(member.error().message.find("single-producer"), std::string::npos) << member.error().message;
    // Readers are as many as ever.
    auto reader = connect()->subscribe("t", SubscribeOptions{});
    ASSERT_TRUE(reader) << reader.error().message;

    ASSERT_EQ(first->publish(std::string_view("one")), PublishStatus::ok);
    first = make_error(Errc::ok, "");  // closed: the slot is given back
    EXPECT_TRUE(eventually([&] { return connect()->publisher("t").has_value(); }));
    // A topic without the setting takes any number.
    ASSERT_EQ(cli({"topic", "create", "many"}).code, 0);
    auto a = first_client->publisher("many"), b = first_client->publisher("many");
    EXPECT_TRUE(a && b);
}

TEST_F(SingleProducer, ConfiguredInTheConfigFile) {
    stop_daemon();
    write_file(path("bus.toml"), "[topics.fast]\nsingle_producer = true\ncapacity = \"64K\"\n");
    start_daemon({"--config", path("bus.toml")});
    auto c = connect();
    ASSERT_TRUE(c);
    auto s = c->topic_stats("fast");
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_TRUE(s->config.single_producer);
    auto p1 = c->publisher("fast");
    ASSERT_TRUE(p1);
    EXPECT_FALSE(c->publisher("fast"));
    write_file(path("bad.toml"), "[topics.fast]\nsingle_producer = \"yes\"\n");
    const auto check = run({SHMBUSD_PATH, "--dir", path("other"), "--config", path("bad.toml")});
    EXPECT_NE(check.code, 0);
    EXPECT_NE((check.out + check.err).find("single_producer' must be true or false"), std::string::npos) << check.out << check.err;
}

// Untimed topics (layout 1.10): messages carry timestamp 0 and no clock is read; what needs times
// is refused with a reason, and nothing is left behind by the refusal.
class Untimed : public SingleProducer {};

TEST_F(Untimed, MessagesCarryNoTimeAndWhatNeedsTimesIsRefused) {
    ASSERT_EQ(cli({"topic", "create", "quick", "--no-timestamps", "--capacity", "64K"}).code, 0);
    ASSERT_EQ(cli({"topic", "create", "timed", "--capacity", "64K"}).code, 0);
    const auto info = cli({"topic", "info", "quick", "--json"});
    ASSERT_EQ(info.code, 0) << info.err;
    EXPECT_EQ(nlohmann::json::parse(info.out).at("timestamps"), false);
    EXPECT_EQ(nlohmann::json::parse(cli({"topic", "info", "timed", "--json"}).out).at("timestamps"), true);
    EXPECT_NE(cli({"topic", "info", "quick"}).out.find("no timestamps"), std::string::npos);

    auto c = connect();
    ASSERT_TRUE(c);
    for (const char* topic : {"quick", "timed"}) {
        SubscribeOptions o;
        o.from = StartFrom::earliest;
        auto sub = c->subscribe(topic, o);
        ASSERT_TRUE(sub) << sub.error().message;
        auto pub = c->publisher(topic);
        ASSERT_TRUE(pub);
        ASSERT_EQ(pub->publish(std::string_view("one")), PublishStatus::ok);
        std::vector<std::span<const std::byte>> two(2, std::as_bytes(std::span("ab", 2)));
        ASSERT_EQ(pub->publish_batch(two).published, 2u);
        std::vector<uint64_t> stamps;
        while (stamps.size() < 3) {
            auto r = sub->receive([&](const Message& m) { stamps.push_back(m.timestamp_ns); }, 1s);
            ASSERT_EQ(r.status, ReceiveStatus::ok);
        }
        for (uint64_t t : stamps) EXPECT_EQ(t == 0, std::string(topic) == "quick") << topic << " " << t;
        // Reading from a time: refused on the untimed topic, by shmbusd and by seek().
        SubscribeOptions from_time;
        from_time.from = StartFrom::time;
        from_time.from_time_ns = 1;
        from_time.durable_name = "since";
        auto timed_sub = c->subscribe(topic, from_time);
        if (std::string(topic) == "quick") {
            ASSERT_FALSE(timed_sub);
            EXPECT_EQ(timed_sub.error().code, Errc::invalid_argument);
            EXPECT_NE(timed_sub.error().message.find("no timestamps"), std::string::npos) << timed_sub.error().message;
            auto seek = sub->seek(StartFrom::time, 1);
            ASSERT_FALSE(seek);
            EXPECT_NE(seek.error().message.find("no timestamps"), std::string::npos);
        } else {
            EXPECT_TRUE(timed_sub) << timed_sub.error().message;
        }
    }
    // The refused durable subscription was never made.
    auto stats = c->topic_stats("quick");
    ASSERT_TRUE(stats);
    for (const auto& s : stats->subscriptions) EXPECT_NE(s.name, "since");

    // Archiving needs times: refused from the command line (usage) and by shmbusd.
    const auto both = cli({"topic", "create", "both", "--no-timestamps", "--archive"});
    EXPECT_EQ(both.code, 2) << both.err;
    EXPECT_NE(both.err.find("--no-timestamps"), std::string::npos) << both.err;
    auto archived = c->set_archive("quick", {});
    ASSERT_FALSE(archived);
    EXPECT_NE(archived.error().message.find("no timestamps"), std::string::npos) << archived.error().message;
    TopicConfig on_full_archive;
    on_full_archive.timestamps = false;
    on_full_archive.on_full = OnFull::archive;
    EXPECT_FALSE(c->create_topic("both", on_full_archive));
    EXPECT_FALSE(c->topic_stats("both"));
}

TEST_F(Untimed, ConfiguredInTheConfigFile) {
    stop_daemon();
    write_file(path("bus.toml"), "[topics.quick]\ntimestamps = false\ncapacity = \"64K\"\n");
    start_daemon({"--config", path("bus.toml")});
    auto c = connect();
    ASSERT_TRUE(c);
    auto s = c->topic_stats("quick");
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_FALSE(s->config.timestamps);
    write_file(path("bad.toml"), "[topics.quick]\ntimestamps = false\narchive = true\n");
    const auto check = run({SHMBUSD_PATH, "--dir", path("other"), "--config", path("bad.toml")});
    EXPECT_NE(check.code, 0);
    EXPECT_NE((check.out + check.err).find("timestamps = false cannot be archived"), std::string::npos) << check.out << check.err;
}

// A publisher killed inside its claim (tail stored, claim not recorded) and right after recording
// it: shmbusd seals the claim, the next publisher gets the topic, and a durable reader receives
// every committed message once, in order, whole, over a ring that wraps many times.
class SingleProducerKilled : public SingleProducer, public ::testing::WithParamInterface<const char*> {};

TEST_P(SingleProducerKilled, TheSuccessorPublishesAndNothingCommittedIsLost) {
    ASSERT_EQ(cli({"topic", "create", "t", "--single-producer", "--capacity", "64K"}).code, 0);
    const pid_t sub = start_sub("sub", {"t", "--durable", "d", "--from", "earliest", "--count", "70000"});
    const pid_t dead = start_pub("dead", {"t", "50000", "0"}, {std::string("SHMBUS_CRASH_POINT=") + GetParam() + ":20001"});
    EXPECT_EQ(wait_exit(dead), 128 + SIGKILL);
    // The successor may only start once shmbusd has seen the death (at once, on the hang-up).
    ASSERT_TRUE(eventually([&] { return connect()->publisher("t").has_value(); })) << read_file(path("daemon.log"));
    const pid_t next = start_pub("next", {"t", "50000", "1"});
    EXPECT_EQ(wait_exit(next), 0) << read_file(path("next.err"));
    const Summary s = finish_sub("sub", sub);
    EXPECT_EQ(s.received, 70000u);
    EXPECT_EQ(s.bad, 0u);
    EXPECT_EQ(s.lost, 0u);
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, SingleProducerKilled, ::testing::Values("in_claim", "after_claim"));

// A batch publisher killed inside its 201st claim of 16 messages (before its headers, and after
// recording them): shmbusd seals the whole batch as 16 skip records, so readers see no gap in the
// ids and no message of it; every other message arrives once, in order, whole. On a topic with
// any number of publishers and on a single-producer topic.
class BatchPublisherKilled : public PeerTest, public ::testing::WithParamInterface<std::tuple<const char*, bool>> {};

TEST_P(BatchPublisherKilled, ItsBatchIsSealedIdByIdAndTheRestArrives) {
    const auto [point, single] = GetParam();
    std::vector<std::string> create{"topic", "create", "t", "--capacity", "64K"};
    if (single) create.push_back("--single-producer");
    ASSERT_EQ(cli(create).code, 0);
    const pid_t sub = start_sub("sub", {"t", "--durable", "d", "--from", "earliest", "--count", "53200"});
    const pid_t dead = start_pub("dead", {"t", "50000", "0", "--batch", "16"}, {std::string("SHMBUS_CRASH_POINT=") + point + ":201"});
    EXPECT_EQ(wait_exit(dead), 128 + SIGKILL);
    ASSERT_TRUE(eventually([&] { return connect()->publisher("t").has_value(); })) << read_file(path("daemon.log"));
    const pid_t next = start_pub("next", {"t", "50000", "1", "--batch", "7"});
    EXPECT_EQ(wait_exit(next), 0) << read_file(path("next.err"));
    const Summary s = finish_sub("sub", sub);
    EXPECT_EQ(s.received, 200u * 16 + 50000);
    EXPECT_EQ(s.bad, 0u);
    EXPECT_EQ(s.lost, 0u);
    auto stats = this->stats("t");
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->published, 201u * 16 + 50000);  // the sealed batch's ids are taken, not reused
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, BatchPublisherKilled,
                         ::testing::Combine(::testing::Values("in_claim", "after_claim"), ::testing::Bool()));

// An ephemeral reader holds the large message it reads in place; asleep inside its handler it
// holds the publisher back (a block topic fills up to the held message and no further), and
// SIGKILLed there its hold goes with its slot: the publisher finishes.
class InPlaceReader : public PeerTest {};

TEST_F(InPlaceReader, KilledWhileItHoldsAMessageItHoldsPublishersNoLonger) {
    ASSERT_EQ(cli({"topic", "create", "t", "--capacity", "64K", "--max-message", "4K"}).code, 0);
    const pid_t reader = start_sub("reader", {"t", "--in-place-from", "1024", "--slow-us", "60000000"});
    // One message first, and the reader inside its handler, holding it, before the stream starts.
    auto c = connect();
    ASSERT_TRUE(c);
    auto observer = c->subscribe("t", SubscribeOptions{});  // never polls: only looks at the slots
    ASSERT_TRUE(observer);
    const detail::Segment& seg = detail::Access::core(*observer).seg;
    auto holding = [&] {  // a hold counts while its slot is attached (producers look at no other)
        for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
            const auto& slot = seg.consumer_slot(i);
            if (slot.state.load() == uint32_t(layout::SlotState::attached) && slot.hold.load() != 0) return true;
        }
        return false;
    };
    {
        auto first = c->publisher("t");
        ASSERT_TRUE(first);
        ASSERT_EQ(first->publish(std::string(2000, 'h')), PublishStatus::ok);
    }
    ASSERT_TRUE(eventually(holding)) << read_file(path("reader.err"));
    const pid_t pub = start_pub("pub", {"t", "200", "0", "--size", "2000"});
    // It reads the first message and sleeps in its handler: the publisher stops a ring past it.
    ASSERT_TRUE(eventually([&] {
        auto s = stats("t");
        return s && s->published >= 26;  // 64 KiB of 2 KiB records, less a quarter ring of slack
    }));
    std::this_thread::sleep_for(200ms);
    const auto held = stats("t");
    ASSERT_TRUE(held);
    EXPECT_LT(held->published, 40u) << "the publisher passed a ring beyond the held message";
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(stats("t")->published, held->published) << "the publisher moved while the message was held";
    kill(reader, SIGKILL);
    EXPECT_EQ(wait_exit(reader), 128 + SIGKILL);
    EXPECT_EQ(wait_exit(pub), 0) << read_file(path("pub.err"));
    EXPECT_EQ(stats("t")->published, 201u);
    EXPECT_FALSE(holding());
}

}  // namespace
}  // namespace shmbus::test
