// Crash recovery through real processes: each test kills someone with SIGKILL at a chosen
// point (SHMBUS_CRASH_POINT, or the supervisor itself) and checks that the others carry on and
// that nothing acknowledged-delivery is lost.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>

#include <algorithm>
#include <map>
#include <memory>
#include <thread>

#include "peer_fixture.h"
#include "raw_socket.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

class CrashRecovery : public PeerTest {
protected:
    bool log_has(const std::string& text) { return read_file(path("daemon.log")).find(text) != std::string::npos; }
    uint64_t ms_since(std::chrono::steady_clock::time_point t0) {
        return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
    }
};

TEST_F(CrashRecovery, ASubscriberKilledBetweenReceiveAndAckGetsItsUnackedMessagesAgain) {
    const std::string log = path("d.log");
    pid_t first = start_sub("s1", {"t", "--durable", "d", "--log", log}, {"SHMBUS_CRASH_POINT=before_ack:3"});
    pid_t pub = start_pub("p", {"t", "2000", "0", "--pace-us", "20"});
    EXPECT_EQ(wait_exit(first), 128 + SIGKILL);
    EXPECT_EQ(wait_exit(pub), 0) << read_file(path("p.err"));
    pid_t second = start_sub("s2", {"t", "--durable", "d", "--log", log, "--until-id", "1999"});
    EXPECT_EQ(finish_sub("s2", second).bad, 0u);
    const DurableLog d = check_durable_log(log);
    EXPECT_EQ(d.problem, "");
    EXPECT_EQ(d.incarnations, 2u);
    EXPECT_EQ(d.ids.size(), 2000u);        // every message at least once
    EXPECT_GT(d.duplicates, 0u);           // the batch it never acked came again
    EXPECT_EQ(*d.ids.rbegin(), 1999u);
}

// A publisher reusing warm memory (PublisherOptions::reuse_space), killed in its third early wrap:
// after claiming padding to the ring's end, before writing it. shmbusd seals the padding (no
// record, no id: it is longer than any record's claim), the next publisher carries on, and a
// durable reader gets every committed message once, in order, whole. The publisher is paced so
// that the reader has read everything at each wrap.
TEST_F(CrashRecovery, APublisherKilledInsideAnEarlyWrapLeavesPaddingAndTheRestArrives) {
    ASSERT_EQ(cli({"topic", "create", "t", "--capacity", "16M", "--max-message", "512K"}).code, 0);
    const std::string log = path("dead.log");
    const pid_t sub = start_sub("sub", {"t", "--durable", "d", "--from", "earliest", "--until-seq", "1:99"});
    const pid_t dead = start_pub("dead", {"t", "1000", "0", "--size", "524288", "--reuse-space", "1", "--pace-us", "5000", "--log", log},
                                 {"SHMBUS_CRASH_POINT=in_wrap:3"});
    EXPECT_EQ(wait_exit(dead), 128 + SIGKILL);
    ASSERT_TRUE(eventually([&] { return stats("t") && stats("t")->recovery.dead_claims_sealed == 1; })) << read_file(path("daemon.log"));
    const pid_t next = start_pub("next", {"t", "100", "1", "--size", "524288"});
    EXPECT_EQ(wait_exit(next), 0) << read_file(path("next.err"));
    const Summary s = finish_sub("sub", sub);
    const std::string published = read_file(log);
    const auto committed = uint64_t(std::count(published.begin(), published.end(), '\n'));
    EXPECT_GE(committed, 3u);  // at least one message before each wrap
    EXPECT_EQ(s.received, committed + 100);
    EXPECT_EQ(s.last_id, committed + 99);  // the padding took no id
    EXPECT_EQ(s.bad, 0u);
    EXPECT_EQ(s.lost, 0u);
}

