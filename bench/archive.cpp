// shmbus-bench: archived topics (docs/archive.md), in one run beside the disk's own floor.
//
//   Archive/disk_floor                 1 MiB sequential writes to a file in the state directory,
//                                      as `dd bs=1M` would (page cache), then the fdatasync after
//   Archive/write/<bytes>              the archiver alone: a ring already full of messages archived,
//                                      timed until it has written (and acked) the last one
//   Archive/replay/<bytes>             a new subscriber reads the same messages back from earliest
//                                      (disk, then ring), checking every checksum
//   Publish/shmbus_archived/64/1       publish cost with the archiver reading behind the publisher,
//   Publish/shmbus_unarchived/64/1     and the same topic unarchived (a 64 MiB ring: neither waits)
//   LatestPerKey/join/10000            a compacted topic after 10 updates of each of 10,000 keys:
//                                      subscribe from the latest per key until all 10,000 are in
//   LatestPerKey/ring/10000            the same 10,000 latest messages read from a ring that holds
//                                      just them (subscribe from earliest), the reference
// ArchiveLatency/shmbus_archived/64 and ArchiveLatency/shmbus_spin/64 (main.cpp): the ping-pong link
// with both topics archived, and without.
#include "archive_bench.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include "harness.h"
#include "links.h"
#include "shmbus/shmbus.h"

