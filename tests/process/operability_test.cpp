// What a new user meets first: the README's sequence typed by hand, a CLI started before its
// shmbusd, and the commands that show and remove the subscriptions holding a topic back.
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <csignal>
#include <filesystem>

#include "bus_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

class Operability : public BusTest {};

// `shmbusd &` followed at once by clients: each waits (2 s by default) for the starting shmbusd
// instead of failing, and `sub --from earliest` gets both messages whichever of `sub` and `pub`
// reaches the bus first.
TEST_F(Operability, TheReadmeSequenceTypedByHandIsReliable) {
    stop_daemon();
    const pid_t sub = spawn({SHMBUS_CLI_PATH, "--dir", dir, "sub", "prices", "--count", "2", "--from", "earliest"},
                            {path("sub.out"), path("sub.err")});
    const pid_t pub = spawn({SHMBUS_CLI_PATH, "--dir", dir, "pub", "prices", "EURUSD 1.0841", "EURUSD 1.0843"},
                            {path("pub.out"), path("pub.err")});
    std::this_thread::sleep_for(200ms);  // both are waiting for a shmbusd now
    daemon = spawn({SHMBUSD_PATH, "--dir", dir}, {path("daemon.log"), path("daemon.log.err")});
    EXPECT_EQ(wait_exit(pub, 10s), 0) << read_file(path("pub.err"));
    EXPECT_EQ(wait_exit(sub, 10s), 0) << read_file(path("sub.err"));
    EXPECT_EQ(read_file(path("sub.out")), "EURUSD 1.0841\nEURUSD 1.0843\n");
}

// The README's code example right after `shmbusd &`: Client::connect() with its default options
// waits for the starting shmbusd as the CLI does, in every one of several tries.
TEST_F(Operability, AProgramStartedRightAfterShmbusdConnectsWithTheDefaults) {
    stop_daemon();
    for (int i = 0; i < 5; ++i) {
        daemon = spawn({SHMBUSD_PATH, "--dir", dir}, {path("daemon.log"), path("daemon.log.err")});
        ClientOptions o;  // the defaults, as the README's example has them
        o.dir = dir;
        auto c = Client::connect(o);
        ASSERT_TRUE(c.has_value()) << "try " << i << ": " << c.error().message;
        c = make_error(Errc::disconnected, "closed");
        stop_daemon();
    }
    start_daemon();
}