TEST_F(CrashRecovery, ASubscriberKilledMidSubscribeLeavesNothingBehind) {
    ASSERT_EQ(cli({"topic", "create", "t"}).code, 0);
    pid_t eph = spawn_sub("e", {"t"}, {"SHMBUS_CRASH_POINT=mid_subscribe:1"});
    EXPECT_EQ(wait_exit(eph), 128 + SIGKILL);
    pid_t dur = spawn_sub("d", {"t", "--durable", "m"}, {"SHMBUS_CRASH_POINT=mid_subscribe:1"});
    EXPECT_EQ(wait_exit(dur), 128 + SIGKILL);
    // The ephemeral slot is free; the durable cursor is kept, detached, and can be taken over.
    ASSERT_TRUE(eventually([&] {
        auto s = stats("t");
        return s && s->subscriptions.size() == 1 && !s->subscriptions[0].attached;
    }));
    auto s = stats("t");
    EXPECT_EQ(s->subscriptions[0].name, "m");
    EXPECT_EQ(s->recovery.subscribers_freed, 1u);
    EXPECT_EQ(s->recovery.subscribers_detached, 1u);
    pid_t pub = start_pub("p", {"t", "10", "0"});
    EXPECT_EQ(wait_exit(pub), 0);
    pid_t again = start_sub("d2", {"t", "--durable", "m", "--count", "10"});
    const Summary got = finish_sub("d2", again);
    EXPECT_EQ(got.received, 10u);  // published after the dead subscribe: all kept for it
    EXPECT_EQ(got.last_id, 9u);
}

TEST_F(CrashRecovery, AStalledPublisherIsUnblockedAndItsLateCommitRefused) {
    auto c = connect();
    TopicConfig config;
    config.unblock_timeout = 50ms;
    ASSERT_TRUE(c->create_topic("t", config).has_value());
    auto sub = c->subscribe("t");
    ASSERT_TRUE(sub.has_value());
    pid_t stalled = start_pub("p", {"t", "20", "0", "--stall-after", "5", "--stall-ms", "3000"});
    ASSERT_TRUE(eventually([&] { return read_file(path("p.out")).find("stalling id=4") != std::string::npos; }));
    auto other = c->publisher("t");
    ASSERT_EQ(other->publish("behind the stalled claim"), PublishStatus::ok);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::string> got;
    while (got.size() < 5 && ms_since(t0) < 2500)
        (void)sub->receive([&](const Message& m) { got.emplace_back(m.text()); }, 100ms);
    const uint64_t waited_ms = ms_since(t0);
    ASSERT_EQ(got.size(), 5u);
    EXPECT_EQ(got[4], "behind the stalled claim");
    EXPECT_LT(waited_ms, 1500u) << "readers must not wait for the stalled publisher";  // 50 ms + a tick, typically
    EXPECT_EQ(wait_exit(stalled), 0) << read_file(path("p.err"));
    EXPECT_NE(read_file(path("p.out")).find("stalled_commit=revoked"), std::string::npos) << read_file(path("p.out"));
    std::size_t after = 0;
    while (sub->receive([&](const Message&) { ++after; }, 200ms).count > 0) {
    }
    EXPECT_EQ(after, 15u);  // the publisher carried on after its refused commit
    auto s = stats("t");
    EXPECT_EQ(s->recovery.stalled_claims_unblocked, 1u);
    EXPECT_EQ(s->recovery.late_commits_refused, 1u);
    EXPECT_EQ(s->skip_records, 1u);
    EXPECT_TRUE(log_has("its late commit will be refused"));
}

TEST_F(CrashRecovery, ADetachedDurableCursorExpiresAndStopsHoldingPublishersBack) {
    auto c = connect();
    TopicConfig config;
    config.capacity = 4096;
    config.expire_detached = 300ms;
    ASSERT_TRUE(c->create_topic("t", config).has_value());
    {
        SubscribeOptions o;
        o.durable_name = "forgotten";
        ASSERT_TRUE(c->subscribe("t", o).has_value());
    }  // detached now, cursor at id 0
    auto pub = c->publisher("t");
    int ok = 0;
    while (pub->publish(std::string(32, 'x'), 0ms) == PublishStatus::ok) ++ok;
    EXPECT_EQ(ok, 64);  // the detached cursor holds the ring
    auto s = stats("t");
    ASSERT_EQ(s->subscriptions.size(), 1u);
    ASSERT_TRUE(s->subscriptions[0].expires_in.has_value());
    EXPECT_LE(*s->subscriptions[0].expires_in, 300ms);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(pub->publish(std::string(32, 'x'), 5s), PublishStatus::ok);  // waits for the expiry
    EXPECT_LT(ms_since(t0), 3000u);
    s = stats("t");
    EXPECT_TRUE(s->subscriptions.empty());
    EXPECT_EQ(s->recovery.cursors_expired, 1u);
    EXPECT_TRUE(log_has("durable subscription 'forgotten' detached for over"));
}

