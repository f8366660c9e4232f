// Archived topics through real processes: the archiver and shmbusd SIGKILLed while 200,000
// messages go by, replay from disk into the ring under load, a stopped durable subscriber that
// never holds publishers back, a simulated reboot, and a full disk.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "archive_fixture.h"
#include "test_payload.h"

namespace {

using namespace shmbus;
using namespace shmbus::test;
using namespace std::chrono_literals;

// The test the format is for: killed at random moments (the archiver alone, or shmbusd and with
// it every archiver), the archive still holds each of 200,000 messages once, in order, whole.
TEST_F(Archive, EveryMessageIsArchivedExactlyOnceWhileTheArchiverAndShmbusdAreKilled) {
    TopicConfig config;
    config.capacity = 256 << 10;
    ArchiveSettings settings;
    settings.file_bytes = 1 << 20;
    make_archived("kill", config, settings);
    constexpr uint64_t kCount = 200'000;
    // Paced (a sleep every 16 messages, a timer slack of 50 to 100 us): the kills land while it runs.
    const pid_t pub = start_pub("pub", {"kill", std::to_string(kCount), "1", "--size", "48", "--timeout-ms", "120000",
                                        "--pace-us", "1", "--pace-every", "16", "--wait-for-daemon"});
    ASSERT_TRUE(eventually([&] { auto s = stats("kill"); return s && s->published > 0; }));  // registered: now the kills
    std::mt19937 rng(7);
    int archiver_kills = 0, daemon_kills = 0;
    int pub_status = -1;
    auto publishing = [&] {
        int st = 0;
        if (::waitpid(pub, &st, WNOHANG) != pub) return true;
        pub_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return false;
    };
    // The kills are spread over the run whatever the machine's speed: while the test waits for the
    // next kill, a publisher further ahead than its share of the 20 kills wanted is held (SIGSTOP),
    // and it is let go a few milliseconds before the kill, so that each kill lands while records are
    // being written.
    constexpr int kKillsWanted = 20;
    bool held = false;
    auto ahead_of_the_kills = [&] {
        auto s = stats("kill");
        return s && s->published * kKillsWanted > kCount * uint64_t(archiver_kills + daemon_kills);
    };
    auto wait_holding_the_publisher = [&](int ms) {
        for (int waited = 0; waited < ms; waited += 2) {
            if (!held && ahead_of_the_kills()) held = ::kill(pub, SIGSTOP) == 0;
            std::this_thread::sleep_for(2ms);
        }
        if (held) ::kill(pub, SIGCONT);
        held = false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1 + rng() % 3));
    };
    while (publishing()) {
        wait_holding_the_publisher(20 + int(rng() % 120));
        if (rng() % 4 == 0 && daemon_kills < 6) {
            kill_daemon();  // its archivers die with it
            start_daemon();
            ++daemon_kills;
        } else if (auto pid = archiver_pid("kill")) {
            ::kill(*pid, SIGKILL);
            ++archiver_kills;
        }
    }
    EXPECT_EQ(pub_status, 0) << read_file(path("pub.out"));
    EXPECT_GE(archiver_kills, 10);
    EXPECT_GE(daemon_kills, 2);
    ASSERT_TRUE(eventually([&] { return archived_last_id("kill") == kCount - 1; }, 60s)) << read_file(path("daemon.log"));
    const Archived a = read_archive("kill");
    EXPECT_EQ(a.broken, "");
    EXPECT_EQ(a.bad, 0u);
    EXPECT_TRUE(exactly(a.ids, kCount)) << archiver_kills << " archiver kills, " << daemon_kills << " shmbusd kills";
    auto report = connect()->verify_archive("kill");
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->ok());
    EXPECT_EQ(report->records, kCount);
    EXPECT_GT(report->files, 4u);
    std::printf("[ archive ] %d archiver kills, %d shmbusd kills, %llu records in %llu files\n", archiver_kills, daemon_kills,
                (unsigned long long)report->records, (unsigned long long)report->files);
}

