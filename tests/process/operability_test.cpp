// What a new user meets first: the README's sequence typed by hand, a CLI started before its
// shmbusd, and the commands that show and remove the subscriptions holding a topic back.
#include <sys/stat.h>
#include <sys/statvfs.h>

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