TEST_F(CrashRecovery, ClientsCarryOnWithoutTheSupervisorAndReconnectWhenItReturns) {
    ClientOptions co;
    co.dir = dir;
    co.timeout = 400ms;
    auto c = Client::connect(co);
    ASSERT_TRUE(c.has_value());
    auto pub = c->publisher("t");
    SubscribeOptions so;
    so.durable_name = "mine";
    auto sub = c->subscribe("t", so);
    ASSERT_TRUE(pub.has_value() && sub.has_value());
    pid_t peer = start_sub("peer", {"t", "--durable", "theirs"});

    kill_daemon();
    for (int i = 0; i < 100; ++i) ASSERT_EQ(pub->publish("while the supervisor is down"), PublishStatus::ok);
    std::size_t got = 0;
    while (got < 100 && sub->receive([&](const Message&) { ++got; }, 1s).count > 0) {
    }
    EXPECT_EQ(got, 100u);
    const auto t0 = std::chrono::steady_clock::now();
    auto refused = c->create_topic("new", {});
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, Errc::daemon_not_running) << refused.error().message;
    EXPECT_NE(refused.error().message.find("did not come back within 400 ms"), std::string::npos) << refused.error().message;
    EXPECT_GE(ms_since(t0), 350u);  // it waited out its deadline, retrying
    EXPECT_LT(ms_since(t0), 3000u);

    start_daemon();
    // The client notices by itself and reconnects in the background, before anything needs it.
    EXPECT_TRUE(eventually([&] { return c->reconnects() == 1; }, 3s));
    EXPECT_TRUE(c->create_topic("new", {}).has_value());
    EXPECT_EQ(c->reconnects(), 1u);
    auto s = stats("t");
    ASSERT_EQ(s->subscriptions.size(), 2u);
    for (const auto& sub_stats : s->subscriptions) EXPECT_TRUE(sub_stats.attached) << sub_stats.name;
    EXPECT_EQ(s->producers, 1u);
    // Owners registered with the old supervisor are watched by the new one: a death is seen at once.
    kill(peer, SIGKILL);
    EXPECT_EQ(wait_exit(peer), 128 + SIGKILL);
    EXPECT_TRUE(eventually([&] {
        auto st = stats("t");
        for (const auto& x : st->subscriptions)
            if (x.name == "theirs") return !x.attached;
        return false;
    }, 2s));
    EXPECT_EQ(stats("t")->recovery.subscribers_detached, 1u);
    // Our own slots are still ours: unsubscribing through the new connection is accepted.
    sub = make_error(Errc::ok, "");
    pub = make_error(Errc::ok, "");
    EXPECT_TRUE(eventually([&] { return stats("t")->producers == 0; }, 2s));
    EXPECT_FALSE(log_has("is not yours"));
}

TEST_F(CrashRecovery, WithoutTheWatcherTheNextRequestReconnects) {
    ClientOptions co;
    co.dir = dir;
    co.reconnect_in_background = false;
    auto c = Client::connect(co);
    ASSERT_TRUE(c.has_value());
    kill_daemon();
    start_daemon();
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(c->reconnects(), 0u);  // nobody looked yet
    EXPECT_TRUE(c->list_topics().has_value());
    EXPECT_EQ(c->reconnects(), 1u);
}

