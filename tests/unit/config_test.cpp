// The configuration file and the access rules it carries: what parses, what is refused (with
// the line), and who the rules let do what.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "access_control.h"
#include "archives/archives.h"
#include "config.h"
#include "toml_values.h"
#include "topic_settings_toml.h"
#include "core/untrusted_files.h"

namespace shmbus::daemon {
namespace {

Config parse_ok(const std::string& text) {
    auto c = parse_config(text, "test.toml");
    EXPECT_TRUE(c.has_value()) << c.error().message;
    return c ? c.value() : Config{};
}

std::string parse_error(const std::string& text) {
    auto c = parse_config(text, "test.toml");
    EXPECT_FALSE(c.has_value());
    return c ? std::string() : c.error().message;
}

TEST(Config, AFullFileParses) {
    const Config c = parse_ok(R"(
[bus]
dir = "/run/shmbus"
log_level = "warn"
access_group = "0"

[[acl]]
topics = ["prices", "public.*"]
publish = ["user:root"]
subscribe = ["group:0", "user:65534"]
admin = []
)");
    EXPECT_EQ(c.dir, "/run/shmbus");
    EXPECT_EQ(c.log_level, "warn");
    ASSERT_TRUE(c.access_group.has_value());
    EXPECT_EQ(*c.access_group, 0u);
    ASSERT_EQ(c.acl.size(), 1u);
    EXPECT_EQ(c.acl[0].line, 7u);
    EXPECT_EQ(c.acl[0].topics, (std::vector<std::string>{"prices", "public.*"}));
    ASSERT_EQ(c.acl[0].publish.size(), 1u);
    EXPECT_EQ(c.acl[0].publish[0].id, 0u);  // root, resolved by name
    EXPECT_EQ(c.acl[0].subscribe[1].kind, Principal::Kind::user);
    EXPECT_EQ(c.acl[0].subscribe[1].id, 65534u);
}

TEST(Config, AnEmptyFileIsTheDefault) {
    const Config c = parse_ok("");
    EXPECT_TRUE(c.acl.empty());
    EXPECT_FALSE(c.access_group.has_value());
}

TEST(Config, EveryMistakeNamesItsLine) {
    EXPECT_EQ(parse_error("[bus]\n\nacces_group = \"x\"\n"),
              "test.toml:3: unknown key 'acces_group' in [bus] (known: dir, state_dir, log_level, log, access_group, metrics)");
    EXPECT_EQ(parse_error("[busses]\n"), "test.toml:1: unknown table or key 'busses' (known: [bus], [defaults], [topics.NAME], [[acl]], [bridge])");
    EXPECT_EQ(parse_error("[bus]\ndir = 3\n"), "test.toml:2: 'dir' must be a string");
    EXPECT_EQ(parse_error("[bus]\ndir = \"relative\"\n"), "test.toml:2: 'dir' must be an absolute path");
    EXPECT_EQ(parse_error("[bus]\nlog_level = \"loud\"\n"),
              "test.toml:2: 'log_level' must be one of trace, debug, info, warn, error, critical, off");
    EXPECT_EQ(parse_error("[[acl]]\ntopics = [\"a\"]\npublish = [\"alice\"]\n"),
              "test.toml:3: 'alice' in 'publish' is not user:NAME|UID or group:NAME|GID");
    EXPECT_EQ(parse_error("[[acl]]\ntopics = [\"a\"]\nsubscribe = [\"user:no-such-user-here\"]\n"),
              "test.toml:3: 'user:no-such-user-here' in 'subscribe': no such user");
    EXPECT_EQ(parse_error("[[acl]]\npublish = []\n"), "test.toml:1: [[acl]] entry 1 has no 'topics'");
    EXPECT_EQ(parse_error("[[acl]]\ntopics = []\n"), "test.toml:2: 'topics' is empty: the entry would match nothing");
    EXPECT_EQ(parse_error("[[acl]]\ntopics = [\"a/b\"]\n"),
              "test.toml:2: topic pattern 'a/b' has a character no topic name has: '/'");
    EXPECT_EQ(parse_error("[[acl]]\ntopics = [\"a\"]\nread = []\n"),
              "test.toml:3: unknown key 'read' in [[acl]] (known: topics, publish, subscribe, admin)");
    EXPECT_EQ(parse_error("[bus]\naccess_group = \"no-such-group-here\"\n"),
              "test.toml:2: access_group 'no-such-group-here': no such group");
    // TOML syntax errors come from the parser, with their line.
    EXPECT_EQ(parse_error("[bus]\ndir = \n").rfind("test.toml:2: ", 0), 0u);
}

TEST(Config, TopicSettingsAreCheckedLikeTheCli) {
    const Config c = parse_ok("[topics.big]\ncapacity = \"1G\"\n[defaults]\nmax_message = 1024\nunblock_timeout = \"50ms\"\n");
    ASSERT_TRUE(c.defaults.has_value());
    EXPECT_EQ(c.defaults->max_message, 1024u);
    EXPECT_EQ(c.topics.at("big").capacity, 1u << 30);
    EXPECT_EQ(c.topics.at("big").max_message, 1024u);  // over [defaults], wherever it stands in the file
    EXPECT_EQ(c.topics.at("big").unblock_timeout, std::chrono::milliseconds(50));
    EXPECT_EQ(parse_error("[defaults]\ncapacity = \"lots\"\n"),
              "test.toml:2: 'capacity' is not a size (use bytes or a suffix: 64K, 16M, 1G)");
    EXPECT_EQ(parse_error("[topics.\"a b\"]\ncapacity = \"1M\"\n").rfind("test.toml:1: invalid topic name 'a b'", 0), 0u);
    EXPECT_EQ(parse_error("[topics.t]\nspeed = 1\n").rfind("test.toml:2: unknown key 'speed' in [topics.t]", 0), 0u);
    EXPECT_EQ(parse_error("[topics.t]\non_full = \"drop\"\n"), "test.toml:2: 'on_full' must be block, fail, overwrite or archive");
    EXPECT_EQ(parse_error("[topics.t]\nunblock_timeout = \"1ms\"\n").rfind("test.toml:1: [topics.t]: ", 0), 0u);
}

TEST(Config, ArchivedTopicsAndTheStateDirectory) {
    const Config c = parse_ok("[bus]\nstate_dir = \"/var/lib/x\"\n[topics.orders]\narchive = true\nretain = \"10G\"\n"
                              "retain_time = \"7d\"\nfsync = \"interval\"\narchive_file_size = \"16M\"\n"
                              "[topics.feed]\non_full = \"archive\"\n[topics.plain]\ncapacity = \"1M\"\n");
    EXPECT_EQ(c.state_dir, "/var/lib/x");
    ASSERT_EQ(c.archives.size(), 2u);
    const ArchiveSettings& a = c.archives.at("orders");
    EXPECT_EQ(a.retain_bytes, 10ull << 30);
    EXPECT_EQ(a.retain_time, std::chrono::hours(24 * 7));
    EXPECT_EQ(a.fsync, ArchiveFsync::interval);
    EXPECT_EQ(a.file_bytes, 16u << 20);
    EXPECT_EQ(c.topics.at("feed").on_full, OnFull::archive);
    EXPECT_EQ(c.archives.at("feed"), ArchiveSettings{});  // on_full archive implies the archive
    EXPECT_EQ(c.archives.count("plain"), 0u);
    EXPECT_EQ(parse_error("[topics.t]\nretain = \"1G\"\n"),
              "test.toml:1: [topics.t]: retain, retain_time, fsync and archive_file_size need archive = true");
    EXPECT_EQ(parse_error("[topics.t]\narchive = true\nfsync = \"sometimes\"\n"),
              "test.toml:3: 'fsync' must be never, interval or always");
    EXPECT_EQ(parse_error("[defaults]\narchive = true\n"), "test.toml:2: 'archive' belongs in a [topics.NAME] table, not in [defaults]");
    EXPECT_EQ(parse_error("[bus]\nstate_dir = \"relative\"\n"), "test.toml:2: 'state_dir' must be an absolute path");
}

TEST(Config, ACompactedTopicIsArchivedAndItsMistakesNamed) {
    const Config c = parse_ok("[topics.prices]\ncompact = true\nmax_keys = 500\n[topics.stock]\ncompact = true\n");
    ASSERT_EQ(c.archives.size(), 2u);
    EXPECT_TRUE(c.archives.at("prices").compact);
    EXPECT_EQ(c.archives.at("prices").max_keys, 500u);
    EXPECT_EQ(kept_keys(c.archives.at("stock")), kDefaultMaxKeys);
    EXPECT_EQ(parse_error("[topics.t]\nmax_keys = 5\n"), "test.toml:1: [topics.t]: max_keys needs compact = true");
    EXPECT_EQ(parse_error("[topics.t]\ncompact = true\nretain = \"1G\"\n"),
              "test.toml:1: [topics.t]: a compacted topic keeps every live key: retain and retain_time do not apply to it");
    EXPECT_EQ(parse_error("[topics.t]\ncompact = true\narchive = false\n"),
              "test.toml:1: [topics.t]: compact = true needs the archive (archive = false)");
    EXPECT_EQ(parse_error("[topics.t]\ncompact = true\ntimestamps = false\n"),
              "test.toml:1: [topics.t]: an archive is searched by time, so a topic with timestamps = false cannot be archived");
    EXPECT_EQ(parse_error("[topics.t]\ncompact = 1\n"), "test.toml:2: 'compact' must be true or false");
    EXPECT_EQ(parse_error("[topics.t]\ncompact = true\nmax_keys = 0\n"), "test.toml:3: 'max_keys' must be a positive whole number");
}

// One schema: what shmbusd writes for an archived topic (topic.toml) reads back as the same
// settings through the parser of the configuration file's [topics.NAME] tables.
TEST(Config, TopicSettingsWrittenAreReadBackTheSame) {
    TopicConfig c;
    c.capacity = 1 << 20;
    c.max_message = 4096;
    c.on_full = OnFull::fail;
    c.max_producers = 3;
    c.max_consumers = 17;
    c.unblock_timeout = std::chrono::nanoseconds(12'345'678);  // not whole milliseconds: written exactly
    c.expire_detached = std::chrono::hours(2);
    c.single_producer = true;
    ArchiveSettings a;
    a.retain_bytes = 5 << 20;
    a.retain_time = std::chrono::minutes(90);
    a.fsync = ArchiveFsync::always;
    a.file_bytes = 256 << 10;
    ArchiveSettings compacted;
    compacted.compact = true;
    compacted.max_keys = 5000;
    for (const auto& archive : {std::optional<ArchiveSettings>{}, std::optional<ArchiveSettings>{a},
                                std::optional<ArchiveSettings>{compacted}}) {
        const toml::table t = shmbus::daemon::topic_settings_table(c, archive);
        std::optional<ArchiveSettings> read;
        TopicConfig back;
        try {
            back = shmbus::daemon::parse_topic_settings("topic.toml", t, TopicConfig{}, "[topic]", &read);
        } catch (const shmbus::daemon::ConfigError& e) {
            FAIL() << e.message;
        }
        EXPECT_EQ(back, c);
        EXPECT_EQ(read.has_value(), archive.has_value());
        if (read && archive) {
            EXPECT_EQ(*read, *archive);
        }
    }
}

// Each bus its own state directory by default: the default bus keeps the base, any other gets one
// under buses/, unless the base already holds its archived topics (made before this default).
TEST(StateDirectory, EachBusHasItsOwnByDefault) {
    using shmbus::daemon::state_dir_for;
    char tmpl[] = "/tmp/shmbus-state-test-XXXXXX";
    const std::string base = mkdtemp(tmpl);
    EXPECT_EQ(state_dir_for(base, "/run/shmbus", "/run/shmbus"), base);
    EXPECT_EQ(state_dir_for(base, "/run/other bus", "/run/shmbus"), base + "/buses/%2Frun%2Fother%20bus");
    EXPECT_NE(state_dir_for(base, "/run/a", "/run/shmbus"), state_dir_for(base, "/run/b", "/run/shmbus"));
    const std::string long_dir = "/" + std::string(300, 'x');
    EXPECT_LE(state_dir_for(base, long_dir, "/").size(), base.size() + 8 + 200);
    EXPECT_NE(state_dir_for(base, long_dir, "/"), state_dir_for(base, long_dir + "y", "/"));
    // An archived topic of /run/older in the base (the old shared default) keeps it there...
    std::filesystem::create_directories(base + "/topics/t");
    {
        std::ofstream f(base + "/topics/t/topic.toml");
        f << "bus_dir = '/run/older'\n[topic]\non_full = 'archive'\n";
    }
    ::chmod((base + "/topics/t/topic.toml").c_str(), 0600);
    EXPECT_EQ(state_dir_for(base, "/run/older", "/run/shmbus"), base);
    EXPECT_EQ(state_dir_for(base, "/run/newer", "/run/shmbus"), base + "/buses/%2Frun%2Fnewer");
    // ...until it has a directory of its own.
    std::filesystem::create_directories(base + "/buses/%2Frun%2Folder");
    EXPECT_EQ(state_dir_for(base, "/run/older", "/run/shmbus"), base + "/buses/%2Frun%2Folder");
    std::filesystem::remove_all(base);
}

TEST(Config, AnUnclosedSetInAPatternIsAnError) {
    EXPECT_EQ(parse_error("[[acl]]\ntopics = [\"a[\"]\n"), "test.toml:2: topic pattern 'a[' has a '[' that no ']' closes");
    EXPECT_EQ(parse_error("[[acl]]\ntopics = [\"a[!]\"]\n"), "test.toml:2: topic pattern 'a[!]' has a '[' that no ']' closes");
    EXPECT_EQ(parse_ok("[[acl]]\ntopics = [\"a[]x]\", \"b[!c]*\", \"c]\"]\n").acl.size(), 1u);
}

// Text that would exhaust toml++'s stack is refused before it is parsed, with the line; text
// that merely looks alike (dots in strings, comments and numbers) is not.
TEST(Config, TextDeepEnoughToExhaustTheParserIsRefusedFirst) {
    std::string dotted = "[k";
    for (int i = 0; i < 50'000; ++i) dotted += ".k";
    dotted += "]\n";
    EXPECT_EQ(parse_error("# a comment\n" + dotted), "test.toml: line 2: a key or table name of more than 32 dotted parts");
    std::string nested = "[bus]\nx = ";
    for (int i = 0; i < 10'000; ++i) nested += "[";
    EXPECT_EQ(parse_error(nested), "test.toml: line 2: arrays or tables nested more than 32 deep");
    EXPECT_EQ(parse_error(std::string(detail::kMaxTomlBytes + 1, ' ')).rfind("test.toml: it is 1048577 bytes, more than the 1048576 allowed", 0), 0u);
    std::string fine = "[bus]\nlog_level = \"" + std::string(100, '.') + "\" # " + std::string(100, '.') + "\n";
    EXPECT_EQ(parse_error(fine), "test.toml:2: 'log_level' must be one of trace, debug, info, warn, error, critical, off");
    EXPECT_EQ(parse_ok("[defaults]\ncapacity = \"1MiB\"\n[topics.a-b]\nmax_message = \"1KiB\"\n").topics.size(), 1u);
}

// A group whose /etc/group line is longer than a first lookup buffer (4 KiB) is still a group:
// the lookup grows its buffer on ERANGE. The test adds such a group for its own duration.
TEST(Config, AGroupWithALongEntryIsFound) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: adds a line to /etc/group";
    const std::string name = "shmbus-long-" + std::to_string(getpid());
    std::string line = name + ":x:64321:";
    for (int i = 0; i < 1500; ++i) line += (i ? ",member" : "member") + std::to_string(i);
    ASSERT_GT(line.size(), 8192u);
    struct Restore {
        std::string saved = read_whole("/etc/group");
        ~Restore() { std::ofstream("/etc/group", std::ios::trunc) << saved; }
        static std::string read_whole(const char* path) {
            std::ifstream f(path);
            return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
        }
    } restore;
    ASSERT_FALSE(restore.saved.empty());
    std::ofstream("/etc/group", std::ios::app) << (restore.saved.back() == '\n' ? "" : "\n") << line << "\n";
    EXPECT_EQ(parse_ok("[bus]\naccess_group = \"" + name + "\"\n").access_group, std::optional<gid_t>(64321));
}

TEST(Config, AMissingFileIsAClearError) {
    auto c = load_config("/nonexistent/shmbusd.toml");
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().message, "cannot read configuration file /nonexistent/shmbusd.toml");
}

constexpr uid_t kOwner = 1000;

AccessControl rules(const std::string& text) { return AccessControl(kOwner, parse_ok(text).acl); }

Identity user(uid_t uid, gid_t gid = 5000, std::vector<gid_t> groups = {}) { return {uid, gid, std::move(groups)}; }

TEST(AccessRules, TheOwnerAndRootMayDoEverythingAndNobodyElseWithoutARule) {
    const AccessControl none(kOwner);
    for (Operation op : {Operation::publish, Operation::subscribe, Operation::admin, Operation::observe}) {
        EXPECT_TRUE(none.check(user(kOwner), "t", op).allowed);
        EXPECT_TRUE(none.check(user(0), "t", op).allowed);
        const Decision d = none.check(user(2000), "t", op);
        EXPECT_FALSE(d.allowed);
        EXPECT_EQ(d.rule, "no acl entry matches");
    }
}

TEST(AccessRules, TheFirstMatchingEntryDecides) {
    const AccessControl acl = rules(R"(
[[acl]]
topics = ["public.secret"]
subscribe = ["user:2001"]
[[acl]]
topics = ["public.*"]
subscribe = ["user:2000", "user:2001"]
publish = ["group:300"]
)");
    EXPECT_TRUE(acl.check(user(2000), "public.news", Operation::subscribe).allowed);
    EXPECT_FALSE(acl.check(user(2000), "public.secret", Operation::subscribe).allowed);  // entry 1 matched first
    EXPECT_EQ(acl.check(user(2000), "public.secret", Operation::subscribe).rule, "acl entry 1 (line 2)");
    EXPECT_TRUE(acl.check(user(2001), "public.secret", Operation::subscribe).allowed);
    EXPECT_FALSE(acl.check(user(2000), "public.news", Operation::publish).allowed);
    EXPECT_FALSE(acl.check(user(2000), "publicnews", Operation::subscribe).allowed);  // the '.' is literal
    EXPECT_TRUE(acl.check(user(2000), "public.news", Operation::observe).allowed);     // any right lets it see the topic
    EXPECT_FALSE(acl.check(user(2000), "public.news", Operation::admin).allowed);
}

TEST(AccessRules, GroupsCountAsPrimaryOrSupplementary) {
    const AccessControl acl = rules("[[acl]]\ntopics = [\"*\"]\npublish = [\"group:300\"]\nadmin = [\"group:301\"]\n");
    EXPECT_TRUE(acl.check(user(2000, 300), "t", Operation::publish).allowed);
    EXPECT_TRUE(acl.check(user(2000, 5000, {7, 300}), "t", Operation::publish).allowed);
    EXPECT_FALSE(acl.check(user(2000, 5000, {7}), "t", Operation::publish).allowed);
    EXPECT_TRUE(acl.holds_anywhere(user(2000, 5000, {301}), Operation::admin));
    EXPECT_FALSE(acl.holds_anywhere(user(2000, 300), Operation::admin));
}

}  // namespace
}  // namespace shmbus::daemon
