// Bad input from every side: each gets a clear error and damages nothing.
#include <poll.h>
#include <thread>
#include <sstream>
#include <memory>
#include <algorithm>
#include <fstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "bus_fixture.h"
#include "raw_socket.h"
#include "control/protocol.h"

namespace shmbus::test {
namespace {

using BadInput = BusTest;

constexpr uid_t kNobody = 65534;

// /dev/shm/<name> of this bus's topic `topic`.
std::string segment_file(const BusTest& t, const std::string& bus_id, const std::string& topic) {
    (void)t;
    return "/dev/shm/shmbus-" + bus_id + "-" + topic;
}

TEST_F(BadInput, AnOversizeMessageIsRefusedAndNothingIsPublished) {
    ASSERT_EQ(cli({"topic", "create", "small", "--capacity", "64K", "--max-message", "100"}).code, 0);
    auto r = cli({"pub", "small", std::string(101, 'x')});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("exceeds the topic's max message of 100 bytes"), std::string::npos) << r.err;
    EXPECT_EQ(cli({"pub", "small", std::string(100, 'y')}).code, 0);
    auto c = connect();
    EXPECT_EQ(c->topic_stats("small")->published, 1u);
    auto pub = c->publisher("small");
    EXPECT_EQ(pub->publish(std::string(101, 'x')), PublishStatus::too_large);
}

// A bad name is a usage error (exit 2), found before anything talks to shmbusd: it is reported
// even with no shmbusd running.
TEST_F(BadInput, AnInvalidTopicNameIsAClearError) {
    for (const char* name : {"a/b", "..", ".hidden", "has space", "x*"}) {
        auto r = cli({"pub", name, "m"});
        EXPECT_EQ(r.code, 2) << name;
        EXPECT_NE(r.err.find("invalid topic name"), std::string::npos) << r.err;
    }
    for (const auto& args : std::vector<std::vector<std::string>>{{"sub", "ok", "--durable", "bad name"},
                                                                  {"subscription", "delete", "ok", "bad/name"},
                                                                  {"topic", "info", "a b"}}) {
        auto r = cli(args);
        EXPECT_EQ(r.code, 2) << args[0];
        EXPECT_NE(r.err.find("invalid"), std::string::npos) << r.err;
    }
    auto c = connect();
    auto s = c->subscribe(std::string(64, 'n'));
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().code, Errc::invalid_name);
    SubscribeOptions o;
    o.durable_name = "bad name";
    EXPECT_EQ(c->subscribe("ok", o).error().code, Errc::invalid_name);
}