TEST_F(CrashRecovery, APublisherThatDiedWhileTheSupervisorWasDownIsRecoveredAtRestart) {
    pid_t sub = start_sub("s", {"t", "--durable", "d", "--until-id", "150", "--capacity", "64K"});
    pid_t dead = start_pub("dead", {"t", "1000", "0", "--pace-us", "5000"}, {"SHMBUS_CRASH_POINT=after_claim:101"});
    ASSERT_TRUE(eventually([&] { auto s = stats("t"); return s && s->published >= 5; }));
    kill_daemon();
    EXPECT_EQ(wait_exit(dead), 128 + SIGKILL);  // died holding claim 101 (id 100) with nobody watching
    start_daemon();
    pid_t alive = start_pub("alive", {"t", "50", "1"});
    EXPECT_EQ(wait_exit(alive), 0) << read_file(path("alive.err"));
    const Summary s = finish_sub("s", sub);
    EXPECT_EQ(s.bad, 0u);
    EXPECT_EQ(s.received, 150u);
    auto st = stats("t");
    EXPECT_EQ(st->recovery.dead_claims_sealed, 1u);
    EXPECT_EQ(st->recovery.owners_dead_at_restart, 1u);  // the publisher; the subscriber was alive
    EXPECT_TRUE(log_has("died while shmbusd was down"));
}

// shmbusd dies after registering a slot but before its reply arrives: the client repeats the
// request with the same token and gets the same slot, not a second one (nor "busy").
TEST_F(CrashRecovery, ARequestRepeatedAfterTheSupervisorDiedGetsTheSlotItRegistered) {
    ASSERT_EQ(cli({"topic", "create", "t"}).code, 0);
    protocol::Subscribe sub{};
    std::memcpy(sub.topic, "t", 1);
    std::memcpy(sub.durable_name, "r", 1);
    sub.from = uint32_t(StartFrom::latest);
    sub.token = 0x5eed;
    protocol::OpenTopic open{};
    std::memcpy(open.topic, "t", 1);
    open.flags = protocol::kAsPublisher;
    open.token = 0xfeed;
    uint32_t consumer_slot = 0, producer_slot = 0;
    RawSocket first(dir);  // stays open: the registrations stay ours
    first.hello();
    first.send_frame(uint16_t(protocol::Type::subscribe), &sub, sizeof sub);
    consumer_slot = first.reply_as<protocol::SubscribeOk>(int(protocol::Type::subscribe_ok)).slot;
    first.send_frame(uint16_t(protocol::Type::open_topic), &open, sizeof open);
    producer_slot = first.reply_as<protocol::TopicOk>(int(protocol::Type::topic_ok)).producer_slot;
    kill_daemon();
    start_daemon();
    RawSocket again(dir);
    again.hello();
    again.send_frame(uint16_t(protocol::Type::subscribe), &sub, sizeof sub);
    EXPECT_EQ(again.reply_as<protocol::SubscribeOk>(int(protocol::Type::subscribe_ok)).slot, consumer_slot);
    again.send_frame(uint16_t(protocol::Type::open_topic), &open, sizeof open);
    EXPECT_EQ(again.reply_as<protocol::TopicOk>(int(protocol::Type::topic_ok)).producer_slot, producer_slot);
    sub.token = 0x07e5;
    again.send_frame(uint16_t(protocol::Type::subscribe), &sub, sizeof sub);
    EXPECT_EQ(again.reply_type(), int(protocol::Type::error));  // another request for the name: busy
    auto s = stats("t");
    EXPECT_EQ(s->subscriptions.size(), 1u);
    EXPECT_EQ(s->producers, 1u);
}

