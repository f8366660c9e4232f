// Compacted topics through real processes: a subscriber from the latest message per key after a
// million updates of 10,000 keys in a ring that holds a few thousand, with tombstones, while the
// archiver is SIGKILLed mid-compaction; the same after a simulated reboot; eviction past max_keys
// and the CLI's errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <fstream>
#include <map>
#include <sstream>
#include <random>
#include <string>
#include <thread>

#include "archive_fixture.h"

namespace {

using namespace shmbus;
using namespace shmbus::test;
using namespace std::chrono_literals;

class Compacted : public Archive {
protected:
    static constexpr uint32_t kKeys = 10'000;
    static constexpr uint32_t kUpdates = 1'000'000;

    static std::string key_name(uint32_t k) { return "key-" + std::to_string(k); }
    // An update's payload names it (its index), so the newest of a key can be told from the others.
    static std::string payload_of(uint32_t update) { return "update " + std::to_string(update); }

    // What the latest message of each key must be: the payload of its last update, or none if its
    // last update was a tombstone.
    std::map<std::string, std::optional<std::string>> model;

    // Publishes kUpdates updates over kKeys keys in a shuffled order, every 97th a tombstone, and
    // at the end a tombstone for every key divisible by 50 (200 keys deleted for certain).
    // `during` runs every 50,000 updates.
    template <class During>
    void publish_updates(const std::string& topic, During during) {
        auto c = connect();
        ASSERT_TRUE(c);
        auto pub = c->publisher(topic);
        ASSERT_TRUE(pub);
        std::mt19937 rng(42);
        for (uint32_t i = 0; i < kUpdates + kKeys / 50; ++i) {
            const uint32_t k = i < kUpdates ? uint32_t(rng() % kKeys) : (i - kUpdates) * 50;
            const bool tombstone = i >= kUpdates || i % 97 == 0;
            const std::string key = key_name(k), payload = tombstone ? std::string() : payload_of(i);
            MessageOptions o;
            o.key = key;
            ASSERT_EQ(pub->publish(std::string_view(payload), o), PublishStatus::ok) << "update " << i;
            model[key] = tombstone ? std::nullopt : std::optional<std::string>(payload);
            if (i % 50'000 == 49'999) during();
        }
    }