TEST_F(BadInput, ADaemonThatIsNotRunningIsExplained) {
    stop_daemon();
    auto r = cli({"pub", "t", "m"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("shmbusd is not running"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("shmbusd --dir " + dir), std::string::npos) << r.err;
    auto c = connect();
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code, Errc::daemon_not_running);
    start_daemon();
}

TEST_F(BadInput, ASecondDaemonOnTheSameDirectoryRefusesToStart) {
    auto r = run({SHMBUSD_PATH, "--dir", dir});
    EXPECT_EQ(r.code, 3);
    EXPECT_NE((r.out + r.err).find("already serves " + dir), std::string::npos) << r.out << r.err;
    EXPECT_TRUE(connect().has_value());  // the first one is unharmed
}

TEST_F(BadInput, ABusDirectoryThatCannotBeCreatedOrWrittenIsAClearError) {
    {
        std::ofstream f(path("plainfile"));
        f << "x";
    }
    auto r = run({SHMBUSD_PATH, "--dir", path("plainfile") + "/bus"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE((r.out + r.err).find("cannot create bus directory"), std::string::npos) << r.out << r.err;

    if (geteuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0) {  // root writes anywhere: drop to nobody
        const std::string ro = path("readonly");
        std::filesystem::create_directory(ro);
        chmod(dir.c_str(), 0755);
        chmod(ro.c_str(), 0755);
        auto n = run({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SHMBUSD_PATH, "--dir", ro});
        EXPECT_EQ(n.code, 2);
        EXPECT_NE((n.out + n.err).find("is not writable"), std::string::npos) << n.out << n.err;
    } else if (geteuid() != 0) {
        const std::string ro = path("readonly");
        std::filesystem::create_directory(ro);
        chmod(ro.c_str(), 0555);
        auto n = run({SHMBUSD_PATH, "--dir", ro});
        EXPECT_EQ(n.code, 2);
        EXPECT_NE((n.out + n.err).find("is not writable"), std::string::npos) << n.out << n.err;
    }
}

TEST_F(BadInput, SharedMemoryTooSmallForTheCapacityIsAClearErrorNotASigbus) {
    stop_daemon();
    // RLIMIT_FSIZE caps how large the daemon may make a segment: posix_fallocate fails the way
    // it does on a full /dev/shm, and the daemon must survive it.
    daemon = spawn({SHMBUSD_PATH, "--dir", dir}, {path("d2.log"), path("d2.err"), "", rlim_t(2 << 20)});
    ASSERT_TRUE(eventually([&] { return connect().has_value(); }));
    auto r = cli({"topic", "create", "huge", "--capacity", "16M"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("not enough shared memory"), std::string::npos) << r.err;
    EXPECT_EQ(cli({"topic", "create", "fits", "--capacity", "64K"}).code, 0);  // the daemon lives on
    auto names = connect()->list_topics();
    EXPECT_EQ(*names, std::vector<std::string>{"fits"});
}

TEST_F(BadInput, ASegmentWithAWrongMagicOrVersionIsRemovedAtStartAndOthersAdopted) {
    ASSERT_EQ(cli({"pub", "good", "m"}).code, 0);
    ASSERT_EQ(cli({"pub", "badmagic", "m"}).code, 0);
    ASSERT_EQ(cli({"pub", "badversion", "m"}).code, 0);
    stop_daemon();
    const std::string prefix = "/shmbus-" + read_file(path("bus.id")).substr(0, 16) + "-";
    auto poke = [&](const std::string& topic, std::size_t offset, uint64_t value, std::size_t bytes) {
        int fd = shm_open((prefix + topic).c_str(), O_RDWR, 0);
        ASSERT_GE(fd, 0);
        void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        std::memcpy(static_cast<char*>(p) + offset, &value, bytes);
        munmap(p, 4096);
        close(fd);
    };
    poke("badmagic", 0, 0xDEADBEEF, 8);
    poke("badversion", 8, 99, 2);
    start_daemon();
    auto names = connect()->list_topics();
    EXPECT_EQ(*names, std::vector<std::string>{"good"});
    const std::string log = read_file(path("daemon.log"));
    EXPECT_NE(log.find("badmagic: not a shmbus segment"), std::string::npos) << log;
    EXPECT_NE(log.find("badversion: segment layout version 99." + std::to_string(layout::kVersionMinor) + " is not supported"),
              std::string::npos)
        << log;
    EXPECT_NE(shm_open((prefix + "badmagic").c_str(), O_RDONLY, 0), 0);
    EXPECT_EQ(errno, ENOENT);
}

// A file under a topic's name that shmbusd did not make (another user's, or open to others) is
// neither adopted nor removed, and creating that topic says why instead of "File exists".
TEST_F(BadInput, AFileAnotherUserPlantedUnderATopicsNameIsNeitherAdoptedNorRemoved) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to hand a file to another uid";
    ASSERT_EQ(cli({"pub", "good", "m"}).code, 0);
    ASSERT_EQ(cli({"pub", "planted", "m"}).code, 0);
    ASSERT_EQ(cli({"pub", "open", "m"}).code, 0);
    stop_daemon();
    const std::string id = read_file(path("bus.id")).substr(0, 16);
    const std::string planted = segment_file(*this, id, "planted"), open = segment_file(*this, id, "open");
    // A valid segment, as another user could copy one: owned by nobody, mode 0666.
    ASSERT_EQ(chown(planted.c_str(), kNobody, kNobody), 0);
    ASSERT_EQ(chmod(planted.c_str(), 0666), 0);
    ASSERT_EQ(chmod(open.c_str(), 0666), 0);  // ours, but open to everyone
    start_daemon();
    EXPECT_EQ(*connect()->list_topics(), std::vector<std::string>{"good"});
    const std::string log = read_file(path("daemon.log"));
    EXPECT_NE(log.find("ignored /dev/shm/shmbus-" + id + "-planted: owned by uid 65534"), std::string::npos) << log;
    EXPECT_NE(log.find("-open: mode 0666 lets others in"), std::string::npos) << log;
    struct stat st{};
    EXPECT_EQ(stat(planted.c_str(), &st), 0);  // left in place
    auto r = cli({"pub", "planted", "x"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("already exists and is not shmbusd's (owned by uid 65534"), std::string::npos) << r.err;
    unlink(planted.c_str());
    unlink(open.c_str());
}

// A bus directory another user could have made, or could write, is refused: its lock, bus id
// and socket could be swapped under the daemon (a default /tmp/shmbus-<uid> can be made by anyone).
TEST_F(BadInput, ABusDirectoryOthersOwnOrCanWriteIsRefused) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to hand a directory to another uid";
    const std::string squatted = path("squatted"), open = path("open");
    std::filesystem::create_directory(squatted);
    std::filesystem::create_directory(open);
    ASSERT_EQ(chown(squatted.c_str(), kNobody, kNobody), 0);
    ASSERT_EQ(chmod(squatted.c_str(), 0777), 0);
    ASSERT_EQ(chmod(open.c_str(), 0777), 0);
    auto r = run({SHMBUSD_PATH, "--dir", squatted}, "", std::chrono::seconds(10));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE((r.out + r.err).find("belongs to uid 65534, not to shmbusd's uid 0"), std::string::npos) << r.out << r.err;
    r = run({SHMBUSD_PATH, "--dir", open}, "", std::chrono::seconds(10));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE((r.out + r.err).find("is writable by others (mode 0777)"), std::string::npos) << r.out << r.err;
    struct stat st{};
    EXPECT_NE(lstat((squatted + "/shmbusd.lock").c_str(), &st), 0);  // nothing written there
}

// A client talks only to a shmbusd of its own uid or root's: a socket of another user's daemon
// (say, in a squatted directory) is refused before anything is published into it.
// A default bus directory is per user: a shmbusd of another user found there (it made the
// directory first) is refused before a byte is sent. A directory the user names is trusted to
// its owner's shmbusd (a bus shared with a group), but only if nobody else may write it.
TEST_F(BadInput, AClientRefusesAShmbusdOfAnotherUserInItsDefaultDirectory) {
    if (geteuid() != 0 || access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "needs root and setpriv";
    ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
    const std::string runtime = path("runtime");  // plays $XDG_RUNTIME_DIR
    const std::string theirs = runtime + "/shmbus";
    std::filesystem::create_directories(theirs);
    ASSERT_EQ(chown(theirs.c_str(), kNobody, kNobody), 0);
    ASSERT_EQ(chmod(theirs.c_str(), 0700), 0);
    const pid_t other = spawn({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SHMBUSD_PATH, "--dir",
                               theirs},
                              {path("theirs.log"), path("theirs.log")});
    struct Reaper {  // a failed assertion below must not leave the other user's shmbusd running
        pid_t pid;
        ~Reaper() {
            if (pid > 0 && kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
        }
    } reaper{other};
    struct stat st{};
    ASSERT_TRUE(eventually([&] { return stat(socket_path(theirs).c_str(), &st) == 0; })) << read_file(path("theirs.log"));
    const std::string saved_dir = std::getenv("SHMBUS_DIR") ? std::getenv("SHMBUS_DIR") : "";
    unsetenv("SHMBUS_DIR");
    setenv("XDG_RUNTIME_DIR", runtime.c_str(), 1);
    auto c = Client::connect({});
    unsetenv("XDG_RUNTIME_DIR");
    if (!saved_dir.empty()) setenv("SHMBUS_DIR", saved_dir.c_str(), 1);
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code, Errc::permission_denied);
    EXPECT_NE(c.error().message.find("runs as uid 65534, neither yours (0) nor root"), std::string::npos) << c.error().message;
    // Named, the directory is nobody's own and only theirs to write: its owner's shmbusd is trusted.
    ClientOptions named;
    named.dir = theirs;
    EXPECT_TRUE(Client::connect(named).has_value());
    // Once others may write the directory, anyone could have put that socket there.
    ASSERT_EQ(chmod(theirs.c_str(), 0777), 0);
    auto r = run({SHMBUS_CLI_PATH, "--dir", theirs, "pub", "t", "secret"}, "", std::chrono::seconds(10));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("refusing the shmbusd"), std::string::npos) << r.err;
    ASSERT_EQ(chmod(theirs.c_str(), 0700), 0);
    kill(other, SIGTERM);
    EXPECT_EQ(wait_exit(other, std::chrono::seconds(10)), 0);
    reaper.pid = -1;
}

// The bus id names every segment: losing it must never lose the bus. A damaged bus.id stops the
// start (a new id would orphan the topics, and the next gc would delete them)...
TEST_F(BadInput, ADamagedBusIdStopsTheStartAndLosesNothing) {
    ASSERT_EQ(cli({"pub", "kept", "m"}).code, 0);
    stop_daemon();
    const std::string good = read_file(path("bus.id"));
    {
        std::ofstream f(path("bus.id"));
        f << "not an id\n";
    }
    auto r = run({SHMBUSD_PATH, "--dir", dir}, "", std::chrono::seconds(10));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE((r.out + r.err).find("bus.id is damaged"), std::string::npos) << r.out << r.err;
    {
        std::ofstream f(path("bus.id"));
        f << good;
    }
    start_daemon();
    EXPECT_EQ(*connect()->list_topics(), std::vector<std::string>{"kept"});
}

// ...a missing one is recovered from the segments that name the directory...
TEST_F(BadInput, AMissingBusIdIsRecoveredFromTheBussSegments) {
    ASSERT_EQ(cli({"pub", "kept", "m"}).code, 0);
    stop_daemon();
    const std::string id = read_file(path("bus.id"));
    ASSERT_EQ(unlink(path("bus.id").c_str()), 0);
    start_daemon();
    EXPECT_EQ(read_file(path("bus.id")), id);
    EXPECT_EQ(*connect()->list_topics(), std::vector<std::string>{"kept"});
    EXPECT_NE(read_file(path("daemon.log")).find("recovered bus id " + id.substr(0, 16)), std::string::npos);
}

// ...and one that cannot be written stops the start instead of leaving an empty file behind.
TEST_F(BadInput, ABusIdThatCannotBeWrittenStopsTheStart) {
    const std::string fresh = path("fresh");
    const pid_t pid = spawn({SHMBUSD_PATH, "--dir", fresh}, {path("fresh.out"), path("fresh.out"), "", rlim_t(12)});
    // The pid fits in 12 bytes, the id line does not (nor does the log: the limit is the process's).
    EXPECT_EQ(wait_exit(pid, std::chrono::seconds(10)), 2);
    struct stat st{};
    EXPECT_NE(stat((fresh + "/bus.id").c_str(), &st), 0);
}

// CPU seconds a process has used (user + system), from /proc.
double cpu_seconds(pid_t pid) {
    std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/stat"));
    std::string field;
    for (int i = 1; i <= 13; ++i) in >> field;  // up to utime (14), past the "(comm)" that has no spaces here
    unsigned long long utime = 0, stime = 0;
    in >> utime >> stime;
    return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

// Out of descriptors, shmbusd refuses the clients it cannot take, says so at most once a second,
// and neither spins nor stops answering once descriptors are free again.
TEST_F(BadInput, RunningOutOfDescriptorsNeitherSpinsNorFloodsTheLog) {
    if (access("/usr/bin/prlimit", X_OK) != 0) GTEST_SKIP() << "needs prlimit";
    stop_daemon();
    daemon = spawn({"/usr/bin/prlimit", "--nofile=128:128", SHMBUSD_PATH, "--dir", dir},
                   {path("daemon.log"), path("daemon.log.err")});
    ASSERT_TRUE(eventually([&] { return connect().has_value(); }));
    std::vector<std::unique_ptr<RawSocket>> idle;
    for (int i = 0; i < 200; ++i) idle.push_back(std::make_unique<RawSocket>(dir));  // more than it can hold
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const double before = cpu_seconds(daemon);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    EXPECT_LT(cpu_seconds(daemon) - before, 0.2);  // a spinning loop would use the whole second
    const std::string log = read_file(path("daemon.log"));
    EXPECT_NE(log.find("out of file descriptors"), std::string::npos) << log.substr(0, 2000);
    EXPECT_LT(std::count(log.begin(), log.end(), '\n'), 50);
    // A client refused meanwhile is told why, not that shmbusd is not running.
    const auto refused = cli({"--wait", "0", "topic", "list"});
    EXPECT_EQ(refused.code, 1);
    EXPECT_NE(refused.err.find("shmbusd is out of file descriptors"), std::string::npos) << "[" << refused.err << "]";
    EXPECT_EQ(refused.err.find("not running"), std::string::npos) << refused.err;
    idle.clear();
    ASSERT_TRUE(eventually([&] { return connect().has_value(); }));  // answering again
    EXPECT_EQ(cli({"pub", "t", "after"}).code, 0);
}

// Each topic holds a descriptor: a bus may have only as many topics as a restarted shmbusd can
// open again, so a create past that is refused with a clear error, and a restart adopts them all.
TEST_F(BadInput, TopicsBeyondWhatARestartCouldReopenAreRefused) {
    if (access("/usr/bin/prlimit", X_OK) != 0) GTEST_SKIP() << "needs prlimit";
    auto start_limited = [&] {
        daemon = spawn({"/usr/bin/prlimit", "--nofile=120:120", SHMBUSD_PATH, "--dir", dir},
                       {path("daemon.log"), path("daemon.log.err")});
        ASSERT_TRUE(eventually([&] { return connect().has_value(); }));
    };
    stop_daemon();
    start_limited();
    TopicConfig small;
    small.capacity = 4096;
    auto c = connect();
    const std::size_t limit = (120 - (64 + 120 / 8)) / 2;  // daemon/registry.h, topic_limit: two descriptors a topic
    for (std::size_t i = 0; i < limit; ++i) ASSERT_TRUE(c->create_topic("t" + std::to_string(i), small).has_value()) << i;
    auto refused = c->create_topic("one-too-many", small);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, Errc::no_space);
    EXPECT_NE(refused.error().message.find("descriptor limit"), std::string::npos) << refused.error().message;
    c = make_error(Errc::disconnected, "closed");
    stop_daemon();
    start_limited();
    EXPECT_EQ(connect()->list_topics()->size(), limit);
}

TEST_F(BadInput, NegativeCountsAndIdsAreUsageErrorsNotHugeNumbers) {
    for (const auto& args : std::vector<std::vector<std::string>>{{"sub", "t", "--count", "-1"}, {"sub", "t", "--from", "-1"},
                                                                  {"sub", "t", "--from", "+5"}, {"sub", "t", "--count", "x"}}) {
        const auto r = cli(args);
        EXPECT_EQ(r.code, 2) << args[2] << " " << args[3];
    }
    EXPECT_TRUE(connect()->list_topics()->empty());  // nothing was created on the way
}

TEST_F(BadInput, ASubscriptionThatCannotStartLeavesNoTopicBehind) {
    const auto r = cli({"sub", "fresh", "--from", "5"});  // id 5 was never published: refused
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("has not been published yet"), std::string::npos) << r.err;
    EXPECT_TRUE(connect()->list_topics()->empty());
}

TEST_F(BadInput, SighupNeitherKillsNorStopsTheSupervisor) {
    ASSERT_EQ(cli({"pub", "t", "before"}).code, 0);
    ASSERT_EQ(kill(daemon, SIGHUP), 0);
    ASSERT_TRUE(eventually([&] { return read_file(path("daemon.log")).find("SIGHUP") != std::string::npos; }));
    EXPECT_EQ(cli({"pub", "t", "after"}).code, 0);
    EXPECT_EQ(connect()->topic_stats("t")->published, 2u);
}

// One damaged segment is reported as such; the other topics are still listed.
TEST_F(BadInput, OneDamagedTopicDoesNotHideTheOthersFromTopicList) {
    ASSERT_EQ(cli({"pub", "fine", "m"}).code, 0);
    ASSERT_EQ(cli({"pub", "damaged", "m"}).code, 0);
    const std::string id = read_file(path("bus.id")).substr(0, 16);
    const int fd = open(segment_file(*this, id, "damaged").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const uint64_t junk = 0xDEADBEEF;
    ASSERT_EQ(pwrite(fd, &junk, sizeof junk, 0), ssize_t(sizeof junk));  // the magic
    close(fd);
    const auto r = cli({"topic", "list"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("topic fine"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("topic 'damaged': not a shmbus segment"), std::string::npos) << r.err;
    const auto j = cli({"topic", "list", "--json"});
    EXPECT_NE(j.out.find("\"error\""), std::string::npos) << j.out;
}

// A supervisor that stopped accepting (hung, its backlog full) costs a client its timeout, not forever.
TEST_F(BadInput, AHungSupervisorWithAFullBacklogCostsTheTimeoutNotForever) {
    const std::string hung = path("hung");
    ASSERT_EQ(mkdir(hung.c_str(), 0700), 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string sock = socket_path(hung);
    std::memcpy(addr.sun_path, sock.c_str(), sock.size() + 1);
    const int listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(listener, 0), 0);  // and never accepts
    std::vector<int> queued;
    for (int i = 0; i < 8; ++i) {  // fill its backlog
        const int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            close(s);
            break;
        }
        queued.push_back(s);
    }
    ClientOptions o;
    o.dir = hung;
    o.timeout = std::chrono::milliseconds(300);
    const auto t0 = std::chrono::steady_clock::now();
    auto c = Client::connect(o);
    const auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code, Errc::timed_out) << c.error().message;
    EXPECT_NE(c.error().message.find("did not accept the connection within 300 ms"), std::string::npos) << c.error().message;
    EXPECT_LT(took, std::chrono::seconds(3));
    for (int s : queued) close(s);
    close(listener);
}

// A FIFO under a segment's name, of this bus or another, must not hang shmbusd's start or gc.
TEST_F(BadInput, AFifoUnderASegmentsNameHangsNeitherTheStartNorGc) {
    stop_daemon();
    const std::string id = read_file(path("bus.id")).substr(0, 16);
    const std::string ours = segment_file(*this, id, "fifo");
    const std::string other = "/dev/shm/shmbus-00000000000000a1-fifo";
    ASSERT_EQ(mkfifo(ours.c_str(), 0600), 0);
    ASSERT_EQ(mkfifo(other.c_str(), 0600), 0);
    start_daemon();  // ready, not blocked in open()
    const auto r = run({SHMBUS_CLI_PATH, "--dir", dir, "gc"}, "", std::chrono::seconds(10));
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(read_file(path("daemon.log")).find("-fifo: not a regular file"), std::string::npos);
    struct stat st{};
    EXPECT_EQ(stat(other.c_str(), &st), 0);  // another bus's odd file: not ours to judge
    unlink(ours.c_str());
    unlink(other.c_str());
}

// A client of another protocol version (an older release's library) is told which version
// shmbusd speaks, and shmbusd's log names the one it was sent.
TEST_F(BadInput, AnotherProtocolVersionIsRefusedNamingBoth) {
    RawSocket s(dir);
    ASSERT_TRUE(s.ok());
    protocol::Hello hello{uint16_t(protocol::kProtocolVersion - 1), getpid(), "old"};
    std::vector<char> frame(sizeof(protocol::FrameHeader) + sizeof hello);
    const protocol::FrameHeader h{protocol::kFrameMagic, uint16_t(protocol::kProtocolVersion - 1),
                                  uint16_t(protocol::Type::hello), uint32_t(frame.size()), 1};
    std::memcpy(frame.data(), &h, sizeof h);
    std::memcpy(frame.data() + sizeof h, &hello, sizeof hello);
    s.send_raw(frame.data(), frame.size());
    const auto e = s.reply_as<protocol::ErrorReply>(int(protocol::Type::error));
    const std::string message(e.message, strnlen(e.message, sizeof e.message));
    EXPECT_NE(message.find("speaks protocol version " + std::to_string(protocol::kProtocolVersion) + ", not " +
                           std::to_string(protocol::kProtocolVersion - 1)),
              std::string::npos)
        << message;
    EXPECT_TRUE(eventually([&] {
        return read_file(path("daemon.log")).find("protocol version " + std::to_string(protocol::kProtocolVersion - 1) +
                                                  " is not served") != std::string::npos;
    }));
}

TEST_F(BadInput, MalformedControlFramesGetAnErrorOrAClosedConnectionAndTheDaemonLivesOn) {
    const int error = int(protocol::Type::error);
    auto answered = [&](int t) { return t == error || t == 0; };
    {
        RawSocket s(dir);
        ASSERT_TRUE(s.ok());
        s.send_raw("junk", 4);  // shorter than a header
        EXPECT_PRED1(answered, s.reply_type());
    }
    {
        RawSocket s(dir);
        std::vector<char> zeros(100, 0);  // wrong magic
        s.send_raw(zeros.data(), zeros.size());
        EXPECT_PRED1(answered, s.reply_type());
    }
    {
        RawSocket s(dir);
        std::vector<char> big(100000, 'A');  // larger than any frame
        s.send_raw(big.data(), big.size());
        EXPECT_PRED1(answered, s.reply_type());
    }
    {
        RawSocket s(dir);
        protocol::OpenTopic o{};
        std::memcpy(o.topic, "t", 1);
        s.send_frame(uint16_t(protocol::Type::open_topic), &o, sizeof o);  // before hello
        EXPECT_PRED1(answered, s.reply_type());
    }
    {
        RawSocket s(dir);
        s.hello();
        s.send_frame(uint16_t(protocol::Type::open_topic), "short", 5);  // wrong body size
        EXPECT_PRED1(answered, s.reply_type());
    }
    {
        RawSocket s(dir);
        s.hello();
        protocol::Subscribe sub{};
        std::memset(sub.topic, 'x', sizeof sub.topic);  // no terminating NUL
        s.send_frame(uint16_t(protocol::Type::subscribe), &sub, sizeof sub);
        EXPECT_PRED1(answered, s.reply_type());
    }
    {
        RawSocket s(dir);
        s.hello();
        protocol::OpenTopic o{};
        s.send_frame(uint16_t(protocol::Type::open_topic), &o, sizeof o, 9999);  // lying length
        EXPECT_PRED1(answered, s.reply_type());
    }
    {
        RawSocket s(dir);
        s.hello();
        s.send_frame(4242, nullptr, 0);  // unknown type
        EXPECT_PRED1(answered, s.reply_type());
    }
    {
        RawSocket s(dir);
        s.hello();
        protocol::Subscribe sub{};
        std::memcpy(sub.topic, "hostile", 7);
        sub.from = 77;  // unknown start
        s.send_frame(uint16_t(protocol::Type::subscribe), &sub, sizeof sub);
        EXPECT_EQ(s.reply_type(), error);
        protocol::OpenTopic o{};
        std::memcpy(o.topic, "hostile", 7);
        o.flags = protocol::kCreateIfMissing;
        o.config = {1ull << 60, 0, 9, 0, 0, 0, 0, 0};  // absurd config
        s.send_frame(uint16_t(protocol::Type::open_topic), &o, sizeof o);
        EXPECT_EQ(s.reply_type(), error);
        protocol::Unsubscribe u{};
        std::memcpy(u.topic, "hostile", 7);
        u.slot = 3;  // not ours
        s.send_frame(uint16_t(protocol::Type::unsubscribe), &u, sizeof u);
        EXPECT_EQ(s.reply_type(), error);
    }
    {
        RawSocket s(dir);  // floods requests and never reads a reply: dropped, never waited on
        s.hello();
        protocol::ListTopics l{};
        for (int i = 0; i < 20000; ++i) s.send_frame(uint16_t(protocol::Type::list_topics), &l, sizeof l, 0, MSG_DONTWAIT);
    }
    auto c = connect();
    ASSERT_TRUE(c.has_value());
    auto pub = c->publisher("after");
    ASSERT_TRUE(pub.has_value());
    EXPECT_EQ(pub->publish("still alive"), PublishStatus::ok);
}

}  // namespace
}  // namespace shmbus::test