// One process, two connections (two Clients): the slots say which connection registered them, so
// the one that closes takes its own slots along and leaves the other's alone.
TEST_F(CrashRecovery, AClosedConnectionReleasesItsOwnSlotsAndNotThoseOfTheProcesssOtherConnection) {
    ASSERT_EQ(cli({"topic", "create", "t"}).code, 0);
    auto subscribe = [](RawSocket& s, const char* durable_name, uint64_t token) {
        protocol::Subscribe sub{};
        std::memcpy(sub.topic, "t", 1);
        std::memcpy(sub.durable_name, durable_name, std::strlen(durable_name));
        sub.from = uint32_t(StartFrom::latest);
        sub.token = token;
        s.send_frame(uint16_t(protocol::Type::subscribe), &sub, sizeof sub);
        (void)s.reply_as<protocol::SubscribeOk>(int(protocol::Type::subscribe_ok));
    };
    auto publish = [](RawSocket& s, uint64_t token) {
        protocol::OpenTopic open{};
        std::memcpy(open.topic, "t", 1);
        open.flags = protocol::kAsPublisher;
        open.token = token;
        s.send_frame(uint16_t(protocol::Type::open_topic), &open, sizeof open);
        (void)s.reply_as<protocol::TopicOk>(int(protocol::Type::topic_ok));
    };
    auto closing = std::make_unique<RawSocket>(dir);
    RawSocket staying(dir);
    closing->hello();
    staying.hello();
    subscribe(*closing, "", 1);
    subscribe(*closing, "left", 2);
    publish(*closing, 3);
    subscribe(staying, "", 4);
    subscribe(staying, "kept", 5);
    publish(staying, 6);
    ASSERT_EQ(stats("t")->producers, 2u);
    closing.reset();  // the connection closes; the process lives on
    ASSERT_TRUE(eventually([&] { return stats("t")->producers == 1; }));
    const auto st = stats("t");
    std::map<std::string, std::string> subs;  // name ("" for the ephemeral one) -> state
    for (const auto& sub : st->subscriptions) subs[sub.name] = sub.attached ? "attached" : "detached";
    EXPECT_EQ(subs, (std::map<std::string, std::string>{{"", "attached"}, {"kept", "attached"}, {"left", "detached"}}));
}

// A publisher SIGKILLs itself inside its 101st claim: right after winning the CAS (only its
// announcement names the claim), or once the claim is recorded. Either way readers move on.
class DeadPublisher : public CrashRecovery, public ::testing::WithParamInterface<const char*> {};

TEST_P(DeadPublisher, ReadersMoveOnPastTheClaimItLeft) {
    pid_t sub = start_sub("s", {"t", "--durable", "d", "--until-id", "150", "--capacity", "64K"});
    pid_t dead = start_pub("dead", {"t", "1000", "0"}, {std::string("SHMBUS_CRASH_POINT=") + GetParam() + ":101"});
    EXPECT_EQ(wait_exit(dead), 128 + SIGKILL);
    pid_t alive = start_pub("alive", {"t", "50", "1"});
    EXPECT_EQ(wait_exit(alive), 0) << read_file(path("alive.err"));
    const Summary s = finish_sub("s", sub);
    EXPECT_EQ(s.bad, 0u);
    EXPECT_EQ(s.received, 150u);  // 100 from the dead one, its claim skipped (id 100), then 50
    EXPECT_EQ(s.last_id, 150u);
    auto st = stats("t");
    EXPECT_EQ(st->skip_records, 1u);
    EXPECT_EQ(st->recovery.dead_claims_sealed, 1u);
    EXPECT_EQ(st->recovery.producers_released, 1u);  // the dead one; the live one closed its slot itself
    EXPECT_TRUE(log_has("sealed it as a skip record"));
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, DeadPublisher, ::testing::Values("in_claim", "after_claim"));

class Gc : public CrashRecovery {
protected:
    // Another bus in its own directory with one topic; returns its directory.
    std::string other_bus(const std::string& name, pid_t& pid) {
        const std::string d = dir + "-" + name;
        std::filesystem::create_directories(d);
        pid = spawn({SHMBUSD_PATH, "--dir", d}, {path(name + ".log"), path(name + ".err")});
        EXPECT_TRUE(eventually([&] { return run({SHMBUS_CLI_PATH, "--dir", d, "topic", "create", "x"}).code == 0; }));
        return d;
    }
    static std::string segment_of(const std::string& bus_dir) {
        std::string id = read_file(bus_dir + "/bus.id").substr(0, 16);
        return "/shmbus-" + id + "-x";
    }
    static bool segment_exists(const std::string& shm) {
        const int fd = shm_open(shm.c_str(), O_RDONLY, 0);
        if (fd >= 0) close(fd);
        return fd >= 0;
    }
};

