// What another user (or a damaged disk) can leave in the places shmbusd reads at start: the state
// directory, archive directories, the configuration file, and a lower descriptor limit. Each test
// plays one attack or accident and checks that nothing is followed, hangs, crashes or is deleted.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "bus_fixture.h"

namespace shmbus::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
constexpr uid_t kNobody = 65534;

class HostileState : public BusTest {
protected:
    void SetUp() override { make_dir(); }
    std::string state() const { return dir + "/state"; }
    // An archived topic holding `count` messages, then shmbusd stopped cleanly.
    void archived_then_stopped(const std::string& topic, int count) {
        start_daemon();
        auto c = connect();
        ASSERT_TRUE(c);
        ASSERT_TRUE(c->create_topic(topic, {}));
        ASSERT_TRUE(c->set_archive(topic, {}));
        auto pub = c->publisher(topic);
        ASSERT_TRUE(pub);
        for (int i = 0; i < count; ++i) ASSERT_EQ(pub->publish("m" + std::to_string(i)), PublishStatus::ok);
        ASSERT_TRUE(eventually([&] {
            auto info = c->archive_info(topic);
            return info && info->records == uint64_t(count);
        }));
        stop_daemon();
    }
};

// A state directory another user made first (the fallback in /tmp could be anyone's) is refused
// with the reason, and nothing planted in it is acted on.
TEST_F(HostileState, AStateDirectoryOfAnotherUserIsRefusedAndNothingInItIsUsed) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: hands the directory to uid 65534";
    fs::create_directories(state() + "/topics/backdoor");
    {
        std::ofstream f(state() + "/topics/backdoor/topic.toml");
        f << "[topic]\ncapacity = 1073741824\nbus_dir = \"" << dir << "\"\n[archive]\nfile_bytes = 1048576\n";
    }
    for (const auto& p : {state(), state() + "/topics", state() + "/topics/backdoor", state() + "/topics/backdoor/topic.toml"})
        ASSERT_EQ(::chown(p.c_str(), kNobody, kNobody), 0);
    start_daemon();
    EXPECT_TRUE(eventually([&] { return read_file(path("daemon.log")).find("belongs to uid 65534") != std::string::npos; }))
        << read_file(path("daemon.log"));
    auto c = connect();
    ASSERT_TRUE(c);
    EXPECT_TRUE(c->list_topics()->empty()) << "a planted topic.toml made a topic";
    const auto r = cli({"topic", "create", "t", "--archive"});
    EXPECT_NE(r.code, 0);
    EXPECT_NE((r.out + r.err).find("belongs to uid 65534"), std::string::npos) << r.out << r.err;
}

// Links planted in the state directory (the index, the archiver's lock, the cursors' temporary
// file) are never followed: the file they point at is left as it was.
TEST_F(HostileState, LinksInTheStateDirectoryAreNeverFollowed) {
    archived_then_stopped("t", 50);
    const std::string victim = path("victim.txt");
    {
        std::ofstream f(victim);
        f << "precious\n";
    }
    const std::string topic_dir = state() + "/topics/t";
    std::string idx;
    for (const auto& e : fs::directory_iterator(topic_dir + "/archive"))
        if (e.path().extension() == ".idx") idx = e.path().string();
    ASSERT_FALSE(idx.empty());
    for (const std::string& link : {idx, topic_dir + "/archiver.lock", topic_dir + "/cursors.toml.tmp"}) {
        fs::remove(link);
        fs::create_symlink(victim, link);
    }
    start_daemon();
    auto c = connect();
    ASSERT_TRUE(c);
    auto pub = c->publisher("t");
    ASSERT_TRUE(pub);
    ASSERT_EQ(pub->publish("after"), PublishStatus::ok);
    SubscribeOptions durable;
    durable.durable_name = "d";  // gives persist_cursors something to write
    ASSERT_TRUE(c->subscribe("t", durable));
    std::this_thread::sleep_for(1500ms);  // a persist (every second) and the archiver's start
    EXPECT_EQ(read_file(victim), "precious\n");
    EXPECT_NE(read_file(path("daemon.log")).find("is a symbolic link"), std::string::npos) << read_file(path("daemon.log"));
}

