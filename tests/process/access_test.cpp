// Access control from a second uid: shmbusd (root here, the bus owner) runs with a configuration
// that opens the bus to group 65534 and grants uid 65534 (`nobody`) some rights on some topics.
// Each claim is tested from a child process that has dropped to uid/gid 65534 with setresuid, as
// a real other user would be: what it may do works, what it may not is refused with a clear
// error, and what it holds read-only the kernel keeps read-only.
#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <string>

#include "bus_fixture.h"
#include "core/bus_files.h"
#include "local_topic.h"  // detail::Access: the mapping behind a Publisher or Subscriber

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;
constexpr uid_t kNobody = 65534;

constexpr const char* kConfig = R"(# the bus of this test
[bus]
access_group = "65534"

[[acl]]
topics = ["prices"]
publish = ["user:0"]
subscribe = ["user:65534"]

[[acl]]
topics = ["public.*", "shared"]
publish = ["group:65534"]
subscribe = ["group:65534"]
admin = ["user:65534"]

[[acl]]
topics = ["orders"]
publish = ["user:65534"]
)";

// What a child reports: empty when every check held, else the first that did not.
struct Outcome {
    int status = -1;
    std::string failure;
};

class OtherUser : public BusTest {
protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root: tests drop to uid 65534";
        make_dir();
        {
            std::ofstream f(path("shmbusd.toml"));
            f << kConfig;
        }
        start_daemon({"--config", path("shmbusd.toml"), "--log-level", "debug"});
    }

    // Runs `body` in a child that has become uid/gid 65534 with no other groups. `body` returns
    // an empty string if every check held, else what went wrong.
    Outcome as_nobody(const std::function<std::string()>& body) { return as_other_user(kNobody, body); }

    Outcome as_other_user(uid_t uid, const std::function<std::string()>& body) {
        int pipe_fds[2];
        if (pipe(pipe_fds) != 0) return {};
        const pid_t pid = fork();
        if (pid == 0) {
            close(pipe_fds[0]);
            std::string failure;
            if (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0)
                failure = "cannot become uid " + std::to_string(uid) + ": " + strerror(errno);
            else
                failure = body();
            (void)!write(pipe_fds[1], failure.data(), failure.size());
            _exit(failure.empty() ? 0 : 1);
        }
        close(pipe_fds[1]);
        Outcome out;
        char buf[512];
        ssize_t n;
        while ((n = read(pipe_fds[0], buf, sizeof buf)) > 0) out.failure.append(buf, size_t(n));
        close(pipe_fds[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        out.status = status;
        return out;
    }

    // In a child of the caller: runs `write` and reports whether the kernel killed it with SIGSEGV.
    static bool write_faults(const std::function<void()>& write) {
        const pid_t pid = fork();
        if (pid == 0) {
            std::signal(SIGSEGV, SIG_DFL);  // the kernel's verdict, not a sanitizer's report of it
            write();
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
    }

    // /dev/shm name of a topic's segment on this bus.
    std::string shm_name(const std::string& topic) const {
        uint64_t id = 0;
        std::string why;
        (void)detail::read_bus_id_file(dir, id, why);
        return detail::shm_name(id, topic);
    }

    static ClientOptions options_for(const std::string& dir) {
        ClientOptions o;
        o.dir = dir;
        o.name = "nobody";
        return o;
    }
};

#define CHECK(cond, what)                     \
    do {                                      \
        if (!(cond)) return std::string(what); \
    } while (0)

TEST_F(OtherUser, TheGroupReachesTheSocketAndNothingElseOfTheDirectory) {
    struct stat st{};
    ASSERT_EQ(stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_gid, kNobody);
    EXPECT_EQ(st.st_mode & 0777, 0710u);
    ASSERT_EQ(stat(socket_path(dir).c_str(), &st), 0);
    EXPECT_EQ(st.st_gid, kNobody);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(OtherUser, ASubscriberReceivesButCannotWriteTheRingOrPublish) {
    auto root = connect();
    ASSERT_TRUE(root.has_value());
    auto pub = root->publisher("prices");
    ASSERT_TRUE(pub.has_value());
    ASSERT_EQ(pub->publish("42.17"), PublishStatus::ok);
    const std::string segment_file = std::string("/dev/shm") + shm_name("prices");
    const auto out = as_nobody([&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(c.has_value(), "connect: " + c.error().message);
        SubscribeOptions so;
        so.from = StartFrom::earliest;
        auto sub = c->subscribe("prices", so);
        CHECK(sub.has_value(), "subscribe: " + sub.error().message);
        std::string got;
        for (int i = 0; i < 500 && got.empty(); ++i)
            if (sub->poll([&](const Message& m) { got = std::string(m.text()); }).count == 0) std::this_thread::sleep_for(10ms);
        CHECK(got == "42.17", "received '" + got + "'");
        detail::Segment& seg = detail::Access::core(*sub).seg;
        CHECK(!seg.segment_writable(), "the segment was mapped writable");
        CHECK(write_faults([&] { seg.ring()[0] = std::byte{0x55}; }), "a write to the ring did not fault");
        CHECK(write_faults([&] { seg.producers().tail.next_id = 1; }), "a write to the tail did not fault");
        CHECK(mprotect(seg.ring(), 4096, PROT_READ | PROT_WRITE) != 0 && errno == EACCES, "mprotect made the ring writable");
        CHECK(seg.cursors_writable(), "the cursor object was mapped read-only (it must write its own cursor)");
        // The objects are not its to open by name, for writing or even for reading.
        CHECK(open(segment_file.c_str(), O_RDWR) < 0 && errno == EACCES, "opened the segment read-write by name");
        CHECK(open(segment_file.c_str(), O_RDONLY) < 0 && errno == EACCES, "opened the segment by name");
        auto p = c->publisher("prices");
        CHECK(!p.has_value() && p.error().code == Errc::permission_denied, "publish was not refused");
        CHECK(p.error().message.find("may not publish to topic 'prices'") != std::string::npos, p.error().message);
        auto del = c->delete_topic("prices");
        CHECK(!del.has_value() && del.error().code == Errc::permission_denied, "delete was not refused");
        return {};
    });
    EXPECT_EQ(out.status, 0) << out.failure;
    EXPECT_NE(read_file(path("daemon.log")).find("denied: uid 65534 pid"), std::string::npos);
    EXPECT_TRUE(eventually([&] { return root->topic_stats("prices")->subscriptions.empty(); }));  // its exit freed the slot
}

// Layout 1.9, from a second uid with the subscribe right: it writes its own subscription's state
// and nothing of another principal's. The bus owner's durable cursor, the group's entries and
// dispatch word, and the archiver's cursor all fault when it writes them; a durable name it picks
// is its own (the owner's 'audit' is not handed to it).
TEST_F(OtherUser, ASubscriberWritesItsOwnStateAndNothingOfAnotherPrincipals) {
    auto root = connect();
    ASSERT_TRUE(root.has_value());
    ASSERT_TRUE(root->create_topic("prices", {}).has_value());
    ASSERT_TRUE(root->set_archive("prices", {}).has_value());
    SubscribeOptions audit;
    audit.durable_name = "audit";
    auto audit_sub = root->subscribe("prices", audit);
    ASSERT_TRUE(audit_sub.has_value()) << audit_sub.error().message;
    SubscribeOptions member;
    member.group = "workers";
    auto worker = root->subscribe("prices", member);
    ASSERT_TRUE(worker.has_value()) << worker.error().message;
    ASSERT_TRUE(eventually([&] { return root->topic_stats("prices")->subscriptions.size() == 2; }));  // audit and $archiver
    const auto out = as_nobody([&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(c.has_value(), "connect: " + c.error().message);
        SubscribeOptions mine;
        mine.durable_name = "audit";  // the owner's name: a subscription of its own, not the owner's
        auto sub = c->subscribe("prices", mine);
        CHECK(sub.has_value(), "subscribe: " + sub.error().message);
        CHECK(!sub->resumed(), "it was handed the bus owner's durable cursor");
        auto& core = detail::Access::core(*sub);
        detail::Segment& seg = core.seg;
        CHECK(seg.owner_objects() > 1, "the topic has no owner objects");
        CHECK(seg.owner_object_writable(seg.owner_object_of(core.slot_index)), "its own owner object is not writable");
        std::optional<uint32_t> owners_audit;
        for (uint32_t i = 0; i < seg.max_consumers(); ++i)
            if (i != core.slot_index && detail::field_name(seg.consumer_slot(i).name) == "audit") owners_audit = i;
        CHECK(owners_audit.has_value(), "the owner's cursor is not visible");
        CHECK(!seg.owner_object_writable(seg.owner_object_of(*owners_audit)), "the owner's cursor object is writable");
        const uint32_t theirs = *owners_audit;
        CHECK(write_faults([&] { seg.consumer_slot(theirs).ack_position.store(1u << 30); }), "a write to the owner's cursor did not fault");
        CHECK(write_faults([&] { seg.consumer_slot(theirs).state.store(0); }), "a write to the owner's slot state did not fault");
        const auto archiver = seg.archiver_slot();
        CHECK(archiver.has_value(), "no archiver cursor");
        const uint32_t archiver_slot = *archiver;
        CHECK(write_faults([&] { seg.consumer_slot(archiver_slot).ack_id.store(1u << 30); }), "a write to the archiver's cursor did not fault");
        for (uint32_t g = 0; g < seg.max_groups(); ++g) CHECK(!seg.group_object_writable(g), "a group object is writable");
        const uint32_t dispatch = seg.group_block(0).consumer_slot;
        CHECK(write_faults([&] { seg.group_block(0).entries[3].position.store(1u << 30); }), "a write to the group's entries did not fault");
        CHECK(write_faults([&] { seg.consumer_slot(dispatch).ack_position.store(1u << 30); }), "a write to the group's dispatch did not fault");
        return {};
    });
    EXPECT_EQ(out.status, 0) << out.failure;
    // The owner's 'audit' is still its own, attached, and a second one of uid 65534 exists beside it.
    const auto stats = root->topic_stats("prices");
    ASSERT_TRUE(stats.has_value());
    int audits = 0;
    for (const auto& s : stats->subscriptions) audits += s.name == "audit";
    EXPECT_EQ(audits, 2);
    // Who owns which object outlives shmbusd: restarted, it hands uid 65534 its own 'audit' again.
    audit_sub = make_error(Errc::disconnected, "closed");
    worker = make_error(Errc::disconnected, "closed");
    root = make_error(Errc::disconnected, "closed");
    kill_daemon();
    start_daemon({"--config", path("shmbusd.toml"), "--log-level", "debug"});
    const auto again = as_nobody([&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(c.has_value(), "connect: " + c.error().message);
        SubscribeOptions mine;
        mine.durable_name = "audit";
        auto sub = c->subscribe("prices", mine);
        CHECK(sub.has_value(), "subscribe: " + sub.error().message);
        CHECK(sub->resumed(), "its durable cursor was not found after a restart");
        auto& core = detail::Access::core(*sub);
        CHECK(core.seg.owner_object_writable(core.seg.owner_object_of(core.slot_index)), "its owner object is not writable");
        return {};
    });
    EXPECT_EQ(again.status, 0) << again.failure;
}

TEST_F(OtherUser, APublisherCannotWriteAnyCursor) {
    auto root = connect();
    ASSERT_TRUE(root.has_value());
    SubscribeOptions audit;
    audit.durable_name = "audit";
    auto sub = root->subscribe("orders", audit);
    ASSERT_TRUE(sub.has_value());
    const auto out = as_nobody([&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(c.has_value(), "connect: " + c.error().message);
        auto p = c->publisher("orders");
        CHECK(p.has_value(), "publisher: " + p.error().message);
        CHECK(p->publish("o1") == PublishStatus::ok, "publish failed");
        detail::Segment& seg = detail::Access::core(*p).seg;
        CHECK(seg.segment_writable(), "the segment was mapped read-only (it must write the ring)");
        CHECK(!seg.cursors_writable(), "the cursor object was mapped writable");
        CHECK(write_faults([&] { seg.consumer_slot(0).ack_position.store(1u << 30); }), "a write to a cursor did not fault");
        CHECK(write_faults([&] { seg.consumers().space_futex.store(7); }), "a write to the consumer region did not fault");
        auto s = c->subscribe("orders");
        CHECK(!s.has_value() && s.error().code == Errc::permission_denied, "subscribe was not refused");
        return {};
    });
    EXPECT_EQ(out.status, 0) << out.failure;
    std::string got;
    ASSERT_TRUE(eventually([&] {
        (void)sub->poll([&](const Message& m) { got = std::string(m.text()); });
        return !got.empty();
    }));
    EXPECT_EQ(got, "o1");
}

TEST_F(OtherUser, AnAdminManagesTheTopicsItsRulesCoverAndNoOthers) {
    const auto out = as_nobody([&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(c.has_value(), "connect: " + c.error().message);
        CHECK(c->create_topic("public.news", {}).has_value(), "create public.news was refused");
        auto p = c->publisher("public.news");
        CHECK(p.has_value() && p->publish("hello") == PublishStatus::ok, "publish to public.news failed");
        p = make_error(Errc::disconnected, "closed");
        CHECK(c->delete_topic("public.news").has_value(), "delete public.news was refused");
        auto made = c->create_topic("secret", {});
        CHECK(!made.has_value() && made.error().code == Errc::permission_denied, "create secret was not refused");
        // A subscription that would create a topic needs admin on it too: "prices" grants subscribe only.
        auto s = c->subscribe("prices");
        CHECK(!s.has_value() && s.error().code == Errc::permission_denied, "subscribing created 'prices'");
        CHECK(c->collect_garbage().has_value(), "gc was refused to an admin");
        return {};
    });
    EXPECT_EQ(out.status, 0) << out.failure;
    auto root = connect();
    EXPECT_TRUE(root->list_topics()->empty());
}

TEST_F(OtherUser, TopicsNoRuleCoversAreInvisibleAndRefused) {
    auto root = connect();
    ASSERT_TRUE(root->create_topic("secret", {}).has_value());
    ASSERT_TRUE(root->create_topic("prices", {}).has_value());
    const auto out = as_nobody([&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(c.has_value(), "connect: " + c.error().message);
        auto names = c->list_topics();
        CHECK(names.has_value() && *names == std::vector<std::string>{"prices"}, "list shows more than 'prices'");
        auto stats = c->topic_stats("secret");
        CHECK(!stats.has_value() && stats.error().code == Errc::permission_denied, "statistics of 'secret' were shown");
        auto s = c->subscribe("secret");
        CHECK(!s.has_value() && s.error().code == Errc::permission_denied, "subscribe to 'secret' was not refused");
        CHECK(s.error().message.find("may not subscribe to topic 'secret'") != std::string::npos, s.error().message);
        return {};
    });
    EXPECT_EQ(out.status, 0) << out.failure;
    const std::string log = read_file(path("daemon.log"));
    EXPECT_NE(log.find("may not subscribe topic 'secret' (no acl entry matches)"), std::string::npos) << log;
}

// A pattern subscription is subscriptions, each checked against the rules: a topic the user may
// see but not read is refused and named, one it may not see is never found, and neither ever
// delivers a message to it.
TEST_F(OtherUser, APatternSubscriptionCoversOnlyTheTopicsItMayRead) {
    auto root = connect();
    for (const char* t : {"prices", "orders", "secret", "public.a"}) {
        ASSERT_TRUE(root->create_topic(t, {}).has_value());
        auto pub = root->publisher(t);
        ASSERT_TRUE(pub);
        ASSERT_EQ(pub->publish(std::string_view(t)), PublishStatus::ok);
    }
    const auto out = as_nobody([&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(c.has_value(), "connect: " + c.error().message);
        SubscribeOptions from_start;
        from_start.from = StartFrom::earliest;
        auto p = c->subscribe_pattern("*", from_start);
        CHECK(p.has_value(), "subscribe_pattern: " + p.error().message);
        CHECK(p->topics() == (std::vector<std::string>{"prices"}), "'*' covers more or less than 'prices'");
        CHECK(p->refused() == std::vector<std::string>{"orders"}, "'orders' (visible, not readable) is not named as refused");
        std::set<std::string> seen;
        for (int i = 0; i < 10; ++i)
            (void)p->receive([&](const Message& m) { seen.insert(std::string(m.topic) + "=" + std::string(m.text())); }, 20ms);
        CHECK(seen == std::set<std::string>{"prices=prices"}, "a message came from a topic other than 'prices'");
        auto two = c->subscribe_pattern("public.*", from_start);
        CHECK(two.has_value() && two->topics() == std::vector<std::string>{"public.a"}, "public.* does not cover public.a");
        return {};
    });
    EXPECT_EQ(out.status, 0) << out.failure;
}

// Calling a topic needs the publish right, serving it the subscribe right; another uid's reply inbox
// works across users, and its replies reach it alone.
TEST_F(OtherUser, CallingNeedsPublishAndServingSubscribe) {
    auto root = connect();
    ASSERT_TRUE(root.has_value());
    std::atomic<bool> stop{false};
    auto responder = root->serve("orders");
    ASSERT_TRUE(responder.has_value()) << responder.error().message;
    std::thread serving([&] {
        while (!stop) (void)responder->serve([](const Message& m, Answer& a) { (void)a.reply("ok:" + std::string(m.text())); }, 20ms);
    });
    const auto out = as_nobody([&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(c.has_value(), "connect: " + c.error().message);
        auto reply = c->request("orders", "o1", {.timeout = 5s});  // publish right on 'orders'
        CHECK(reply.has_value(), "request to 'orders': " + (reply ? std::string() : reply.error().message));
        CHECK(reply->text() == "ok:o1", "the reply is not the answer to this request");
        auto no_call = c->request("prices", "p", {.timeout = 1s});  // subscribe right only
        CHECK(!no_call && no_call.error().code == Errc::permission_denied, "a request to 'prices' was not refused");
        auto no_serve = c->serve("orders");  // publish right only
        CHECK(!no_serve && no_serve.error().code == Errc::permission_denied, "serving 'orders' was not refused");
        return {};
    });
    stop = true;
    serving.join();
    EXPECT_EQ(out.status, 0) << out.failure;
}

// The subscribe right reaches the archive: another uid replays from disk what the ring no longer
// holds, every message once and in order, through the directory descriptor shmbusd hands it.
TEST_F(OtherUser, ASubscriberOfAnotherUidReplaysTheArchive) {
    constexpr uint64_t kCount = 5000;
    auto root = connect();
    ASSERT_TRUE(root.has_value());
    TopicConfig small;
    small.capacity = 16384;  // the ring keeps a few hundred: the rest only the archive has
    ASSERT_TRUE(root->create_topic("public.archived", small).has_value());
    ASSERT_TRUE(root->set_archive("public.archived", {}).has_value());
    {
        auto pub = root->publisher("public.archived");
        ASSERT_TRUE(pub.has_value());
        for (uint64_t i = 0; i < kCount; ++i) ASSERT_EQ(pub->publish("m" + std::to_string(i), 5s), PublishStatus::ok) << i;
    }
    ASSERT_TRUE(eventually([&] {
        auto info = root->archive_info("public.archived");
        return info && info->records == kCount;
    }));
    const auto out = as_nobody([&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(c.has_value(), "connect: " + c.error().message);
        SubscribeOptions so;
        so.from = StartFrom::earliest;
        auto sub = c->subscribe("public.archived", so);
        CHECK(sub.has_value(), "subscribe: " + sub.error().message);
        uint64_t next = 0;
        std::string wrong;
        for (int i = 0; i < 2000 && next < kCount && wrong.empty(); ++i)
            (void)sub->receive([&](const Message& m) {
                if (m.id != next || m.text() != "m" + std::to_string(next) || m.lost_before != 0) wrong = "id " + std::to_string(m.id);
                ++next;
            }, 10ms, 1024);
        CHECK(wrong.empty(), "out of order or damaged at " + wrong);
        CHECK(next == kCount, "received " + std::to_string(next) + " of " + std::to_string(kCount));
        return {};
    });
    EXPECT_EQ(out.status, 0) << out.failure;
}

// A client asking again and again for what it may not have costs the log one line a second,
// with a count of the rest.
TEST_F(OtherUser, RepeatedDenialsAreLoggedOnceASecondWithACount) {
    ASSERT_TRUE(connect()->create_topic("prices", {}).has_value());
    const auto out = as_nobody([&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(c.has_value(), "connect: " + c.error().message);
        for (int i = 0; i < 3000; ++i) {
            auto p = c->publisher("prices");
            CHECK(!p.has_value() && p.error().code == Errc::permission_denied, "publish was not refused");
        }
        std::this_thread::sleep_for(1100ms);
        CHECK(!c->publisher("prices").has_value(), "publish was not refused");  // logged, with the count before it
        return {};
    });
    EXPECT_EQ(out.status, 0) << out.failure;
    const std::string log = read_file(path("daemon.log"));
    std::size_t lines = 0;
    for (std::size_t at = log.find("denied: uid 65534"); at != std::string::npos; at = log.find("denied: uid 65534", at + 1)) ++lines;
    EXPECT_GE(lines, 2u);
    EXPECT_LE(lines, 10u) << "3,001 denials in about 1.5 s";
    EXPECT_NE(log.find("more such denials in the last second not logged"), std::string::npos) << log;
}

TEST_F(OtherUser, AUserOutsideTheGroupCannotConnect) {
    const auto out = as_other_user(12345, [&]() -> std::string {
        auto c = Client::connect(options_for(dir));
        CHECK(!c.has_value() && c.error().code == Errc::permission_denied, "a stranger connected");
        return {};
    });
    EXPECT_EQ(out.status, 0) << out.failure;
}

// SIGHUP rereads the rules: a grant takes effect for the next request; a file that no longer
// parses changes nothing.
TEST_F(OtherUser, SighupReloadsTheRulesAndKeepsThemWhenTheFileIsBroken) {
    ASSERT_TRUE(connect()->create_topic("prices", {}).has_value());
    auto publish_as_nobody = [&] {
        return as_nobody([&]() -> std::string {
            auto c = Client::connect(options_for(dir));
            CHECK(c.has_value(), "connect: " + c.error().message);
            auto p = c->publisher("prices");
            CHECK(p.has_value(), p.error().message);
            return {};
        });
    };
    EXPECT_NE(publish_as_nobody().status, 0);
    {
        std::ofstream f(path("shmbusd.toml"));
        f << "[bus]\naccess_group = \"65534\"\n[[acl]]\ntopics = [\"prices\"]\npublish = [\"user:65534\"]\n";
    }
    kill(daemon, SIGHUP);
    ASSERT_TRUE(eventually([&] { return read_file(path("daemon.log")).find("SIGHUP: reloaded") != std::string::npos; }));
    const auto granted = publish_as_nobody();
    EXPECT_EQ(granted.status, 0) << granted.failure;
    {
        std::ofstream f(path("shmbusd.toml"));
        f << "[bus]\nacces_group = 1\n";
    }
    kill(daemon, SIGHUP);
    ASSERT_TRUE(eventually([&] { return read_file(path("daemon.log")).find("configuration not reloaded") != std::string::npos; }));
    EXPECT_NE(read_file(path("daemon.log")).find("shmbusd.toml:2: unknown key 'acces_group' in [bus]"), std::string::npos);
    const auto kept = publish_as_nobody();
    EXPECT_EQ(kept.status, 0) << kept.failure;
}

// A configuration shmbusd cannot use stops the start with status 2 and the file and line.
TEST_F(OtherUser, ABadConfigurationStopsTheStartNamingTheLine) {
    const std::string bad = path("bad.toml");
    for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
             {"[bus]\naccess_group = \"no-such-group-here\"\n", "bad.toml:2: access_group 'no-such-group-here': no such group"},
             {"[[acl]]\ntopics = [\"a\"]\npublish = [\"me\"]\n", "bad.toml:3: 'me' in 'publish' is not user:NAME|UID"},
             {"[bus\n", "bad.toml:1: "}}) {
        {
            std::ofstream f(bad);
            f << text;
        }
        const auto r = run({SHMBUSD_PATH, "--dir", path("other-bus"), "--config", bad}, "", std::chrono::seconds(10));
        EXPECT_EQ(r.code, 2) << text;
        EXPECT_NE((r.out + r.err).find(expected), std::string::npos) << r.out << r.err;
    }
    const auto missing = run({SHMBUSD_PATH, "--dir", path("other-bus"), "--config", path("none.toml")}, "", std::chrono::seconds(10));
    EXPECT_EQ(missing.code, 2);
    EXPECT_NE((missing.out + missing.err).find("cannot read configuration file"), std::string::npos) << missing.out;
}

}  // namespace
}  // namespace shmbus::test