namespace bench {
namespace {

constexpr int kFloorRepetitions = 3;
std::atomic<int> g_counter{0};

std::string state_dir() { return shmbus_dir() + "/state"; }

// Each repetition writes a new file and keeps it until the last one is done: a file written over
// pages the previous repetition just freed would measure a page cache with room to spare, which
// an archive that keeps its files never has.
void disk_floor(benchmark::State& state) {
    std::string why;
    if (!ensure_shmbusd(why)) return fail_run(state, why);
    std::filesystem::create_directories(state_dir());
    static int runs = 0;
    const std::string file = state_dir() + "/disk-floor-" + std::to_string(runs) + ".tmp";
    constexpr std::size_t kBlock = 1 << 20, kBlocks = 512;
    std::vector<std::byte> block(kBlock, std::byte{0x5A});
    double write_s = 0, sync_s = 0;
    for (auto _ : state) {
        const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            state.SkipWithError(("cannot create " + file).c_str());
            break;
        }
        const uint64_t t0 = Clock::ticks();
        bool ok = true;
        for (std::size_t i = 0; i < kBlocks && ok; ++i) ok = ::write(fd, block.data(), kBlock) == ssize_t(kBlock);
        const uint64_t t1 = Clock::ticks();
        ok = ok && ::fdatasync(fd) == 0;
        const uint64_t t2 = Clock::ticks();
        ::close(fd);
        if (!ok) {
            state.SkipWithError(("cannot write " + file).c_str());
            break;
        }
        write_s = double(t1 - t0) * Clock::ns_per_tick() / 1e9;
        sync_s = double(t2 - t1) * Clock::ns_per_tick() / 1e9;
        state.SetIterationTime(write_s);
    }
    if (++runs == kFloorRepetitions)
        for (int i = 0; i < runs; ++i) std::filesystem::remove(state_dir() + "/disk-floor-" + std::to_string(i) + ".tmp");
    state.counters["MBps"] = double(kBlock * kBlocks) / write_s / 1e6;
    state.counters["MBps_with_fdatasync"] = double(kBlock * kBlocks) / (write_s + sync_s) / 1e6;
}

// Where `Archive/write` left its topic, for `Archive/replay` of the same size.
struct Written {
    std::string topic;
    uint64_t count = 0;
};
std::map<std::size_t, Written> g_written;

std::optional<uint64_t> archiver_next_id(shmbus::Client& c, const std::string& topic) {
    auto s = c.topic_stats(topic);
    if (!s) return std::nullopt;
    for (const auto& sub : s->subscriptions)
        if (sub.name == "$archiver") return sub.next_id;
    return std::nullopt;
}

// The archiver alone: the messages are published first into a ring that holds them all, then the
// topic is archived and timed until the archiver has written (and acked) the last one: its
// throughput from ring to file, not the publisher's.
void archive_write(benchmark::State& state, std::size_t size, uint64_t count) {
    std::string why;
    if (!ensure_shmbusd(why)) return fail_run(state, why);
    auto c = connect_bus();
    if (!c) return fail_run(state, "cannot connect");
    const std::string topic = "arch" + std::to_string(getpid()) + "-" + std::to_string(g_counter++);
    shmbus::TopicConfig config;
    config.capacity = 256 << 20;
    config.max_message = uint32_t(std::max<std::size_t>(size, 64));
    if (!c->create_topic(topic, config)) return fail_run(state, "cannot create the topic");
    {
        auto p = c->publisher(topic);
        if (!p) return fail_run(state, "cannot open a publisher");
        std::vector<std::byte> msg(size);
        for (uint64_t i = 0; i < count; ++i) {
            stamp(msg, i);
            if (p->publish(msg) != shmbus::PublishStatus::ok) return fail_run(state, "publish failed");
        }
    }
    shmbus::ArchiveSettings settings;
    settings.file_bytes = 256 << 20;
    double seconds = 0, startup_s = 0;
    uint64_t timed = 0;
    for (auto _ : state) {
        const uint64_t t_set = Clock::ticks();
        if (!c->set_archive(topic, settings)) {
            state.SkipWithError("cannot archive the topic");
            break;
        }
        // Polled: the archiver's cursor is where the archive ends. Timed from its first ack, so
        // the archiver's process start (fork, exec, connect, recovery of an empty archive) is
        // reported apart.
        uint64_t t0 = 0, first = 0;
        for (;;) {
            const uint64_t at = archiver_next_id(*c, topic).value_or(0);
            if (t0 == 0 && at > 0) t0 = Clock::ticks(), first = at;
            if (at >= count || double(Clock::ticks() - t_set) * Clock::ns_per_tick() > 300e9) break;
            // Not more often: each look maps the topic for its statistics, and unmapping 256 MiB costs
            // the other cores TLB shootdowns, which would slow the archiver it measures.
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        const uint64_t t1 = Clock::ticks();
        if (t0 == 0 || first >= count) {
            state.SkipWithError("the archiver wrote everything before a first look, or nothing");
            break;
        }
        timed = count - first;
        seconds = double(t1 - t0) * Clock::ns_per_tick() / 1e9;
        startup_s = double(t0 - t_set) * Clock::ns_per_tick() / 1e9;
        state.SetIterationTime(seconds);
    }
    auto info = c->archive_info(topic);
    if (!info || info->records != count) return state.SkipWithError("the archive does not hold every message");
    const double bytes = double(info->bytes) * double(timed) / double(count);  // the part timed
    state.counters["msgs_per_s"] = double(timed) / seconds;
    state.counters["MBps"] = bytes / seconds / 1e6;
    state.counters["archive_bytes"] = double(info->bytes);
    state.counters["startup_ms"] = startup_s * 1e3;
    g_written[size] = {topic, count};
}

void archive_replay(benchmark::State& state, std::size_t size) {
    auto it = g_written.find(size);
    if (it == g_written.end()) return fail_run(state, "Archive/write/" + std::to_string(size) + " did not run first");
    auto c = connect_bus();
    if (!c) return fail_run(state, "cannot connect");
    const Written w = it->second;
    double seconds = 0;
    uint64_t bad = 0, got = 0;
    for (auto _ : state) {
        shmbus::SubscribeOptions o;
        o.from = shmbus::StartFrom::earliest;
        o.wait = shmbus::WaitStrategy::busy_spin;
        auto sub = c->subscribe(w.topic, o);
        if (!sub) {
            state.SkipWithError("cannot subscribe");
            break;
        }
        pin_to_cpu(1);
        const uint64_t t0 = Clock::ticks();
        got = 0;
        while (got < w.count) {
            const auto r = sub->receive(
                [&](const shmbus::Message& m) {
                    if (m.id != got || !verify(m.payload, got, size)) ++bad;  // checked inside the timed loop
                    ++got;
                },
                std::chrono::seconds(10), 4096);
            if (r.status != shmbus::ReceiveStatus::ok) break;
        }
        if (got < w.count) {
            state.SkipWithError("replay stalled");
            break;
        }
        seconds = double(Clock::ticks() - t0) * Clock::ns_per_tick() / 1e9;
        state.SetIterationTime(seconds);
    }
    (void)c->delete_topic(w.topic, true);
    if (bad != 0) return state.SkipWithError((std::to_string(bad) + " messages out of order or damaged").c_str());
    state.counters["msgs_per_s"] = double(got) / seconds;
}

void archived_publish_cost(benchmark::State& state, bool archived) {
    std::string why;
    if (!ensure_shmbusd(why)) return fail_run(state, why);
    auto c = connect_bus();
    if (!c) return fail_run(state, "cannot connect");
    const std::string topic = "pca" + std::to_string(getpid()) + "-" + std::to_string(g_counter++);
    shmbus::TopicConfig config;
    config.capacity = 64 << 20;  // the run fits: the archiver never holds the publisher back
    if (!c->create_topic(topic, config) || (archived && !c->set_archive(topic, shmbus::ArchiveSettings{})))
        return fail_run(state, "cannot create the topic");
    auto opened = c->publisher(topic);
    if (!opened) return fail_run(state, "cannot open a publisher");
    std::optional<shmbus::Publisher> p(std::move(opened.value()));
    pin_to_cpu(0);
    std::byte msg[64] = {};
    uint64_t i = 0, failures = 0;
    for (auto _ : state) {
        stamp(msg, i++);
        failures += p->publish(msg) != shmbus::PublishStatus::ok;
    }
    if (archived)  // the archiver kept up: the figure is not a wait for it
        while (archiver_next_id(*c, topic).value_or(0) < i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    p.reset();
    (void)c->delete_topic(topic, true);
    if (failures) state.SkipWithError("publish failed");
}

// Latest value per key: kRounds updates of each of kKeys keys (64 B payloads stamped with the
// update's number), so the latest of key k is update (kRounds - 1) * kKeys + k.
constexpr uint32_t kKeys = 10'000, kRounds = 10;

std::string key_of(uint32_t k) { return "key-" + std::to_string(k); }

// Publishes the updates to `topic`, from round `first_round` on.
bool publish_updates(shmbus::Client& c, const std::string& topic, uint32_t first_round) {
    auto p = c.publisher(topic);
    if (!p) return false;
    std::byte msg[64] = {};
    for (uint32_t round = first_round; round < kRounds; ++round)
        for (uint32_t k = 0; k < kKeys; ++k) {
            stamp(msg, uint64_t(round) * kKeys + k);
            shmbus::MessageOptions o;
            const std::string key = key_of(k);
            o.key = key;
            if (p->publish(std::span<const std::byte>(msg), o) != shmbus::PublishStatus::ok) return false;
        }
    return true;
}

// Subscribes to `topic` from `from` and reads kKeys messages, each checked to be its key's latest
// update; the seconds from the subscribe call to the last one.
std::optional<double> read_latest(benchmark::State& state, shmbus::Client& c, const std::string& topic, shmbus::StartFrom from) {
    shmbus::SubscribeOptions o;
    o.from = from;
    o.wait = shmbus::WaitStrategy::busy_spin;
    const uint64_t t0 = Clock::ticks();
    auto sub = c.subscribe(topic, o);
    if (!sub) {
        state.SkipWithError(("cannot subscribe: " + sub.error().message).c_str());
        return std::nullopt;
    }
    uint64_t got = 0, bad = 0;
    while (got < kKeys) {
        const auto r = sub->receive(
            [&](const shmbus::Message& m) {
                const uint32_t k = uint32_t(std::strtoul(std::string(m.key.substr(4)).c_str(), nullptr, 10));
                if (!m.key.starts_with("key-") || !verify(m.payload, uint64_t(kRounds - 1) * kKeys + k, 64)) ++bad;
                ++got;
            },
            std::chrono::seconds(10), 4096);
        if (r.status != shmbus::ReceiveStatus::ok) break;
    }
    const double seconds = double(Clock::ticks() - t0) * Clock::ns_per_tick() / 1e9;
    if (got < kKeys || bad != 0) {
        state.SkipWithError((std::to_string(got) + " of " + std::to_string(kKeys) + " keys, " + std::to_string(bad) +
                             " not their latest").c_str());
        return std::nullopt;
    }
    return seconds;
}

void latest_per_key(benchmark::State& state, bool from_archive) {
    std::string why;
    if (!ensure_shmbusd(why)) return fail_run(state, why);
    auto c = connect_bus();
    if (!c) return fail_run(state, "cannot connect");
    const std::string topic = "lpk" + std::to_string(getpid()) + "-" + std::to_string(g_counter++);
    shmbus::TopicConfig config;
    config.capacity = 4 << 20;
    if (!c->create_topic(topic, config)) return fail_run(state, "cannot create the topic");
    if (from_archive) {
        shmbus::ArchiveSettings settings;
        settings.compact = true;
        settings.file_bytes = 1 << 20;  // closed, and so compacted, as the updates go by
        if (!c->set_archive(topic, settings)) return fail_run(state, "cannot make the topic compacted");
        if (!publish_updates(*c, topic, 0)) return fail_run(state, "publish failed");
        // Compaction runs once a second: wait until the archive holds about the latest values.
        for (int i = 0; i < 300; ++i) {
            auto info = c->archive_info(topic);
            if (info && info->records < 3 * kKeys) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    } else if (!publish_updates(*c, topic, kRounds - 1)) {  // the ring holds just the latest values
        return fail_run(state, "publish failed");
    }
    pin_to_cpu(1);
    double seconds = 0;
    for (auto _ : state) {
        auto s = read_latest(state, *c, topic, from_archive ? shmbus::StartFrom::latest_per_key : shmbus::StartFrom::earliest);
        if (!s) break;
        seconds = *s;
        state.SetIterationTime(seconds);
    }
    if (from_archive)
        if (auto info = c->archive_info(topic)) state.counters["archive_records"] = double(info->records);
    (void)c->delete_topic(topic, true);
    state.counters["keys_per_s"] = double(kKeys) / seconds;
}

}  // namespace

void register_archive_benchmarks() {
    benchmark::RegisterBenchmark("Archive/disk_floor", disk_floor)->Iterations(1)->Repetitions(kFloorRepetitions)->UseManualTime()->Unit(benchmark::kMillisecond);
    // Both fill most of a 256 MiB ring (a 32-byte record header each), under the 3/4 of it that a
    // new gating cursor (the archiver's) may join back.
    for (auto [size, count] : {std::pair<std::size_t, uint64_t>{64, 2'000'000}, {1024, 150'000}}) {
        benchmark::RegisterBenchmark(("Archive/write/" + std::to_string(size)).c_str(),
                                     [=](benchmark::State& st) { archive_write(st, size, count); })
            ->Iterations(1)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("Archive/replay/" + std::to_string(size)).c_str(),
                                     [=](benchmark::State& st) { archive_replay(st, size); })
            ->Iterations(1)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
    }
    for (bool from_archive : {true, false})
        benchmark::RegisterBenchmark(from_archive ? "LatestPerKey/join/10000" : "LatestPerKey/ring/10000",
                                     [=](benchmark::State& st) { latest_per_key(st, from_archive); })
            ->Iterations(1)
            ->Repetitions(5)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
    for (bool archived : {false, true})
        benchmark::RegisterBenchmark(archived ? "Publish/shmbus_archived/64/1" : "Publish/shmbus_unarchived/64/1",
                                     [=](benchmark::State& st) { archived_publish_cost(st, archived); })
            ->Iterations(500'000)
            ->Repetitions(3)
            ->Unit(benchmark::kNanosecond);
}

}  // namespace bench
