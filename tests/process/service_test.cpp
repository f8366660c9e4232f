// shmbusd as a service: readiness, reload and stopping reported to a service manager through
// $NOTIFY_SOCKET (systemd's Type=notify), played here by a datagram socket of the test. systemd is
// not PID 1 where these tests run, so the units themselves are checked for what they must say.
#include <sys/socket.h>
#include <sys/un.h>

#include "bus_fixture.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

class Service : public BusTest {
protected:
    void SetUp() override {
        make_dir();
        notify_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string p = path("notify.sock");
        std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
        ASSERT_EQ(bind(notify_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        const timeval limit{10, 0};
        setsockopt(notify_, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        start_daemon({}, {"NOTIFY_SOCKET=" + p});
    }
    void TearDown() override {
        close(notify_);
        BusTest::TearDown();
    }
    // The next notification, or empty after 10 s.
    std::string next_notification() {
        char buf[512];
        const ssize_t n = recv(notify_, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, size_t(n)) : std::string();
    }
    int notify_ = -1;
};

TEST_F(Service, ReadinessReloadAndStoppingAreReported) {
    const std::string ready = next_notification();
    EXPECT_NE(ready.find("READY=1"), std::string::npos) << ready;
    EXPECT_NE(ready.find("MAINPID=" + std::to_string(daemon)), std::string::npos) << ready;
    EXPECT_NE(ready.find("STATUS=serving " + dir), std::string::npos) << ready;
    // Ready means ready: a client connects at once, without waiting.
    ClientOptions o;
    o.dir = dir;
    o.connect_wait = std::chrono::milliseconds(0);
    EXPECT_TRUE(Client::connect(o).has_value());
    kill(daemon, SIGHUP);
    EXPECT_EQ(next_notification(), "RELOADING=1");
    EXPECT_EQ(next_notification(), "READY=1");
    kill(daemon, SIGTERM);
    EXPECT_EQ(next_notification(), "STOPPING=1");
    EXPECT_EQ(wait_exit(daemon, 10s), 0);
    daemon = -1;
}

// What the units must say for the bus to survive the service's own life cycle: readiness by
// notification, a preserved runtime directory (bus.id names the segments), no IPC cleanup and no
// private /dev (the segments live in /dev/shm), reload by SIGHUP.
TEST_F(Service, TheUnitsKeepTheBusAcrossRestarts) {
    for (const char* unit : {"shmbusd.service", "shmbusd@.service"}) {
        const std::string text = read_file(std::string(SHMBUS_SOURCE_DIR) + "/packaging/systemd/" + unit);
        ASSERT_FALSE(text.empty()) << unit;
        for (const char* line : {"Type=notify", "RuntimeDirectoryPreserve=yes", "RemoveIPC=no", "PrivateDevices=no",
                                 "ExecReload=/bin/kill -HUP $MAINPID", "ReadWritePaths=", "/dev/shm", "NoNewPrivileges=yes"})
            EXPECT_NE(text.find(line), std::string::npos) << unit << " lacks " << line;
    }
    EXPECT_EQ(next_notification().find("READY=1"), 0u);
}

// The unit's command line, as systemd would run it ($$ is its escape for $), starts a bus that
// reports readiness, with the configuration file and without it.
TEST_F(Service, TheUnitsCommandLineStartsABusWithOrWithoutAConfiguration) {
    EXPECT_EQ(next_notification().find("READY=1"), 0u);
    kill(daemon, SIGTERM);
    EXPECT_EQ(next_notification(), "STOPPING=1");
    EXPECT_EQ(wait_exit(daemon, 10s), 0);
    daemon = -1;
    const std::string unit = read_file(std::string(SHMBUS_SOURCE_DIR) + "/packaging/systemd/shmbusd.service");
    const auto at = unit.find("ExecStart=/bin/sh -c '");
    ASSERT_NE(at, std::string::npos);
    std::string script = unit.substr(at + 22, unit.find("'\n", at) - at - 22);
    auto replace_all = [&](const std::string& from, const std::string& to) {
        for (auto p = script.find(from); p != std::string::npos; p = script.find(from, p + to.size())) script.replace(p, from.size(), to);
    };
    replace_all("$$", "$");
    replace_all("/usr/bin/shmbusd", SHMBUSD_PATH);
    replace_all("/etc/shmbus/shmbusd.toml", path("etc.toml"));
    replace_all("/run/shmbus", path("run"));
    for (const bool with_config : {false, true}) {
        if (with_config) {
            std::ofstream f(path("etc.toml"));
            f << "[bus]\nlog_level = \"debug\"\n";
        }
        const pid_t d = spawn({"/bin/sh", "-c", script}, SpawnOptions(path("unit.log"), path("unit.log"), "", std::nullopt,
                                                                      {"NOTIFY_SOCKET=" + path("notify.sock")}));
        const std::string ready = next_notification();
        EXPECT_NE(ready.find("READY=1"), std::string::npos) << script << read_file(path("unit.log"));
        EXPECT_NE(ready.find("MAINPID=" + std::to_string(d)), std::string::npos) << ready;  // exec: shmbusd is the main process
        kill(d, SIGTERM);
        EXPECT_EQ(next_notification(), "STOPPING=1");
        EXPECT_EQ(wait_exit(d, 10s), 0);
    }
    EXPECT_NE(read_file(path("unit.log")).find("[debug]"), std::string::npos);  // the second run read the file
}

// The configuration shipped with the package parses, so the service starts with it as it is.
TEST_F(Service, TheShippedConfigurationStartsABus) {
    EXPECT_EQ(next_notification().find("READY=1"), 0u);
    const auto r = run({SHMBUSD_PATH, "--dir", path("shipped"), "--config", std::string(SHMBUS_SOURCE_DIR) + "/packaging/shmbusd.toml",
                        "--version"});
    EXPECT_EQ(r.code, 0);
    const pid_t d = spawn({SHMBUSD_PATH, "--dir", path("shipped"), "--config",
                           std::string(SHMBUS_SOURCE_DIR) + "/packaging/shmbusd.toml"},
                          {path("shipped.log"), path("shipped.log")});
    ClientOptions o;
    o.dir = path("shipped");
    EXPECT_TRUE(eventually([&] { return Client::connect(o).has_value(); })) << read_file(path("shipped.log"));
    kill(d, SIGTERM);
    EXPECT_EQ(wait_exit(d, 10s), 0);
}

// `log` in [bus] sends the log to a file instead of standard output.
TEST_F(Service, TheLogGoesWhereTheConfigurationSays) {
    EXPECT_EQ(next_notification().find("READY=1"), 0u);
    {
        std::ofstream f(path("file-log.toml"));
        f << "[bus]\nlog = \"" << path("shmbusd-file.log") << "\"\n";
    }
    const pid_t d = spawn({SHMBUSD_PATH, "--dir", path("filelog"), "--config", path("file-log.toml")},
                          {path("filelog.out"), path("filelog.out")});
    EXPECT_TRUE(eventually([&] { return read_file(path("shmbusd-file.log")).find("shmbusd ready") != std::string::npos; }));
    kill(d, SIGTERM);
    EXPECT_EQ(wait_exit(d, 10s), 0);
    EXPECT_EQ(read_file(path("filelog.out")).find("shmbusd ready"), std::string::npos);
}

// Topic settings from the configuration: [topics.NAME] are created at start and win whoever
// creates them; [defaults] apply to topics created without settings of their own, and never
// override a client's explicit ones.
TEST_F(Service, TopicSettingsComeFromTheConfiguration) {
    EXPECT_EQ(next_notification().find("READY=1"), 0u);
    {
        std::ofstream f(path("topics.toml"));
        f << "[defaults]\ncapacity = \"64K\"\non_full = \"fail\"\n"
             "[topics.prices]\ncapacity = \"1M\"\non_full = \"overwrite\"\nexpire_detached = \"1h\"\n";
    }
    const pid_t d = spawn({SHMBUSD_PATH, "--dir", path("topics"), "--config", path("topics.toml")}, {path("topics.log"), path("topics.log")});
    ClientOptions o;
    o.dir = path("topics");
    o.connect_wait = 10s;
    auto c = Client::connect(o);
    ASSERT_TRUE(c.has_value()) << read_file(path("topics.log"));
    auto prices = c->topic_stats("prices");  // created at start
    ASSERT_TRUE(prices.has_value()) << read_file(path("topics.log"));
    EXPECT_EQ(prices->config.capacity, 1u << 20);
    EXPECT_EQ(prices->config.on_full, OnFull::overwrite);
    EXPECT_EQ(prices->config.expire_detached, std::chrono::hours(1));
    auto pub = c->publisher("orders");  // created on first use, without settings: [defaults]
    ASSERT_TRUE(pub.has_value());
    auto orders = c->topic_stats("orders");
    EXPECT_EQ(orders->config.capacity, 64u << 10);
    EXPECT_EQ(orders->config.on_full, OnFull::fail);
    TopicConfig own;
    own.capacity = 8192;
    ASSERT_TRUE(c->create_topic("mine", own).has_value());  // explicit settings stay
    EXPECT_EQ(c->topic_stats("mine")->config.capacity, 8192u);
    EXPECT_EQ(c->topic_stats("mine")->config.on_full, OnFull::block);
    for (const char* t : {"prices", "orders", "mine"}) (void)c->delete_topic(t);
    kill(d, SIGTERM);
    EXPECT_EQ(wait_exit(d, 10s), 0);
}

}  // namespace
}  // namespace shmbus::test
