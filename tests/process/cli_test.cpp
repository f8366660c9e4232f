// The shmbus CLI from outside: commands, output formats and exit codes.
#include <nlohmann/json.hpp>

#include "bus_fixture.h"
#include "shmbus/version.h"

namespace shmbus::test {
namespace {

using Cli = BusTest;

TEST_F(Cli, HundredThousandMessagesRoundTripThroughPubAndSub) {
    const int total = 100000;
    {
        std::ofstream in(path("in.txt"));
        for (int i = 0; i < total; ++i) in << "message-" << i << "\n";
    }
    ASSERT_EQ(cli({"topic", "create", "rt", "--capacity", "16M"}).code, 0);
    const std::string ready = path("sub.ready");
    pid_t sub = spawn({SHMBUS_CLI_PATH, "--dir", dir, "sub", "rt", "--count", std::to_string(total)},
                      {path("sub.out"), path("sub.err")});
    ASSERT_TRUE(eventually([&] {
        auto c = connect();
        auto st = c ? c->topic_stats("rt") : Result<TopicStats>(Error{});
        return st && st->subscriptions.size() == 1;
    }));
    auto pub = cli({"pub", "rt"}, path("in.txt"));
    EXPECT_EQ(pub.code, 0) << pub.err;
    EXPECT_EQ(wait_exit(sub), 0) << read_file(path("sub.err"));
    EXPECT_EQ(read_file(path("sub.out")), read_file(path("in.txt")));
}

TEST_F(Cli, PubArgumentsAreMessagesAndSubFromEarliestPrintsThem) {
    EXPECT_EQ(cli({"pub", "news", "one", "two words", "three"}).code, 0);
    auto r = cli({"sub", "news", "--from", "earliest", "--count", "3"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "one\ntwo words\nthree\n");
}

TEST_F(Cli, SubJsonFormatHasIdTimestampAndPayload) {
    EXPECT_EQ(cli({"pub", "j", "hello", "wörld \"quoted\""}).code, 0);
    auto r = cli({"sub", "j", "--from", "0", "--count", "2", "--format", "json"});
    ASSERT_EQ(r.code, 0) << r.err;
    std::istringstream lines(r.out);
    std::string line;
    std::vector<nlohmann::json> objs;
    while (std::getline(lines, line)) objs.push_back(nlohmann::json::parse(line));
    ASSERT_EQ(objs.size(), 2u);
    EXPECT_EQ(objs[0]["id"], 0);
    EXPECT_EQ(objs[0]["payload"], "hello");
    EXPECT_EQ(objs[1]["id"], 1);
    EXPECT_EQ(objs[1]["payload"], "wörld \"quoted\"");
    EXPECT_GT(objs[1]["timestamp_ns"].get<uint64_t>(), 0u);
}

std::string framed(const std::vector<std::string>& payloads) {
    std::string out;
    for (const auto& p : payloads) {
        const auto n = uint32_t(p.size());
        out += {char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
        out += p;
    }
    return out;
}

std::string unbase64(const std::string& text) {
    static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    uint32_t bits = 0;
    int count = 0;
    for (char c : text) {
        if (c == '=') break;
        bits = bits << 6 | uint32_t(alphabet.find(c));
        if ((count += 6) >= 8) out += char((bits >> (count -= 8)) & 0xFF);
    }
    return out;
}

// Payloads with every byte value, NULs and newlines, an empty one, one that is not UTF-8.
std::vector<std::string> awkward_payloads() {
    std::vector<std::string> out{"", std::string("a\0b\nc", 5), "\xff\xfe\xfd", "plain", "caf\xc3\xa9"};
    std::string all;
    for (int b = 0; b < 256; ++b) all += char(b);
    out.push_back(all);
    return out;
}

TEST_F(Cli, LengthFramingCarriesAnyBytesThroughPubAndSub) {
    const auto payloads = awkward_payloads();
    std::ofstream(path("in.bin"), std::ios::binary) << framed(payloads);
    auto pub = cli({"pub", "bin", "--framing", "length"}, path("in.bin"));
    ASSERT_EQ(pub.code, 0) << pub.err;
    auto r = cli({"sub", "bin", "--from", "earliest", "--count", std::to_string(payloads.size()), "--framing", "length"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, framed(payloads));
    // JSON: UTF-8 payloads as they are, any other in base64, as payload_encoding says.
    r = cli({"sub", "bin", "--from", "earliest", "--count", std::to_string(payloads.size()), "--format", "json"});
    ASSERT_EQ(r.code, 0) << r.err;
    std::istringstream lines(r.out);
    std::string line;
    std::size_t i = 0;
    for (; std::getline(lines, line) && i < payloads.size(); ++i) {
        const auto j = nlohmann::json::parse(line);
        const std::string encoding = j["payload_encoding"];
        const std::string payload = j["payload"];
        EXPECT_EQ(encoding == "base64" ? unbase64(payload) : payload, payloads[i]) << line;
        EXPECT_EQ(encoding, i == 2 || i == 5 ? "base64" : "utf-8") << i;
    }
    EXPECT_EQ(i, payloads.size());
}

TEST_F(Cli, NulFramingCarriesNewlines) {
    std::ofstream(path("in.nul"), std::ios::binary) << std::string("one\ntwo\0three\0", 14);
    ASSERT_EQ(cli({"pub", "nul", "--framing", "nul"}, path("in.nul")).code, 0);
    auto r = cli({"sub", "nul", "--from", "earliest", "--count", "2", "--framing", "nul"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, std::string("one\ntwo\0three\0", 14));
}

TEST_F(Cli, ABrokenFrameOrAFramingThatCannotApplyIsRefused) {
    std::ofstream(path("cut.bin"), std::ios::binary) << std::string("\0\0\0\x09" "abc", 7);
    auto r = cli({"pub", "cut", "--framing", "length"}, path("cut.bin"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("ends inside a frame of 9 bytes"), std::string::npos) << r.err;
    std::ofstream(path("huge.bin"), std::ios::binary) << std::string("\x7f\0\0\0", 4);
    r = cli({"pub", "cut", "--framing", "length"}, path("huge.bin"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("exceeds the topic's max message"), std::string::npos) << r.err;
    EXPECT_EQ(cli({"pub", "cut", "--framing", "nul", "x"}).code, 2);
    EXPECT_EQ(cli({"sub", "cut", "--framing", "length", "--format", "json", "--count", "0"}).code, 2);
    EXPECT_EQ(cli({"sub", "cut", "--framing", "bytes", "--count", "0"}).code, 2);
}

TEST_F(Cli, SubFromAnIdStartsThere) {
    EXPECT_EQ(cli({"pub", "ids", "a", "b", "c", "d"}).code, 0);
    auto r = cli({"sub", "ids", "--from", "2", "--count", "2"});
    EXPECT_EQ(r.out, "c\nd\n");
    EXPECT_EQ(cli({"sub", "ids", "--from", "nope", "--count", "1"}).code, 2);
}

TEST_F(Cli, ADurableSubResumesAfterItsLastAckAcrossRuns) {
    EXPECT_EQ(cli({"pub", "q", "1", "2", "3", "4", "5"}).code, 0);
    auto a = cli({"sub", "q", "--durable", "w", "--from", "earliest", "--count", "2"});
    EXPECT_EQ(a.out, "1\n2\n");
    auto b = cli({"sub", "q", "--durable", "w", "--from", "earliest", "--count", "3"});  // --from ignored
    EXPECT_EQ(b.out, "3\n4\n5\n");
}

TEST_F(Cli, TopicCreateListInfoDelete) {
    EXPECT_EQ(cli({"topic", "create", "orders", "--capacity", "1M", "--max-message", "16K", "--on-full", "fail"}).code, 0);
    auto again = cli({"topic", "create", "orders"});
    EXPECT_EQ(again.code, 1);
    EXPECT_NE(again.err.find("already exists"), std::string::npos);
    ASSERT_EQ(cli({"sub", "orders", "--durable", "audit", "--count", "0"}).code, 0);
    EXPECT_EQ(cli({"pub", "orders", "x", "y"}).code, 0);

    auto info = cli({"topic", "info", "orders", "--json"});
    ASSERT_EQ(info.code, 0) << info.err;
    auto j = nlohmann::json::parse(info.out);
    EXPECT_EQ(j["name"], "orders");
    EXPECT_EQ(j["capacity"], 1 << 20);
    EXPECT_EQ(j["max_message"], 16 << 10);
    EXPECT_EQ(j["on_full"], "fail");
    EXPECT_EQ(j["producers"], 0);
    EXPECT_EQ(j["published"], 2);
    ASSERT_EQ(j["subscriptions"].size(), 1u);
    EXPECT_EQ(j["subscriptions"][0]["name"], "audit");
    EXPECT_EQ(j["subscriptions"][0]["kind"], "durable");
    EXPECT_EQ(j["subscriptions"][0]["state"], "detached");
    EXPECT_EQ(j["subscriptions"][0]["lag"], 2);
    EXPECT_EQ(j["subscriptions"][0]["lost"], 0);
    // Keys say what they hold: ids are ids, positions are log bytes.
    EXPECT_EQ(j["subscriptions"][0]["next_id"], 0);
    EXPECT_EQ(j["subscriptions"][0]["ack_position"], 0);
    EXPECT_EQ(j["tail_position"], 2 * 64);  // two records of 64 bytes
    EXPECT_EQ(j["subscriptions"][0]["lag_bytes"], 2 * 64);
    EXPECT_FALSE(j.contains("next_id"));
    EXPECT_FALSE(j["subscriptions"][0].contains("position"));
    // Every statistic of the tables is reported, under its key.
    for (const auto& s : topic_statistics()) EXPECT_TRUE(j.contains(s.key)) << s.key;
    for (const auto& s : recovery_statistics()) EXPECT_TRUE(j["recovery"].contains(s.key)) << s.key;
    for (const auto& s : subscription_statistics()) EXPECT_TRUE(j["subscriptions"][0].contains(s.key)) << s.key;

    EXPECT_EQ(cli({"topic", "create", "alpha"}).code, 0);
    auto list = cli({"topic", "list", "--json"});
    ASSERT_EQ(list.code, 0);
    auto l = nlohmann::json::parse(list.out);
    ASSERT_EQ(l.size(), 2u);
    EXPECT_EQ(l[0]["name"], "alpha");
    EXPECT_EQ(l[1]["name"], "orders");
    EXPECT_EQ(l[0]["on_full"], "block");
    auto text = cli({"topic", "list"});
    EXPECT_NE(text.out.find("orders"), std::string::npos);
    auto names = cli({"topic", "list", "--names"});
    EXPECT_EQ(names.code, 0);
    EXPECT_EQ(names.out, "alpha\norders\n");  // one name a line, nothing else
    EXPECT_EQ(cli({"topic", "list", "--names", "--json"}).code, 2);

    EXPECT_EQ(cli({"topic", "delete", "orders"}).code, 0);
    auto gone = cli({"topic", "info", "orders"});
    EXPECT_EQ(gone.code, 1);
    EXPECT_NE(gone.err.find("no topic named 'orders'"), std::string::npos);
    EXPECT_EQ(cli({"topic", "delete", "orders"}).code, 1);
}

TEST_F(Cli, SizesAcceptSuffixesAndRejectNonsense) {
    EXPECT_EQ(cli({"topic", "create", "s", "--capacity", "64K"}).code, 0);
    auto j = nlohmann::json::parse(cli({"topic", "info", "s", "--json"}).out);
    EXPECT_EQ(j["capacity"], 65536);
    EXPECT_EQ(j["max_message"], 8160);
    auto bad = cli({"topic", "create", "s2", "--capacity", "12Q"});
    EXPECT_EQ(bad.code, 2);
    EXPECT_NE(bad.err.find("invalid capacity"), std::string::npos);
    EXPECT_EQ(cli({"topic", "create", "s3", "--on-full", "drop"}).code, 2);
    auto toobig = cli({"topic", "create", "s4", "--capacity", "64K", "--max-message", "64K"});
    EXPECT_EQ(toobig.code, 1);
    EXPECT_NE(toobig.err.find("max message"), std::string::npos);
}

TEST_F(Cli, RecoverySettingsAndCountsShowInTopicInfo) {
    EXPECT_EQ(cli({"topic", "create", "r", "--unblock-timeout", "250ms", "--expire-detached", "2h"}).code, 0);
    auto j = nlohmann::json::parse(cli({"topic", "info", "r", "--json"}).out);
    EXPECT_EQ(j["unblock_timeout_ms"], 250);
    EXPECT_EQ(j["expire_detached_ms"], 2 * 3600 * 1000);
    for (const char* counter : {"dead_claims_sealed", "stalled_claims_unblocked", "late_commits_refused", "producers_released",
                                "subscribers_freed", "subscribers_detached", "cursors_expired", "owners_dead_at_restart"})
        EXPECT_EQ(j["recovery"][counter], 0) << counter;
    const std::string text = cli({"topic", "info", "r"}).out;
    EXPECT_NE(text.find("unblock-timeout 250ms, expire-detached 2h"), std::string::npos) << text;
    EXPECT_NE(text.find("recovery: 0 dead claims sealed"), std::string::npos) << text;
    // A detached durable subscription shows how long it has left.
    EXPECT_EQ(cli({"sub", "r", "--durable", "gone", "--count", "0"}).code, 0);
    j = nlohmann::json::parse(cli({"topic", "info", "r", "--json"}).out);
    ASSERT_EQ(j["subscriptions"].size(), 1u);
    EXPECT_EQ(j["subscriptions"][0]["state"], "detached");
    EXPECT_GT(j["subscriptions"][0]["expires_in_ms"].get<int64_t>(), 7000 * 1000);
    // Defaults: off and never.
    EXPECT_EQ(cli({"topic", "create", "d"}).code, 0);
    j = nlohmann::json::parse(cli({"topic", "info", "d", "--json"}).out);
    EXPECT_EQ(j["unblock_timeout_ms"], 0);
    EXPECT_EQ(j["expire_detached_ms"], 0);
    EXPECT_NE(cli({"topic", "info", "d"}).out.find("unblock-timeout off, expire-detached never"), std::string::npos);
    // Nonsense is a usage error before anything is asked of shmbusd; a value the bus refuses is its error.
    auto bad = cli({"topic", "create", "x", "--unblock-timeout", "soon"});
    EXPECT_EQ(bad.code, 2);
    EXPECT_NE(bad.err.find("invalid unblock timeout 'soon'"), std::string::npos) << bad.err;
    EXPECT_EQ(cli({"topic", "create", "x", "--expire-detached", "5"}).code, 2);  // a unit is required
    auto tiny = cli({"topic", "create", "x", "--unblock-timeout", "1ms"});
    EXPECT_EQ(tiny.code, 1);
    EXPECT_NE(tiny.err.find("at least 10 ms"), std::string::npos) << tiny.err;
}

TEST_F(Cli, GcReportsWhatItRemoved) {
    auto r = cli({"gc"});
    EXPECT_EQ(r.code, 0);
    EXPECT_NE(r.out.find("stale item(s) removed"), std::string::npos) << r.out;
    auto j = nlohmann::json::parse(cli({"gc", "--json"}).out);
    EXPECT_TRUE(j["removed"].is_array());
    EXPECT_EQ(j["count"], j["removed"].size());
}

TEST_F(Cli, UsageErrorsExitTwo) {
    EXPECT_EQ(cli({}).code, 2);
    EXPECT_EQ(cli({"frobnicate"}).code, 2);
    EXPECT_EQ(cli({"pub"}).code, 2);
    EXPECT_EQ(cli({"--help"}).code, 0);
}

TEST_F(Cli, EveryToolSaysItsVersionAndShmbusdRefusesBadArgumentsWithTwo) {
    const auto cli_version = run({SHMBUS_CLI_PATH, "--version"});
    EXPECT_EQ(cli_version.code, 0);
    EXPECT_EQ(cli_version.out, std::string("shmbus ") + kVersion + "\n");
    const auto daemon_version = run({SHMBUSD_PATH, "--version"});
    EXPECT_EQ(daemon_version.code, 0);
    EXPECT_EQ(daemon_version.out, std::string("shmbusd ") + kVersion + "\n");
    const auto bad = run({SHMBUSD_PATH, "--no-such-option"});
    EXPECT_EQ(bad.code, 2);
    EXPECT_NE((bad.out + bad.err).find("--no-such-option"), std::string::npos);
}

// A full block topic: pub waits --timeout, then names the durable subscription holding it back.
TEST_F(Cli, APublishThatStaysBlockedNamesWhatHoldsItBack) {
    ASSERT_EQ(cli({"topic", "create", "small", "--capacity", "4K"}).code, 0);
    ASSERT_EQ(cli({"sub", "small", "--durable", "audit", "--count", "0"}).code, 0);  // never reads
    std::vector<std::string> args{"pub", "small", "--timeout", "200ms"};
    for (int i = 0; i < 100; ++i) args.push_back("message " + std::to_string(i));
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = cli(args);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("timed_out (topic stayed full for 200ms); held back by durable subscription 'audit' (detached, "),
              std::string::npos)
        << r.err;
    EXPECT_EQ(cli({"pub", "small", "--timeout", "soon", "x"}).code, 2);
}

}  // namespace
}  // namespace shmbus::test