    // Subscribes from the latest message per key and checks what comes before the stream goes
    // quiet: exactly one message per live key, each its newest; no deleted key.
    void expect_latest_per_key(const std::string& topic) {
        auto c = connect();
        ASSERT_TRUE(c);
        SubscribeOptions so;
        so.from = StartFrom::latest_per_key;
        const auto t0 = std::chrono::steady_clock::now();
        auto sub = c->subscribe(topic, so);
        ASSERT_TRUE(sub) << sub.error().message;
        std::map<std::string, std::string> got;
        uint64_t repeats = 0, lost = 0, previous_id = 0;
        bool ordered = true, first = true;
        for (;;) {
            const PollResult r = sub->receive(
                [&](const Message& m) {
                    if (!first && m.id <= previous_id) ordered = false;
                    first = false;
                    previous_id = m.id;
                    lost += m.lost_before;
                    if (!got.emplace(std::string(m.key), std::string(m.text())).second) ++repeats;
                },
                500ms, 4096);
            if (r.status != ReceiveStatus::ok) break;
        }
        const auto took = std::chrono::steady_clock::now() - t0;
        std::size_t live = 0, wrong = 0, deleted_seen = 0;
        for (const auto& [key, latest] : model) {
            if (!latest) {
                deleted_seen += got.count(key);
                continue;
            }
            ++live;
            const auto it = got.find(key);
            if (it == got.end() || it->second != *latest) ++wrong;
        }
        EXPECT_EQ(got.size(), live);
        EXPECT_EQ(wrong, 0u);
        EXPECT_EQ(deleted_seen, 0u);
        EXPECT_EQ(repeats, 0u);
        EXPECT_EQ(lost, 0u);
        EXPECT_TRUE(ordered) << "the latest messages come in id order";
        EXPECT_GE(live, kKeys - kKeys / 50 - 200u);  // most keys are alive, 200 at least deleted
        std::printf("latest per key: %zu live keys in %.1f ms (with the 500 ms of quiet that ends the read)\n", live,
                    std::chrono::duration<double, std::milli>(took).count());
    }
};

// 1,000,000 updates of 10,000 keys through a 256 KiB ring (it holds the last 4,096: 64 B each) with 1 MiB
// archive files, the archiver SIGKILLed every 100,000 updates (mid-compaction or mid-write) and
// once more at the end; then a reboot. Both times: one message per live key, the newest; the archive
// compacted to a fraction of what was published and whole.
TEST_F(Compacted, TheLatestMessageOfEveryLiveKeyAfterAMillionUpdatesAndAfterAReboot) {
    TopicConfig config;
    config.capacity = 256 << 10;
    ArchiveSettings settings;
    settings.compact = true;
    settings.file_bytes = 1 << 20;
    make_archived("prices", config, settings);
    int kills = 0;
    publish_updates("prices", [&] {
        if (++kills % 2 == 0)
            if (auto pid = archiver_pid("prices")) ::kill(*pid, SIGKILL);
    });
    ASSERT_TRUE(eventually([&] { return archived_last_id("prices") == uint64_t(kUpdates + kKeys / 50 - 1); }, 60s));
    // Killed once more with everything archived: the restarted archiver finds the dead records
    // itself. Compaction runs once a second over closed files: the archive shrinks to about the
    // live keys plus the file being written.
    if (auto pid = archiver_pid("prices")) ::kill(*pid, SIGKILL);
    auto c = connect();
    ASSERT_TRUE(c);
    ASSERT_TRUE(eventually(
        [&] {
            auto info = c->archive_info("prices");
            return info && info->records < 100'000;
        },
        30s))
        << read_file(path("daemon.log"));
    expect_latest_per_key("prices");
    auto verified = c->verify_archive("prices");
    ASSERT_TRUE(verified);
    EXPECT_TRUE(verified->ok()) << verified->damage.front();

    stop_daemon();
    remove_segments("prices");
    start_daemon();
    ASSERT_TRUE(stats("prices")) << read_file(path("daemon.log"));
    expect_latest_per_key("prices");
}

// Past max_keys the key updated longest ago goes; a tombstone deletes its key; the CLI shows the
// key, and refuses what cannot be.
TEST_F(Compacted, TheCliKeepsAtMostMaxKeysAndRefusesWhatCannotBe) {
    auto r = cli({"topic", "create", "basket", "--compact", "--max-keys", "3", "--capacity", "4K", "--archive-file-size", "4K"});
    ASSERT_EQ(r.code, 0) << r.err;
    std::string lines;
    for (int i = 1; i <= 2000; ++i) lines += "k" + std::to_string(i % 5) + ":v" + std::to_string(i) + "\n";
    lines += "k0:\n";  // deletes k0
    std::ofstream(path("updates")) << lines;
    r = cli({"pub", "basket", "--key-separator", ":"}, path("updates"));
    ASSERT_EQ(r.code, 0) << r.err;
    // The last updates: k2 v1997, k3 v1998, k4 v1999, k0 v2000, then k0 deleted. At most 3 keys:
    // k2 was evicted when k0 came, and a deletion brings no evicted key back: left k3 and k4.
    r = cli({"sub", "basket", "--from", "latest-per-key", "--count", "2", "--format", "json"});
    ASSERT_EQ(r.code, 0) << r.err;
    std::vector<std::pair<std::string, std::string>> got;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        got.emplace_back(j["key"], j["payload"]);
    }
    const std::vector<std::pair<std::string, std::string>> want{{"k3", "v1998"}, {"k4", "v1999"}};
    EXPECT_EQ(got, want) << r.out;
    r = cli({"archive", "info", "basket", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto info = nlohmann::json::parse(r.out);
    EXPECT_EQ(info["settings"]["compact"], true);
    EXPECT_EQ(info["settings"]["max_keys"], 3);
    r = cli({"topic", "info", "basket", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto topic = nlohmann::json::parse(r.out);
    EXPECT_EQ(topic["compacted"], true);
    EXPECT_EQ(topic["max_keys"], 3);
    r = cli({"topic", "info", "basket"});
    EXPECT_NE(r.out.find("compacted: the latest message of each key, at most 3 keys"), std::string::npos) << r.out;

    EXPECT_EQ(cli({"topic", "create", "x", "--max-keys", "3"}).code, 2);
    EXPECT_EQ(cli({"topic", "create", "x", "--compact", "--retain", "1M"}).code, 2);
    EXPECT_EQ(cli({"topic", "create", "x", "--compact", "--no-timestamps"}).code, 2);
    ASSERT_EQ(cli({"topic", "create", "plain", "--archive"}).code, 0);
    r = cli({"topic", "info", "plain", "--json"});
    EXPECT_EQ(nlohmann::json::parse(r.out)["compacted"], false) << r.out;
    r = cli({"sub", "plain", "--from", "latest-per-key", "--count", "1"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("not compacted"), std::string::npos) << r.err;
    r = cli({"sub", "basket", "--from", "latest-per-key", "--group", "g", "--count", "1"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("latest message per key"), std::string::npos) << r.err;
}

}  // namespace