// `topic create --archive` that cannot archive (another shmbusd holds the state directory) fails
// with a one-line reason and leaves no topic behind.
TEST_F(Operability, AFailedArchivedCreateLeavesNothing) {
    ASSERT_EQ(cli({"topic", "create", "first", "--archive"}).code, 0);  // this bus takes dir/state
    const std::string other = path("other-bus");
    const pid_t second = spawn({SHMBUSD_PATH, "--dir", other, "--state-dir", dir + "/state"},
                               {path("other.log"), path("other.err")});
    const auto r = run({SHMBUS_CLI_PATH, "--dir", other, "--wait", "5s", "topic", "create", "t", "--archive"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("is in use by another shmbusd (pid "), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    const auto list = run({SHMBUS_CLI_PATH, "--dir", other, "topic", "list", "--json"});
    EXPECT_EQ(list.code, 0) << list.err;
    EXPECT_EQ(list.out.find("\"t\""), std::string::npos) << "the failed create left a topic: " << list.out;
    ::kill(second, SIGTERM);
    EXPECT_EQ(wait_exit(second, 10s), 0);
}

// `sub --from earliest` on a ring that has lapped says at once where it starts and how many are
// gone, instead of a --count that waits without a word.
TEST_F(Operability, FromEarliestOnALappedRingSaysWhereItStarts) {
    ASSERT_EQ(cli({"topic", "create", "small", "--capacity", "4KiB"}).code, 0);
    {
        auto c = connect();
        ASSERT_TRUE(c);
        auto pub = c->publisher("small");
        ASSERT_TRUE(pub);
        for (int i = 0; i < 500; ++i) ASSERT_EQ(pub->publish("message " + std::to_string(i)), PublishStatus::ok);
    }
    const auto r = run({SHMBUS_CLI_PATH, "--dir", dir, "sub", "small", "--from", "earliest", "--count", "500"}, "", 1500ms);
    EXPECT_EQ(r.code, -1) << "it waits for new messages";
    EXPECT_NE(r.err.find("shmbus: starting at id "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("message(s) before it (--count waits for new ones)"), std::string::npos) << r.err;
    const auto whole = run({SHMBUS_CLI_PATH, "--dir", dir, "sub", "never", "--from", "earliest", "--count", "1"}, "", 500ms);
    EXPECT_EQ(whole.err.find("starting at id"), std::string::npos) << "nothing is gone from a new topic: " << whole.err;
}

TEST_F(Operability, WithoutADaemonTheCliStillSaysSoAfterItsWait) {
    stop_daemon();
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = cli({"--wait", "300ms", "topic", "list"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("shmbusd is not running"), std::string::npos) << r.err;
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 300ms);
    EXPECT_EQ(cli({"--wait", "soon", "topic", "list"}).code, 2);
    start_daemon();
}

// A durable subscription nobody reads holds a block topic's publishers: the CLI shows it and
// removes it.
TEST_F(Operability, SubscriptionsAreListedAndADetachedOneIsDeleted) {
    ASSERT_EQ(cli({"sub", "orders", "--durable", "audit", "--count", "0"}).code, 0);
    ASSERT_EQ(cli({"pub", "orders", "o1", "o2"}).code, 0);
    auto listed = cli({"subscription", "list", "orders"});
    EXPECT_EQ(listed.code, 0);
    EXPECT_NE(listed.out.find("durable"), std::string::npos) << listed.out;
    EXPECT_NE(listed.out.find("audit"), std::string::npos) << listed.out;
    EXPECT_NE(listed.out.find("detached"), std::string::npos) << listed.out;
    auto json = cli({"subscription", "list", "orders", "--json"});
    EXPECT_EQ(json.code, 0);
    EXPECT_NE(json.out.find("\"name\": \"audit\""), std::string::npos) << json.out;
    EXPECT_NE(json.out.find("\"lag\": 2"), std::string::npos) << json.out;
    EXPECT_EQ(cli({"subscription", "delete", "orders", "audit"}).code, 0);
    auto after = cli({"subscription", "list", "orders", "--json"});
    EXPECT_EQ(after.out, "[]\n");
    auto missing = cli({"subscription", "delete", "orders", "audit"});
    EXPECT_EQ(missing.code, 1);
    EXPECT_NE(missing.err.find("no durable subscription 'audit'"), std::string::npos) << missing.err;
}

// `topic set` changes what a live topic may change, under its clients: a block topic becomes
// fail (a full publish is refused at once), a detached cursor's expiry takes the new time; what
// cannot change live is refused with the reason.
TEST_F(Operability, TopicSetChangesWhatALiveTopicMayChange) {
    ASSERT_EQ(cli({"topic", "create", "jobs", "--capacity", "4K"}).code, 0);
    ASSERT_EQ(cli({"sub", "jobs", "--durable", "slow", "--count", "0"}).code, 0);  // detached: holds the ring
    auto c = connect();
    PublisherOptions quick;
    quick.block_timeout = std::chrono::milliseconds(100);
    auto pub = c->publisher("jobs", quick);
    ASSERT_TRUE(pub.has_value());
    const std::string job(200, 'j');
    PublishStatus st = PublishStatus::ok;
    while ((st = pub->publish(job)) == PublishStatus::ok) {}
    EXPECT_EQ(st, PublishStatus::timed_out);  // block: waited, then gave up
    ASSERT_EQ(cli({"topic", "set", "jobs", "--on-full", "fail", "--expire-detached", "1h"}).code, 0);
    EXPECT_EQ(pub->publish(job), PublishStatus::would_block);  // fail: refused at once, same publisher
    EXPECT_EQ(pub->on_full(), OnFull::fail);
    auto info = c->topic_stats("jobs");
    EXPECT_EQ(info->config.on_full, OnFull::fail);
    EXPECT_EQ(info->config.expire_detached, std::chrono::hours(1));
    ASSERT_TRUE(info->subscriptions.at(0).expires_in.has_value());
    EXPECT_GT(*info->subscriptions.at(0).expires_in, std::chrono::minutes(59));
    // Expiry applies at once: a short one releases the detached cursor, and the ring frees up.
    ASSERT_EQ(cli({"topic", "set", "jobs", "--expire-detached", "1s"}).code, 0);
    EXPECT_TRUE(eventually([&] { return c->topic_stats("jobs")->subscriptions.empty(); }, 10s));
    EXPECT_EQ(pub->publish(job), PublishStatus::ok);
    // What cannot change live says why.
    auto overwrite = cli({"topic", "set", "jobs", "--on-full", "overwrite"});
    EXPECT_EQ(overwrite.code, 2);  // not a choice here
    auto unblock = cli({"topic", "set", "jobs", "--unblock-timeout", "500ms"});
    EXPECT_EQ(unblock.code, 1);
    EXPECT_NE(unblock.err.find("only while no publisher is registered (now: pid " + std::to_string(getpid())), std::string::npos)
        << unblock.err;
    EXPECT_EQ(cli({"topic", "set", "jobs"}).code, 2);
    pub = make_error(Errc::disconnected, "closed");
    EXPECT_TRUE(eventually([&] { return cli({"topic", "set", "jobs", "--unblock-timeout", "500ms"}).code == 0; }));
    EXPECT_EQ(c->topic_stats("jobs")->config.unblock_timeout, std::chrono::milliseconds(500));
    EXPECT_EQ(cli({"topic", "set", "jobs", "--unblock-timeout", "750ms"}).code, 0);  // between non-zero values: any time
}

// A large topic is created within a request's timeout and read at once: shmbusd reserves its
// pages (posix_fallocate) without writing them, and nobody but its publishers and subscribers
// populates the whole mapping.
TEST_F(Operability, ALargeTopicIsCreatedAndShownWithinTheRequestTimeout) {
    struct statvfs fs{};
    if (statvfs("/dev/shm", &fs) != 0 || uint64_t(fs.f_bavail) * fs.f_frsize < (4ull << 30)) GTEST_SKIP() << "needs 4 GiB free in /dev/shm";
    const auto created = cli({"topic", "create", "big", "--capacity", "2G"});
    EXPECT_EQ(created.code, 0) << created.err;
    const auto info = cli({"topic", "info", "big"});
    EXPECT_EQ(info.code, 0) << info.err;
    EXPECT_NE(info.out.find("capacity 2147483648 B"), std::string::npos) << info.out;
    EXPECT_EQ(cli({"topic", "delete", "big"}).code, 0);
}

// The /dev/shm file of `topic` exists (shmbusd creates it empty, then reserves its pages).
bool shm_file_exists_for(const std::string& topic) {
    for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
        const std::string n = e.path().filename().string();
        if (n.rfind("shmbus-", 0) == 0 && n.size() > topic.size() && n.compare(n.size() - topic.size() - 1, std::string::npos, "-" + topic) == 0)
            return true;
    }
    return false;
}

// Creating a large topic does not stop shmbusd from serving everyone else: its pages are reserved
// on a worker thread. Another client's request is answered while the topic's file exists but the
// topic does not yet (a shmbusd busy reserving would answer only once it is listed); a client
// subscribing to the same topic meanwhile waits for it and gets it; the creator gets its answer.
TEST_F(Operability, CreatingALargeTopicDoesNotStallOtherClients) {
    struct statvfs fs{};
    if (statvfs("/dev/shm", &fs) != 0 || uint64_t(fs.f_bavail) * fs.f_frsize < (4ull << 30)) GTEST_SKIP() << "needs 4 GiB free in /dev/shm";
    const std::string topic = "stall-probe-" + std::to_string(getpid());
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    const pid_t creator = spawn({SHMBUS_CLI_PATH, "--dir", dir, "topic", "create", topic, "--capacity", "2G"},
                                {path("create.out"), path("create.err")});
    bool answered_meanwhile = false;
    pid_t subscriber = -1;
    const bool created = eventually([&] {
        if (!shm_file_exists_for(topic)) return false;
        if (subscriber < 0)
            subscriber = spawn({SHMBUS_CLI_PATH, "--dir", dir, "sub", topic, "--count", "0"}, {path("sub.out"), path("sub.err")});
        auto names = c->list_topics();
        if (!names) return false;
        const bool listed = std::find(names->begin(), names->end(), topic) != names->end();
        answered_meanwhile |= !listed;
        return listed;
    }, std::chrono::seconds(30));
    ASSERT_TRUE(created);
    EXPECT_TRUE(answered_meanwhile) << "no request was answered while the topic was being created";
    EXPECT_EQ(wait_exit(creator), 0) << read_file(path("create.err"));
    ASSERT_GT(subscriber, 0);
    EXPECT_EQ(wait_exit(subscriber), 0) << read_file(path("sub.err"));
    const auto info = cli({"topic", "info", topic});
    EXPECT_NE(info.out.find("capacity 2147483648 B"), std::string::npos) << info.out;
    EXPECT_EQ(cli({"topic", "delete", topic}).code, 0);
}

// A creator that leaves before its large topic is ready does not leave a half-made topic: shmbusd
// finishes it (as any request that took effect), and it can be used and deleted.
TEST_F(Operability, ALargeTopicWhoseCreatorLeftIsFinished) {
    struct statvfs fs{};
    if (statvfs("/dev/shm", &fs) != 0 || uint64_t(fs.f_bavail) * fs.f_frsize < (4ull << 30)) GTEST_SKIP() << "needs 4 GiB free in /dev/shm";
    const std::string topic = "left-probe-" + std::to_string(getpid());
    const pid_t creator = spawn({SHMBUS_CLI_PATH, "--dir", dir, "topic", "create", topic, "--capacity", "2G"},
                                {path("create.out"), path("create.err")});
    ASSERT_TRUE(eventually([&] { return shm_file_exists_for(topic); }, std::chrono::seconds(30)));
    kill(creator, SIGKILL);
    EXPECT_EQ(wait_exit(creator), 128 + SIGKILL);
    EXPECT_TRUE(eventually([&] { return cli({"topic", "info", topic}).code == 0; }, std::chrono::seconds(30)));
    EXPECT_EQ(cli({"topic", "delete", topic}).code, 0);
    EXPECT_FALSE(shm_file_exists_for(topic));
}

// A topic in use is not deleted by accident; forced, its clients are told: a subscriber gets
// what was published, then `deleted`; a publisher's next publish fails with `deleted`.
TEST_F(Operability, DeletingATopicInUseNeedsForceAndItsClientsAreTold) {
    auto c = connect();
    auto pub = c->publisher("orders");
    ASSERT_TRUE(pub.has_value());
    const pid_t sub = spawn({SHMBUS_CLI_PATH, "--dir", dir, "sub", "orders", "--from", "earliest"}, {path("sub.out"), path("sub.err")});
    ASSERT_TRUE(eventually([&] { return c->topic_stats("orders")->subscriptions.size() == 1; }));
    ASSERT_EQ(pub->publish("last words"), PublishStatus::ok);
    const auto refused = cli({"topic", "delete", "orders"});
    EXPECT_EQ(refused.code, 1);
    EXPECT_NE(refused.err.find("topic 'orders' is in use by pids " + std::to_string(getpid())), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;
    EXPECT_TRUE(c->topic_stats("orders").has_value());  // still there
    EXPECT_EQ(cli({"topic", "delete", "orders", "--force"}).code, 0);
    EXPECT_EQ(wait_exit(sub, 10s), 1);
    EXPECT_EQ(read_file(path("sub.out")), "last words\n");
    EXPECT_NE(read_file(path("sub.err")).find("topic 'orders' was deleted"), std::string::npos) << read_file(path("sub.err"));
    EXPECT_EQ(pub->publish("too late"), PublishStatus::deleted);
    EXPECT_FALSE(c->topic_stats("orders").has_value());
    EXPECT_NE(read_file(path("daemon.log")).find("deleted topic 'orders' under pid"), std::string::npos);
}

}  // namespace
}  // namespace shmbus::test