// Readers that start far behind the ring read the disk, then the ring, while a publisher laps the
// ring many times over: every id once, in order, none lost.
TEST_F(Archive, ReplayGoesFromTheDiskIntoTheRingWithoutAGapOrARepeatUnderLoad) {
    TopicConfig config;
    config.capacity = 64 << 10;
    config.on_full = OnFull::archive;
    ArchiveSettings settings;
    settings.file_bytes = 256 << 10;
    make_archived("replay", config, settings);
    constexpr uint64_t kCount = 300'000, kRead = 250'000;
    const pid_t pub = start_pub("pub", {"replay", std::to_string(kCount), "1", "--size", "40", "--pace-us", "1", "--pace-every", "4"});
    ASSERT_TRUE(eventually([&] { auto s = stats("replay"); return s && s->published > 50'000; }, 30s));
    const pid_t ephemeral = start_sub("ephemeral", {"replay", "--from", "earliest", "--count", std::to_string(kRead)});
    const pid_t durable = start_sub("durable", {"replay", "--durable", "d", "--from", "earliest", "--count", std::to_string(kRead)});
    for (auto [name, pid] : {std::pair{"ephemeral", ephemeral}, std::pair{"durable", durable}}) {
        const Summary s = finish_sub(name, pid);
        EXPECT_EQ(s.received, kRead) << name;
        EXPECT_EQ(s.last_id, kRead - 1) << name;  // ids rise: from 0 to here, kRead of them, is every one
        EXPECT_EQ(s.lost, 0u) << name;
        EXPECT_EQ(s.bad, 0u) << name;
    }
    EXPECT_EQ(wait_exit(pub), 0) << read_file(path("pub.out"));
}

// On an on-full archive topic a durable subscriber that stops reading never holds publishers back:
// ten rings and more go by while it is stopped, and afterwards it gets every message.
TEST_F(Archive, AStoppedDurableSubscriberNeverHoldsPublishersBack) {
    TopicConfig config;
    config.capacity = 64 << 10;
    config.on_full = OnFull::archive;
    make_archived("slow", config);
    constexpr uint64_t kCount = 20'000;  // about 35 rings of 64 KiB
    const pid_t sub = start_sub("slow", {"slow", "--durable", "s", "--from", "earliest", "--count", std::to_string(kCount)});
    ASSERT_EQ(::kill(sub, SIGSTOP), 0);
    const pid_t pub = start_pub("pub", {"slow", std::to_string(kCount), "1", "--size", "64", "--timeout-ms", "20000"});
    EXPECT_EQ(wait_exit(pub), 0) << read_file(path("pub.out"));  // finished while the subscriber was stopped
    auto s = stats("slow");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->published, kCount);
    EXPECT_EQ(s->full_refusals, 0u);
    EXPECT_GT(s->tail_position, 10 * config.capacity);
    ASSERT_EQ(::kill(sub, SIGCONT), 0);
    const Summary got = finish_sub("slow", sub);
    EXPECT_EQ(got.received, kCount);
    EXPECT_EQ(got.last_id, kCount - 1);
    EXPECT_EQ(got.lost, 0u);
    EXPECT_EQ(got.bad, 0u);
}

// A reboot, simulated: shmbusd stopped, the topic's segments gone from /dev/shm. The topic comes
// back with its settings, its ids continue, and its durable subscription resumes after its last
// ack: nothing acked comes again (a clean stop persisted it), nothing unacked is lost.
TEST_F(Archive, ARebootKeepsTopicsIdsAndCursors) {
    TopicConfig config;
    config.capacity = 64 << 10;
    make_archived("boot", config);
    EXPECT_EQ(wait_exit(start_pub("pub1", {"boot", "5000", "1", "--size", "64"})), 0);
    const Summary first = finish_sub("a1", start_sub("a1", {"boot", "--durable", "a", "--from", "earliest", "--count", "3000"}));
    EXPECT_EQ(first.received, 3000u);
    ASSERT_TRUE(eventually([&] { return archived_last_id("boot") == 4999u; }));

    stop_daemon();
    remove_segments("boot");
    start_daemon();
    auto s = stats("boot");
    ASSERT_TRUE(s) << read_file(path("daemon.log"));
    EXPECT_EQ(s->published, 5000u);  // the ids go on from the archive's
    EXPECT_EQ(s->config.capacity, config.capacity);
    const Summary rest = finish_sub("a2", start_sub("a2", {"boot", "--durable", "a", "--count", "2000", "--log", path("a2.log")}));
    EXPECT_EQ(rest.received, 2000u);
    EXPECT_EQ(rest.last_id, 4999u);
    EXPECT_EQ(rest.lost, 0u);
    EXPECT_EQ(rest.bad, 0u);
    EXPECT_NE(read_file(path("a2.log")).find("3000 1 3000"), std::string::npos);  // the first one is the first unacked

    // New messages after the reboot get new ids, and reach the same subscription.
    EXPECT_EQ(wait_exit(start_pub("pub2", {"boot", "100", "2", "--size", "64"})), 0);
    const Summary fresh = finish_sub("a3", start_sub("a3", {"boot", "--durable", "a", "--count", "100"}));
    EXPECT_EQ(fresh.received, 100u);
    EXPECT_EQ(fresh.last_id, 5099u);
    EXPECT_TRUE(exactly(read_archive("boot").ids, 5100));
}

// Deleting an archived topic whose archiver does not stop (SIGSTOPped) holds up no other client:
// the archiver is killed after its grace period and the archive removed then, while a topic made
// again under the same name is archived afresh at once, into a directory of its own.
TEST_F(Archive, DeletingATopicWhoseArchiverHangsHoldsUpNobody) {
    make_archived("hang", TopicConfig{});
    EXPECT_EQ(wait_exit(start_pub("pub1", {"hang", "100", "1", "--size", "64"})), 0);
    ASSERT_TRUE(eventually([&] { return archived_last_id("hang") == 99u; }));
    const auto pid = archiver_pid("hang");
    ASSERT_TRUE(pid);
    ASSERT_EQ(::kill(*pid, SIGSTOP), 0);
    auto c = connect();
    ASSERT_TRUE(c);
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(c->delete_topic("hang"));
    auto other = connect();  // a second client, served while the archiver has not stopped
    ASSERT_TRUE(other);
    ASSERT_TRUE(other->list_topics());
    // The stop waits up to 5 s for an archiver: the loop must not have.
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s) << read_file(path("daemon.log"));
    EXPECT_FALSE(std::filesystem::exists(dir + "/state/topics/hang"));  // moved away at once

    make_archived("hang", TopicConfig{});
    EXPECT_EQ(wait_exit(start_pub("pub2", {"hang", "10", "2", "--size", "64"})), 0);
    ASSERT_TRUE(eventually([&] { return archived_last_id("hang") == 9u; }));
    EXPECT_TRUE(exactly(read_archive("hang").ids, 10));

    // The stopped archiver is killed and the old archive removed.
    EXPECT_TRUE(eventually([&] { return ::kill(*pid, 0) != 0; }, 15s));
    EXPECT_TRUE(eventually([&] {
        std::error_code ec;
        return std::filesystem::is_empty(dir + "/state/deleted", ec) && !ec;
    }));
    EXPECT_NE(read_file(path("daemon.log")).find("did not stop in 5 s: killed"), std::string::npos);
}

// A topic.toml as shmbusd wrote it before its [topic] table took the configuration file's keys
// still makes the topic again after a reboot, with every setting it recorded.
TEST_F(Archive, AnOlderTopicStateFileStillRestoresTheTopic) {
    TopicConfig config;
    config.capacity = 128 << 10;
    config.max_consumers = 32;
    config.unblock_timeout = 250ms;
    make_archived("old", config);
    EXPECT_EQ(wait_exit(start_pub("pub1", {"old", "50", "1", "--size", "64"})), 0);
    ASSERT_TRUE(eventually([&] { return archived_last_id("old") == 49u; }));
    stop_daemon();
    {
        std::ofstream f(dir + "/state/topics/old/topic.toml", std::ios::trunc);
        f << "[archive]\nfile_bytes = 1048576\nfsync = 'interval'\nretain_bytes = 2097152\nretain_ns = 3600000000000\n\n"
             "[topic]\nbus_dir = '" << dir << "'\ncapacity = 131072\nexpire_detached_ns = 0\nmax_consumers = 32\n"
             "max_message = " << max_message_for(128 << 10) << "\nmax_producers = 64\non_full = 'block'\n"
             "single_producer = false\nunblock_timeout_ns = 250000000\n";
    }
    remove_segments("old");
    start_daemon();
    auto s = stats("old");
    ASSERT_TRUE(s) << read_file(path("daemon.log"));
    EXPECT_EQ(s->published, 50u);
    EXPECT_EQ(s->config.capacity, 128u << 10);
    EXPECT_EQ(s->config.max_consumers, 32u);
    EXPECT_EQ(s->config.unblock_timeout, 250ms);
    auto c = connect();
    auto info = c->archive_info("old");
    ASSERT_TRUE(info) << read_file(path("daemon.log"));
    EXPECT_EQ(info->settings.retain_bytes, 2u << 20);
    EXPECT_EQ(info->settings.fsync, ArchiveFsync::interval);
    EXPECT_EQ(info->settings.retain_time, std::chrono::hours(1));
}

// A state directory another bus used before: its archived topics are not made again on this bus.
TEST_F(Archive, AnotherBussArchivedTopicsAreLeftAlone) {
    make_archived("theirs", TopicConfig{});
    stop_daemon();
    const std::string other = dir + "/other-bus";
    std::filesystem::create_directories(other);
    ::chmod(other.c_str(), 0700);
    const pid_t d = spawn({SHMBUSD_PATH, "--dir", other, "--state-dir", dir + "/state"},
                          {path("other.log"), path("other.err"), "", std::nullopt});
    ClientOptions o;
    o.dir = other;
    ASSERT_TRUE(eventually([&] { return Client::connect(o).has_value(); }));
    auto c = Client::connect(o);
    auto names = c->list_topics();
    ASSERT_TRUE(names);
    EXPECT_TRUE(names->empty());
    EXPECT_NE(read_file(path("other.log")).find("belongs to bus"), std::string::npos) << read_file(path("other.log"));
    ::kill(d, SIGTERM);
    EXPECT_EQ(wait_exit(d), 0);
    start_daemon();  // the bus it belongs to still has it
    EXPECT_TRUE(stats("theirs").has_value());
}

// shmbusd killed, not stopped: cursors are as the last persist (every second) left them, so
// at most what was acked since comes again; nothing is lost.
TEST_F(Archive, ARebootAfterAKillRepeatsAtMostTheLastSecondsAcks) {
    TopicConfig config;
    config.capacity = 64 << 10;
    config.on_full = OnFull::archive;
    make_archived("crash", config);
    EXPECT_EQ(wait_exit(start_pub("pub1", {"crash", "4000", "1", "--size", "64"})), 0);
    EXPECT_EQ(finish_sub("b1", start_sub("b1", {"crash", "--durable", "b", "--from", "earliest", "--count", "1000"})).received, 1000u);
    std::this_thread::sleep_for(2500ms);  // persisted by now (every second), with room for a loaded machine
    EXPECT_EQ(finish_sub("b2", start_sub("b2", {"crash", "--durable", "b", "--count", "500"})).received, 500u);
    ASSERT_TRUE(eventually([&] { return archived_last_id("crash") == 3999u; }));
    kill_daemon();
    remove_segments("crash");
    start_daemon();
    const Summary rest = finish_sub("b3", start_sub("b3", {"crash", "--durable", "b", "--until-id", "3999", "--log", path("b3.log")}));
    EXPECT_EQ(rest.last_id, 3999u);
    EXPECT_EQ(rest.lost, 0u);
    EXPECT_EQ(rest.bad, 0u);
    EXPECT_GE(rest.received, 2500u);  // from 1500 on at the latest: nothing unacked lost
    EXPECT_LE(rest.received, 3000u);  // from 1000 on at the earliest: only acks of the last second repeat
}

// The state directory on a filesystem that fills up: the archiver stops with a clear error,
// publishers are held back (the topic's policy), nothing in the archive is damaged, and once there
// is room again everything published is archived, once.
TEST_F(Archive, AFullDiskHoldsPublishersBackWithAClearErrorAndLosesNothing) {
    stop_daemon();
    const std::string state = dir + "/state";
    std::filesystem::create_directories(state);
    if (::mount("tmpfs", state.c_str(), "tmpfs", 0, "size=1m,mode=0700") != 0) GTEST_SKIP() << "cannot mount a small tmpfs: " << strerror(errno);
    struct Unmount {
        std::string where;
        ~Unmount() { ::umount2(where.c_str(), MNT_DETACH); }
    } unmount{state};
    start_daemon();
    TopicConfig config;
    config.capacity = 64 << 10;
    config.on_full = OnFull::archive;
    ArchiveSettings settings;
    settings.file_bytes = 64 << 10;
    make_archived("full", config, settings);
    const pid_t pub = start_pub("pub", {"full", "40000", "1", "--size", "64", "--timeout-ms", "2000", "--stop-on-failure", "1",
                                      "--log", path("pub.log")});
    EXPECT_EQ(wait_exit(pub), 4) << read_file(path("pub.out"));  // refused once the ring filled behind the archiver
    EXPECT_NE(read_file(path("pub.out")).find("timed_out="), std::string::npos) << read_file(path("pub.out"));
    EXPECT_TRUE(eventually([&] { return read_file(path("daemon.log")).find("No space left on device") != std::string::npos; }))
        << read_file(path("daemon.log"));
    auto report = connect()->verify_archive("full");
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->ok()) << report->damage.front();

    // Room again: the restarted archiver catches up with everything that was published.
    ASSERT_EQ(::mount("tmpfs", state.c_str(), "tmpfs", MS_REMOUNT, "size=16m,mode=0700"), 0) << strerror(errno);
    uint64_t published = 0;
    {
        std::istringstream log(read_file(path("pub.log")));
        uint64_t id = 0, seq = 0;
        while (log >> id >> seq) published = id + 1;
    }
    ASSERT_GT(published, 1000u);
    ASSERT_TRUE(eventually([&] { return archived_last_id("full") == published - 1; }, 40s)) << read_file(path("daemon.log"));
    const Archived a = read_archive("full");
    EXPECT_EQ(a.bad, 0u);
    EXPECT_TRUE(exactly(a.ids, published));
}

}  // namespace