// A FIFO where an archive file belongs neither hangs shmbusd's start nor `archive verify`.
TEST_F(HostileState, AFifoInAnArchiveDirectoryHangsNothing) {
    archived_then_stopped("t", 20);
    const std::string fifo = state() + "/topics/t/archive/00000000000000099999.log";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    start_daemon();  // fails the test if shmbusd never answers
    const auto info = cli({"archive", "info", "t"});
    EXPECT_NE(info.code, -1) << "archive info hung";
    const auto verify = cli({"archive", "verify", "t"});
    EXPECT_NE(verify.code, -1) << "archive verify hung";
    EXPECT_NE(verify.code, 0);
    EXPECT_NE((verify.out + verify.err).find("is a FIFO"), std::string::npos) << verify.out << verify.err;
}

// A configuration that would exhaust the parser's stack (50,000 dotted keys) is refused with a
// reason at start, and a running shmbusd keeps its rules when SIGHUP finds it.
TEST_F(HostileState, AConfigurationDeepEnoughToOverflowTheParserIsRefused) {
    const std::string file = path("deep.toml");
    {
        std::ofstream f(file);
        f << "[";
        for (int i = 0; i < 50'000; ++i) f << (i ? ".k" : "k");
        f << "]\nx = 1\n";
    }
    const auto r = run({SHMBUSD_PATH, "--dir", path("bus2"), "--state-dir", path("state2"), "--config", file}, "", 20s);
    EXPECT_EQ(r.code, 2) << r.out << r.err;
    EXPECT_NE((r.out + r.err).find("dotted parts"), std::string::npos) << r.out << r.err;

    const std::string good = path("good.toml");
    {
        std::ofstream f(good);
        f << "[bus]\nlog_level = \"info\"\n";
    }
    start_daemon({"--config", good});
    fs::copy_file(file, good, fs::copy_options::overwrite_existing);
    ::kill(daemon, SIGHUP);
    EXPECT_TRUE(eventually([&] { return read_file(path("daemon.log")).find("configuration not reloaded") != std::string::npos; }));
    EXPECT_TRUE(connect().has_value()) << "shmbusd died on SIGHUP";
}

// Restarted under a descriptor limit too low for its topics, shmbusd stops with the reason and
// removes nothing; restarted with enough, it has every topic back with its messages.
TEST_F(HostileState, ARestartUnderALowerDescriptorLimitDeletesNothing) {
    if (!fs::exists("/usr/bin/prlimit")) GTEST_SKIP() << "needs prlimit (util-linux)";
#if defined(__SANITIZE_ADDRESS__)
    // UBSan's vptr check probes memory through a pipe: out of descriptors, it reports every
    // virtual call as an invalid object, so the sanitized shmbusd cannot run at the limit.
    GTEST_SKIP() << "a sanitized shmbusd cannot run out of descriptors (UBSan needs one per check)";
#endif
    start_daemon();
    constexpr int kTopics = 200;
    {
        auto c = connect();
        ASSERT_TRUE(c);
        TopicConfig small;
        small.capacity = 4096;
        for (int i = 0; i < kTopics; ++i) ASSERT_TRUE(c->create_topic("t" + std::to_string(i), small)) << i;
        auto pub = c->publisher("t199");
        ASSERT_TRUE(pub);
        ASSERT_EQ(pub->publish("kept"), PublishStatus::ok);
    }
    stop_daemon();
    const auto low = run({"/usr/bin/prlimit", "--nofile=128:128", SHMBUSD_PATH, "--dir", dir, "--state-dir", state()}, "", 30s);
    EXPECT_EQ(low.code, 2) << low.out << low.err;
    EXPECT_NE((low.out + low.err).find("nothing was removed"), std::string::npos) << low.out << low.err;
    EXPECT_EQ((low.out + low.err).find("removed invalid segment"), std::string::npos) << low.out << low.err;
    start_daemon();
    auto c = connect();
    ASSERT_TRUE(c);
    EXPECT_EQ(c->list_topics()->size(), size_t(kTopics));
    SubscribeOptions from_start;
    from_start.from = StartFrom::earliest;
    auto sub = c->subscribe("t199", from_start);
    ASSERT_TRUE(sub);
    std::string got;
    (void)sub->receive([&](const Message& m) { got = std::string(m.text()); }, 2s);
    EXPECT_EQ(got, "kept");
}

}  // namespace
}  // namespace shmbus::test