TEST_F(Gc, RemovesWhatBusesThatNoLongerRunLeftAndKeepsWhatMayRunAgain) {
    pid_t gone_pid = 0, down_pid = 0;
    const std::string gone = other_bus("gone", gone_pid);
    const std::string down = other_bus("down", down_pid);
    const std::string gone_seg = segment_of(gone), down_seg = segment_of(down);
    kill(gone_pid, SIGTERM);
    EXPECT_EQ(wait_exit(gone_pid), 0);
    std::filesystem::remove_all(gone);  // that bus is gone for good
    kill(down_pid, SIGKILL);            // that one crashed: its socket file stays behind
    EXPECT_EQ(wait_exit(down_pid), 128 + SIGKILL);

    const RunResult r = cli({"gc"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("removed segment /dev/shm" + gone_seg + ": its bus directory " + gone + " no longer exists"),
              std::string::npos) << r.out;
    EXPECT_NE(r.out.find("removed socket " + down + "/shmbusd.sock: no shmbusd serves " + down), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("2 stale item(s) removed"), std::string::npos) << r.out;
    EXPECT_FALSE(segment_exists(gone_seg));
    EXPECT_TRUE(segment_exists(down_seg));  // its bus may be restarted and re-adopt it

    const RunResult again = cli({"gc", "--json"});
    EXPECT_EQ(again.code, 0);
    EXPECT_NE(again.out.find("\"count\": 0"), std::string::npos) << again.out;

    // The crashed bus comes back, re-adopts its topic, and leaves nothing once it is cleaned up.
    pid_t back = spawn({SHMBUSD_PATH, "--dir", down}, {path("back.log"), path("back.err")});
    ASSERT_TRUE(eventually([&] { return run({SHMBUS_CLI_PATH, "--dir", down, "topic", "delete", "x"}).code == 0; }));
    kill(back, SIGTERM);
    EXPECT_EQ(wait_exit(back), 0);
    EXPECT_FALSE(segment_exists(down_seg));
    EXPECT_FALSE(std::filesystem::exists(down + "/shmbusd.sock"));
    std::filesystem::remove_all(down);
}

// `shmbus gc` works without a shmbusd for its directory: it collects the same way itself, and a
// stopped bus (its directory and bus id still there) keeps its segment and cursor object.
TEST_F(Gc, WorksWithoutADaemon) {
    pid_t gone_pid = 0;
    const std::string gone = other_bus("gone", gone_pid);
    const std::string gone_seg = segment_of(gone);
    kill(gone_pid, SIGTERM);
    EXPECT_EQ(wait_exit(gone_pid), 0);
    std::filesystem::remove_all(gone);
    const std::string own_seg = segment_of(dir);
    ASSERT_EQ(cli({"topic", "create", "x"}).code, 0);
    stop_daemon();
    const RunResult r = cli({"--wait", "0s", "gc"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("removed segment /dev/shm" + gone_seg + ": its bus directory " + gone + " no longer exists"),
              std::string::npos) << r.out;
    EXPECT_FALSE(segment_exists(gone_seg));
    EXPECT_FALSE(segment_exists(gone_seg + "@cursors"));
    EXPECT_TRUE(segment_exists(own_seg));
    EXPECT_TRUE(segment_exists(own_seg + "@cursors"));
    start_daemon();
}

// Segments record their bus directory as an absolute path, whatever --dir said: another bus's gc
// judges from its own working directory whether that directory still exists.
TEST_F(Gc, ASegmentNamesItsBusDirectoryAbsolutely) {
    const std::string parent = dir + "-rel";
    std::filesystem::create_directories(parent);
    pid_t d = spawn({"/bin/sh", "-c", "cd " + parent + " && exec " + SHMBUSD_PATH + " --dir ./bus"}, {path("rel.log"), path("rel.err")});
    ASSERT_TRUE(eventually([&] { return run({SHMBUS_CLI_PATH, "--dir", parent + "/bus", "topic", "create", "x"}).code == 0; }));
    const std::string shm = segment_of(parent + "/bus");
    const int fd = shm_open(shm.c_str(), O_RDONLY, 0);
    ASSERT_GE(fd, 0);
    layout::SegmentHeader h{};
    ASSERT_EQ(pread(fd, &h, sizeof h, 0), ssize_t(sizeof h));
    close(fd);
    EXPECT_EQ(std::string(h.bus_dir), std::filesystem::canonical(parent + "/bus").string());
    EXPECT_EQ(run({SHMBUS_CLI_PATH, "--dir", parent + "/bus", "topic", "delete", "x"}).code, 0);
    kill(d, SIGTERM);
    EXPECT_EQ(wait_exit(d), 0);
    std::filesystem::remove_all(parent);
}

TEST_F(Gc, TheSupervisorCollectsAtStart) {
    pid_t gone_pid = 0;
    const std::string gone = other_bus("gone", gone_pid);
    const std::string seg = segment_of(gone);
    kill(gone_pid, SIGTERM);
    EXPECT_EQ(wait_exit(gone_pid), 0);
    std::filesystem::remove_all(gone);
    stop_daemon();
    start_daemon();
    EXPECT_FALSE(segment_exists(seg));
    EXPECT_TRUE(log_has("gc: removed segment /dev/shm" + seg));
}

// The other half of that: a collection holds a stopped bus's lock (shared) while it removes its
// socket; the bus's shmbusd starting in that moment waits it out instead of taking it for a
// running shmbusd (exit 3).
TEST_F(Gc, AShmbusdStartingWhileACollectionHoldsItsLockWaitsItOut) {
    const std::string d = dir + "-held";
    std::filesystem::create_directories(d);
    ::chmod(d.c_str(), 0700);
    const int lock = ::open((d + "/shmbusd.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(lock, 0);
    ASSERT_EQ(::flock(lock, LOCK_SH), 0);  // as collect_stale holds it
    const pid_t p = spawn({SHMBUSD_PATH, "--dir", d}, {path("held.log"), path("held.err")});
    std::this_thread::sleep_for(300ms);
    ::close(lock);  // the collection is done
    EXPECT_TRUE(eventually([&] { return run({SHMBUS_CLI_PATH, "--dir", d, "--wait", "0", "topic", "list"}).code == 0; }))
        << read_file(path("held.err")) << read_file(path("held.log"));
    kill(p, SIGTERM);
    EXPECT_EQ(wait_exit(p), 0);
    std::filesystem::remove_all(d);
}

// A bus restarting (its shmbusd killed, then started again) while other shmbusds start beside it:
// their collections see its lock free for a moment, and must never remove the socket its new
// shmbusd made, nor keep it from starting. Each round starts the restarting bus and two others at
// once, then checks the restarted bus answers.
TEST_F(Gc, ABusRestartingWhileOthersStartKeepsItsSocket) {
    pid_t restarting = 0;
    const std::string bus = other_bus("restarting", restarting);
    std::vector<std::string> others;
    for (const char* name : {"a", "b"}) {
        others.push_back(dir + "-" + name);
        std::filesystem::create_directories(others.back());
    }
    for (int round = 0; round < 25; ++round) {
        kill(restarting, SIGKILL);
        EXPECT_NE(wait_exit(restarting), 3);
        std::vector<pid_t> started;
        for (const auto& d : others) started.push_back(spawn({SHMBUSD_PATH, "--dir", d}, {path("other.log"), path("other.err")}));
        restarting = spawn({SHMBUSD_PATH, "--dir", bus}, {path("restarting.log"), path("restarting.err")});
        ASSERT_TRUE(eventually([&] { return run({SHMBUS_CLI_PATH, "--dir", bus, "--wait", "0", "topic", "list"}).code == 0; }, 10s))
            << "round " << round << ": the restarted bus does not answer\n" << read_file(path("restarting.err"))
            << read_file(path("restarting.log"));
        for (const auto& d : others)  // each started (and collected) before it is stopped
            EXPECT_TRUE(eventually([&] { return run({SHMBUS_CLI_PATH, "--dir", d, "--wait", "0", "topic", "list"}).code == 0; }));
        for (pid_t p : started) kill(p, SIGTERM);
        for (pid_t p : started) EXPECT_EQ(wait_exit(p), 0) << read_file(path("other.err")) << read_file(path("other.log"));
        // Still answering once the others' collections are done.
        EXPECT_EQ(run({SHMBUS_CLI_PATH, "--dir", bus, "--wait", "0", "topic", "list"}).code, 0) << "round " << round;
    }
    kill(restarting, SIGTERM);
    EXPECT_EQ(wait_exit(restarting), 0);
    for (const auto& d : others) std::filesystem::remove_all(d);
}

}  // namespace
}  // namespace shmbus::test