namespace {

using namespace shmbus;
using namespace shmbus::test;
using ArchiveCli = BusTest;

std::string rfc3339_now() {
    return rfc3339_utc(uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::system_clock::now().time_since_epoch()).count()));
}

TEST_F(ArchiveCli, CreateInfoAndVerifyAnArchivedTopic) {
    auto r = cli({"topic", "create", "a", "--capacity", "64K", "--archive", "--retain", "1M", "--retain-time", "1h", "--fsync",
                  "always", "--archive-file-size", "8K"});
    ASSERT_EQ(r.code, 0) << r.err;
    std::vector<std::string> args{"pub", "a"};
    for (int i = 0; i < 500; ++i) args.push_back("message " + std::to_string(i));
    ASSERT_EQ(cli(args).code, 0);
    nlohmann::json j;
    ASSERT_TRUE(eventually([&] {
        auto info = cli({"archive", "info", "a", "--json"});
        if (info.code != 0) return false;
        j = nlohmann::json::parse(info.out);
        return j["records"] == 500;
    })) << j.dump();
    EXPECT_EQ(j["topic"], "a");
    EXPECT_EQ(j["first_id"], 0);
    EXPECT_EQ(j["last_id"], 499);
    EXPECT_TRUE(j["first_time"].is_string());
    EXPECT_GT(j["files"].size(), 1u);
    EXPECT_EQ(j["settings"]["fsync"], "always");
    EXPECT_EQ(j["settings"]["retain_bytes"], 1 << 20);
    EXPECT_EQ(j["settings"]["retain_ns"], 3'600'000'000'000);
    EXPECT_EQ(j["settings"]["file_bytes"], 8192);
    uint64_t bytes = 0;
    for (const auto& f : j["files"]) bytes += f["bytes"].get<uint64_t>();
    EXPECT_EQ(j["bytes"], bytes);
    auto text = cli({"archive", "info", "a"});
    EXPECT_EQ(text.code, 0);
    EXPECT_EQ(text.out.rfind("archive of 'a': ", 0), 0u) << text.out;
    EXPECT_NE(text.out.find("ids 0 .. 499"), std::string::npos) << text.out;

    auto ok = cli({"archive", "verify", "a"});
    EXPECT_EQ(ok.code, 0) << ok.out << ok.err;
    EXPECT_NE(ok.out.find("500 records"), std::string::npos) << ok.out;
    EXPECT_NE(ok.out.find("ok"), std::string::npos);

    // The oldest file damaged: named, with exit status 1.
    const std::string first = dir + "/state/topics/a/archive/" + j["files"][0]["name"].get<std::string>();
    {
        std::fstream f(first, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(200);
        f.put('\x7f');
    }
    auto bad = cli({"archive", "verify", "a"});
    EXPECT_EQ(bad.code, 1);
    EXPECT_NE(bad.out.find("damaged: " + j["files"][0]["name"].get<std::string>()), std::string::npos) << bad.out;
    EXPECT_NE(bad.err.find("is damaged"), std::string::npos) << bad.err;
}

TEST_F(ArchiveCli, SubFromATimeOrSince) {
    ASSERT_EQ(cli({"topic", "create", "t", "--archive"}).code, 0);
    ASSERT_EQ(cli({"pub", "t", "a", "b", "c"}).code, 0);
    std::this_thread::sleep_for(20ms);
    const std::string t = rfc3339_now();
    std::this_thread::sleep_for(20ms);
    ASSERT_EQ(cli({"pub", "t", "d", "e"}).code, 0);
    auto r = cli({"sub", "t", "--from", t, "--count", "2"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "d\ne\n");
    r = cli({"sub", "t", "--since", "1h", "--count", "5"});
    EXPECT_EQ(r.out, "a\nb\nc\nd\ne\n");
    r = cli({"sub", "t", "--from", "2026-13-01T00:00:00Z", "--count", "1"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("RFC 3339"), std::string::npos) << r.err;
    EXPECT_EQ(cli({"sub", "t", "--from", "earliest", "--since", "1m", "--count", "1"}).code, 2);
    EXPECT_EQ(cli({"sub", "t", "--since", "soon", "--count", "1"}).code, 2);
    // Without an archive a time works within what the ring holds.
    ASSERT_EQ(cli({"pub", "plain", "x", "y"}).code, 0);
    std::this_thread::sleep_for(20ms);
    const std::string t2 = rfc3339_now();
    ASSERT_EQ(cli({"pub", "plain", "z"}).code, 0);
    EXPECT_EQ(cli({"sub", "plain", "--from", t2, "--count", "1"}).out, "z\n");
}

// Subscriber::seek on an archived topic reaches into the archive: to the earliest, to an id, to a time.
TEST_F(ArchiveCli, SeekReachesIntoTheArchive) {
    auto c = connect();
    TopicConfig config;
    config.capacity = 16 << 10;
    ASSERT_TRUE(c->create_topic("s", config));
    ASSERT_TRUE(c->set_archive("s", {}));
    auto pub = c->publisher("s");
    ASSERT_TRUE(pub);
    std::vector<uint64_t> times;
    for (int i = 0; i < 2000; ++i) ASSERT_EQ(pub->publish("m" + std::to_string(i)), PublishStatus::ok);
    ASSERT_TRUE(eventually([&] { auto info = c->archive_info("s"); return info && info->last_id == 1999u; }));
    SubscribeOptions o;
    o.from = StartFrom::latest;
    auto sub = c->subscribe("s", o);
    ASSERT_TRUE(sub);
    auto first = [&] {
        Message got;
        std::string text;
        const auto r = sub->receive([&](const Message& m) { got = m; text = std::string(m.text()); }, 2s, 1);
        EXPECT_EQ(r.status, ReceiveStatus::ok);
        return std::pair{got.id, text};
    };
    ASSERT_TRUE(sub->seek(StartFrom::earliest));
    EXPECT_EQ(first(), (std::pair<uint64_t, std::string>{0, "m0"}));
    EXPECT_EQ(first(), (std::pair<uint64_t, std::string>{1, "m1"}));
    ASSERT_TRUE(sub->seek(StartFrom::id, 1000));
    EXPECT_EQ(first(), (std::pair<uint64_t, std::string>{1000, "m1000"}));
    uint64_t t1500 = 0;
    {
        SubscribeOptions e;
        e.from = StartFrom::id;
        e.from_id = 1500;
        auto probe = c->subscribe("s", e);
        ASSERT_TRUE(probe);
        (void)probe->receive([&](const Message& m) { t1500 = m.timestamp_ns; }, 2s, 1);
    }
    ASSERT_NE(t1500, 0u);
    ASSERT_TRUE(sub->seek(StartFrom::time, t1500));
    const auto at = first();
    EXPECT_LE(at.first, 1500u);  // the first published at or after that time (neighbours may share it)
    EXPECT_GE(at.first, 1490u);
    // Reading on crosses into the ring: every id once, to the last.
    uint64_t expect = at.first + 1, last = 0;
    bool in_order = true;
    while (last < 1999) {
        const auto r = sub->receive([&](const Message& m) { in_order &= m.id == expect++; last = m.id; }, 2s);
        ASSERT_EQ(r.status, ReceiveStatus::ok);
    }
    EXPECT_TRUE(in_order);
}

// A topic the configuration file archives is archived from the start, with its settings.
TEST_F(ArchiveCli, TheConfigurationArchivesATopic) {
    stop_daemon();
    {
        std::ofstream f(path("bus.toml"));
        f << "[bus]\nstate_dir = \"" << dir << "/configured-state\"\n"
          << "[topics.cfg]\ncapacity = \"64K\"\narchive = true\nretain = \"1M\"\nfsync = \"interval\"\n"
          << "[topics.lag]\non_full = \"archive\"\n";
    }
    start_daemon({"--config", path("bus.toml"), "--state-dir", dir + "/configured-state"});
    auto r = cli({"archive", "info", "cfg", "--json"});
    ASSERT_EQ(r.code, 0) << r.err << read_file(path("daemon.log"));
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["settings"]["retain_bytes"], 1 << 20);
    EXPECT_EQ(j["settings"]["fsync"], "interval");
    EXPECT_EQ(cli({"archive", "info", "lag"}).code, 0);
    EXPECT_TRUE(std::filesystem::exists(dir + "/configured-state/topics/cfg/topic.toml"));
    ASSERT_EQ(cli({"pub", "cfg", "one", "two"}).code, 0);
    EXPECT_TRUE(eventually([&] { return cli({"archive", "verify", "cfg"}).out.find("2 records") != std::string::npos; }));
}

TEST_F(ArchiveCli, MistakesAreClearErrors) {
    auto r = cli({"topic", "create", "x", "--retain", "1G"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("need --archive"), std::string::npos) << r.err;
    EXPECT_EQ(cli({"topic", "create", "x", "--archive", "--fsync", "sometimes"}).code, 2);
    ASSERT_EQ(cli({"topic", "create", "plain"}).code, 0);
    r = cli({"archive", "info", "plain"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("is not archived"), std::string::npos) << r.err;
    EXPECT_EQ(cli({"archive", "verify", "nosuch"}).code, 1);
    // The archiver's cursor is not a name a client may take, through the CLI or the API.
    EXPECT_EQ(cli({"sub", "plain", "--durable", "$archiver", "--count", "0"}).code, 2);
    ASSERT_EQ(cli({"topic", "create", "arch", "--on-full", "archive"}).code, 0);
    SubscribeOptions o;
    o.durable_name = "$archiver";
    auto sub = connect()->subscribe("arch", o);
    ASSERT_FALSE(sub);
    EXPECT_EQ(sub.error().code, Errc::permission_denied) << sub.error().message;
    auto info = cli({"topic", "info", "arch"});
    EXPECT_NE(info.out.find("on-full archive, archived"), std::string::npos) << info.out;
    EXPECT_EQ(nlohmann::json::parse(cli({"topic", "info", "arch", "--json"}).out)["archived"], true);
    EXPECT_EQ(nlohmann::json::parse(cli({"topic", "info", "plain", "--json"}).out)["archived"], false);
    // Deleting an archived topic deletes its archive.
    EXPECT_TRUE(std::filesystem::exists(dir + "/state/topics/arch/archive"));
    ASSERT_EQ(cli({"topic", "delete", "arch"}).code, 0);
    EXPECT_FALSE(std::filesystem::exists(dir + "/state/topics/arch"));
}

}  // namespace
