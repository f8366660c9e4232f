// shmbus-bench: latency and throughput of shmbus beside the physical floors and the peers a user
// would pick instead, all in one run with real separate processes (docs/benchmarks.md).
//
//   Latency/<transport>/<bytes>                 ping-pong; one-way = round trip / 2
//                                                (shmbus_exclusive: single-producer topics)
//   Throughput/<transport>/<bytes>/<P>x<S>       one-way stream, every message checked
//                                                (shmbus_batch: single-producer, durable reader, publish_batch and
//                                                receive_batch of 64)
//   Fanout/<transport>/64/1x<S>                  one publisher, S subscribers (shmbus_spin: busy-spinning,
//                                                registered only where every process has a core)
//   LatencyTopics/shmbus_spin/64/<topics alive>  scaling with the number of topics
//   Publish/shmbus/64/<topics>                   publish cost alone, round-robin over topics
//   Memory/topic/<capacity>                      shared memory per topic
//   Archive/..., Publish/shmbus_archived/...     archived topics (archive.cpp)
//   Breakdown/...                                where one message's time goes (breakdown.cpp)
//   ArchiveLatency/<transport>/64                ping-pong with and without an archiver behind each topic
//   Reach/<transport>/64                         the C API beside C++; readers asleep in wait sets of 1, 16, 256
//   Python/<transport>/64/...                    the Python module beside multiprocessing, pyzmq, redis-py
//   Paired/<a>/<b>/<bytes>                       a and b in alternating blocks of round trips, so that both
//                                                see the same phase of the machine (a build with Aeron)
//   PairedLong/<a>/<b>/64                        the same in blocks as long as a Latency/ run (100,000 round
//                                                trips after as many of warm-up): the p99 of each side
//                                                settled, in the same phase (a build with Aeron)
//   VsAeron/<transport>/64/<ring>                throughput 1->1 beside Aeron IPC at a 1 MiB and a 16 MiB
//                                                ring and term (only in a build with Aeron: aeron.h)
//   PairedThroughput/<a>/<b>/64/16m              a shmbus and an Aeron stream in alternating runs of 2 M
//                                                messages, so that both see the same phase (a build with Aeron)
#include <benchmark/benchmark.h>
#include <sys/utsname.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "aeron.h"
#include "archive_bench.h"
#include "breakdown.h"
#include "harness.h"
#include "links.h"
#include "python_peers.h"
#include "recovery.h"
#include "work_queue.h"
#include "shmbus/shmbus.h"

#ifndef SHMBUS_BENCH_COMMIT
#define SHMBUS_BENCH_COMMIT "unknown"
#endif
#ifndef SHMBUS_BENCH_BUILD_TYPE
#define SHMBUS_BENCH_BUILD_TYPE "unknown"
#endif

namespace bench {
namespace {

constexpr auto kRunTimeout = std::chrono::seconds(120);
// Each latency and throughput benchmark runs this many times; the report quotes the medians.
constexpr int kRepetitions = 3;

template <class T>
class SharedArray {
public:
    explicit SharedArray(std::size_t n) : n_(std::max<std::size_t>(n, 1)) {
        void* p = mmap(nullptr, n_ * sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        data_ = p == MAP_FAILED ? nullptr : static_cast<T*>(p);
    }
    ~SharedArray() {
        if (data_) munmap(data_, n_ * sizeof(T));
    }
    T& operator[](std::size_t i) { return data_[i]; }
    T* data() { return data_; }
    explicit operator bool() const { return data_ != nullptr; }

private:
    std::size_t n_;
    T* data_;
};

void report_latency(benchmark::State& state, std::vector<uint64_t>& samples) {
    for (std::size_t i = 0; state.KeepRunning(); ++i)
        state.SetIterationTime(double(samples[std::min(i, samples.size() - 1)]) * Clock::ns_per_tick() / 2e9);
    const Percentiles p = percentiles(samples, 0.5);  // one-way = round trip / 2
    state.counters["p50_ns"] = p.p50;
    state.counters["p99_ns"] = p.p99;
    state.counters["p999_ns"] = p.p999;
    state.counters["max_ns"] = p.max;
}

// ---- latency: a pinger and an echoer, both forked and pinned, samples in shared memory ----

// `send_ticks[i]`: how long the publish of round trip i took (what waking the reader costs the
// publisher, next to the whole round trip).
// `gap_ns`: a pause before each send (outside the sample), long enough for a reader that sleeps to
// be asleep when the message comes: the wake-up is then measured, not a race with its last look.
int ping_side(Link& link, std::size_t size, uint64_t warmup, uint64_t n, uint64_t* samples, uint64_t* send_ticks,
              uint64_t gap_ns = 0) {
    if (!link.open(true, size)) return 2;
    std::vector<std::byte> msg(size);
    uint64_t bad = 0;
    const auto gap_ticks = uint64_t(double(gap_ns) / Clock::ns_per_tick());
    for (uint64_t i = 0; i < warmup + n; ++i) {
        stamp(msg, i);
        for (const uint64_t until = Clock::ticks() + gap_ticks; gap_ticks != 0 && Clock::ticks() < until;) {
        }
        const uint64_t t0 = Clock::ticks();
        if (!link.send(msg)) return 3;
        const uint64_t sent = Clock::ticks();
        const auto reply = link.recv();
        const uint64_t t1 = Clock::ticks();
        if (!verify(reply, i, size)) ++bad;  // checked inside the timed loop, outside the sample
        if (i >= warmup) {
            samples[i - warmup] = t1 - t0;
            send_ticks[i - warmup] = sent - t0;
        }
    }
    stamp(msg, kStop);  // the echo returns it, so an asynchronous transport has flushed everything
    if (!link.send(msg) || seq_of(link.recv()) != kStop) return 6;
    link.close();
    return bad == 0 ? 0 : 5;
}

int echo_side(Link& link, std::size_t size) {
    if (!link.open(false, size)) return 2;
    for (;;) {
        const auto m = link.recv();
        if (m.empty()) return 3;
        if (!link.send(m)) return 4;
        if (seq_of(m) == kStop) {
            link.close();
            return 0;
        }
    }
}

void latency(benchmark::State& state, const std::string& transport, std::size_t size, uint64_t gap_ns = 0) {
    std::string why;
    auto link = make_link(transport, size, why);
    if (!link) return fail_run(state, why);
    const uint64_t n = uint64_t(state.max_iterations);
    // As many unmeasured round trips first as are measured (100,000 for small messages, as Aeron's
    // samples warm up): caches, branch predictors and the CPU's frequency settle before the clock runs.
    const uint64_t warmup = n;
    SharedArray<uint64_t> samples(n), send_ticks(n);
    Partner echo(1, [&] { return echo_side(*link, size); });
    Partner ping(0, [&] { return ping_side(*link, size, warmup, n, samples.data(), send_ticks.data(), gap_ns); });
    const int rc_ping = ping.join(kRunTimeout);
    const int rc_echo = echo.join(std::chrono::seconds(5));
    if (rc_ping != 0 || rc_echo != 0) {
        const std::string e = "partner failed (ping " + std::to_string(rc_ping) + ", echo " + std::to_string(rc_echo) +
                              "; 5 = a reply failed its checksum)";
        return fail_run(state, e);
    }
    std::vector<uint64_t> v(samples.data(), samples.data() + n);
    report_latency(state, v);
    std::vector<uint64_t> sends(send_ticks.data(), send_ticks.data() + n);
    state.counters["publish_p50_ns"] = percentiles(sends, 1.0).p50;  // the publisher's side of a round trip
}

// ---- paired latency: two transports in alternating short blocks ----

// This machine switches between a fast and a slow phase (the cache-line floor 60 or 175 ns) every
// few minutes, and two benchmarks of one run may land in different phases. Here `a` and `b` take
// turns in blocks of `per_block` round trips (each block on fresh links, after as many round trips
// of warm-up), so blocks next to each other share the phase; each side's percentiles are taken over
// all its blocks, and `a_over_b` is the median of the per-pair ratios of block p50s,
// `a_over_b_p99` that of block p99s.
void paired_latency(benchmark::State& state, const std::string& a, const std::string& b, std::size_t size, int blocks,
                    uint64_t per_block) {
    SharedArray<uint64_t> samples(per_block), sends(per_block);
    std::vector<uint64_t> all[2];
    std::vector<double> ratios, ratios_p99;
    for (int k = 0; k < blocks; ++k) {
        double block_p50[2] = {0, 0}, block_p99[2] = {0, 0};
        for (int side = 0; side < 2; ++side) {
            // Alternate which goes first, so neither always follows the other.
            const std::string& t = (side == 0) == (k % 2 == 0) ? a : b;
            const int slot = &t == &a ? 0 : 1;
            std::string why;
            auto link = make_link(t, size, why);
            if (!link) return fail_run(state, why);
            Partner echo(1, [&] { return echo_side(*link, size); });
            Partner ping(0, [&] { return ping_side(*link, size, per_block, per_block, samples.data(), sends.data()); });
            if (ping.join(kRunTimeout) != 0 || echo.join(std::chrono::seconds(5)) != 0) return fail_run(state, "a partner of " + t + " failed");
            std::vector<uint64_t> v(samples.data(), samples.data() + per_block);
            const Percentiles block = percentiles(v, 0.5);
            block_p50[slot] = block.p50;
            block_p99[slot] = block.p99;
            all[slot].insert(all[slot].end(), samples.data(), samples.data() + per_block);
        }
        ratios.push_back(block_p50[0] / block_p50[1]);
        ratios_p99.push_back(block_p99[0] / block_p99[1]);
    }
    for (auto _ : state) state.SetIterationTime(1e-3);
    const Percentiles pa = percentiles(all[0], 0.5), pb = percentiles(all[1], 0.5);
    std::sort(ratios.begin(), ratios.end());
    std::sort(ratios_p99.begin(), ratios_p99.end());
    state.counters["a_p50_ns"] = pa.p50;
    state.counters["a_p99_ns"] = pa.p99;
    state.counters["b_p50_ns"] = pb.p50;
    state.counters["b_p99_ns"] = pb.p99;
    state.counters["a_over_b"] = ratios[ratios.size() / 2];
    state.counters["a_over_b_p99"] = ratios_p99[ratios_p99.size() / 2];
    state.counters["blocks"] = blocks;
}

// ---- throughput through a generic link, 1x1 ----

struct StreamResult {
    std::atomic<uint64_t> start_ticks;
    std::atomic<uint64_t> end_ticks;
    std::atomic<uint64_t> received;
    std::atomic<uint64_t> lost;
    std::atomic<uint64_t> bad;
};

// What a finished stream's shared result says: its time and counts, or why it does not count.
StreamRate outcome_of(const StreamResult& r) {
    StreamRate o;
    if (r.bad != 0) {
        o.error = "a consumer saw a message out of order or with a bad checksum";
        return o;
    }
    o.secs = double(r.end_ticks - r.start_ticks) * Clock::ns_per_tick() / 1e9;
    o.received = r.received;
    o.lost = r.lost;
    return o;
}

void throughput_link(benchmark::State& state, const std::string& transport, std::size_t size, uint64_t count) {
    std::string why;
    auto link = make_link(transport, size, why);
    if (!link) return fail_run(state, why);
    auto* r = shared_object<StreamResult>();
    Signal ready, go;
    Partner consumer(1, [&] {
        if (!link->open(false, size)) return 2;
        ready.post();
        for (uint64_t i = 0; i < count; ++i) {
            const auto m = link->recv();
            if (!verify(m, i, size)) r->bad++;
        }
        r->end_ticks = Clock::ticks();
        r->received = count;
        return 0;
    });
    Partner producer(0, [&] {
        if (!link->open(true, size)) return 2;
        std::vector<std::byte> msg(size);
        go.wait();
        r->start_ticks = Clock::ticks();
        for (uint64_t i = 0; i < count; ++i) {
            stamp(msg, i);
            if (!link->send(msg)) return 3;
        }
        link->close();
        return 0;
    });
    ready.wait();
    go.post();
    const int rc_p = producer.join(kRunTimeout), rc_c = consumer.join(kRunTimeout);
    if (rc_p != 0 || rc_c != 0) fail_run(state, "a partner failed");
    else report_stream(state, outcome_of(*r), size, 1, count);
    release_shared(r);
}

// ---- throughput through shmbus, P producers x S subscribers ----

std::atomic<int> g_topic_counter{0};
constexpr std::size_t kBatch = 64;  // messages per publish_batch() in the shmbus_batch streams

// A stream through one topic; `received` counts what every consumer got, `error` says why it failed.
StreamRate stream_shmbus(const std::string& mode, std::size_t size, int producers, int consumers, uint64_t per_producer,
                         uint64_t capacity) {
    StreamRate out;
    if (!ensure_shmbusd(out.error)) return out;
    const std::string topic = "tp" + std::to_string(getpid()) + "-" + std::to_string(g_topic_counter++);
    {
        auto c = connect_bus();
        shmbus::TopicConfig config;
        config.capacity = capacity;
        // shmbus_batch: the single-producer path, published and received in batches of kBatch.
        config.single_producer = mode == "shmbus_exclusive" || mode == "shmbus_exclusive_unpaced" || mode == "shmbus_batch";
        if (!c || !c->create_topic(topic, config)) {
            out.error = "cannot create the topic";
            return out;
        }
    }
    const bool oversubscribed = producers + consumers > cpu_count();
    auto* r = shared_object<StreamResult>();
    r->start_ticks = ~0ull;
    const uint64_t total = per_producer * uint64_t(producers);
    Signal ready, go;
    std::vector<Partner> parts;
    for (int c = 0; c < consumers; ++c) {
        parts.emplace_back(1 + c, [&, c] {
            auto client = connect_bus();
            if (!client) return 2;
            shmbus::SubscribeOptions o;
            o.from = shmbus::StartFrom::earliest;
            // Busy-spinning only where every process has a core of its own.
            const bool spin = mode == "shmbus_spin" || mode == "shmbus_exclusive" || mode == "shmbus_exclusive_unpaced" || mode == "shmbus_batch";
            o.wait = spin && !oversubscribed ? shmbus::WaitStrategy::busy_spin
                                                               : shmbus::WaitStrategy::spin_then_sleep;
            // Durable readers hold publishers back: nothing is lost, however fast batches come.
            if (mode == "shmbus_durable" || mode == "shmbus_batch") o.durable_name = "c" + std::to_string(c);
            // The same reader without stream pacing (SubscribeOptions::stream_backoff): what it buys.
            if (mode == "shmbus_exclusive_unpaced") o.stream_backoff = std::chrono::nanoseconds(0);
            auto sub = client->subscribe(topic, o);
            if (!sub) return 3;
            ready.post();
            std::vector<uint64_t> next(producers, 0);
            std::vector<uint64_t> lost_at(producers, 0);  // total lost when p's last message came
            uint64_t got = 0, bad = 0, lost_so_far = 0;
            auto check = [&](const shmbus::Message& m) {
                const uint64_t s = seq_of(m.payload);
                const uint64_t p = s >> 40;
                const uint64_t i = s & ((1ull << 40) - 1);
                lost_so_far += m.lost_before;
                if (p >= uint64_t(producers) || !verify(m.payload, s, size)) {
                    ++bad;
                } else {
                    // Per-producer order: the next seq, or a later one if messages were lost since.
                    if (i < next[p] || (i != next[p] && lost_at[p] == lost_so_far)) ++bad;
                    next[p] = i + 1;
                    lost_at[p] = lost_so_far;
                }
                ++got;
            };
            auto check_batch = [&](std::span<const shmbus::Message> batch) {
                for (const auto& m : batch) check(m);
            };
            while (got + sub->lost() < total) {
                const auto res = mode == "shmbus_batch" ? sub->receive_batch(check_batch, std::chrono::seconds(10), 256)
                                                        : sub->receive(check, std::chrono::seconds(10), 256);
                if (res.status != shmbus::ReceiveStatus::ok) return 4;
            }
            const uint64_t end = Clock::ticks();
            uint64_t prev = r->end_ticks.load();
            while (end > prev && !r->end_ticks.compare_exchange_weak(prev, end)) {}
            r->received += got;
            r->lost += sub->lost();
            r->bad += bad;
            return 0;
        });
    }
    for (int p = 0; p < producers; ++p) {
        parts.emplace_back(consumers + 1 + p, [&, p] {
            auto client = connect_bus();
            if (!client) return 2;
            auto pub = client->publisher(topic);
            if (!pub) return 3;
            std::vector<std::byte> msg(size);
            go.wait();
            const uint64_t start = Clock::ticks();
            uint64_t prev = r->start_ticks.load();
            while (start < prev && !r->start_ticks.compare_exchange_weak(prev, start)) {}
            if (mode == "shmbus_batch") {
                std::vector<std::vector<std::byte>> store(kBatch, std::vector<std::byte>(size));
                std::vector<std::span<const std::byte>> batch(store.begin(), store.end());
                for (uint64_t i = 0; i < per_producer;) {
                    const std::size_t n = std::size_t(std::min<uint64_t>(kBatch, per_producer - i));
                    for (std::size_t k = 0; k < n; ++k) stamp(store[k], (uint64_t(p) << 40) | i++);
                    if (pub->publish_batch(std::span(batch).first(n)).published != n) return 4;
                }
                return 0;
            }
            for (uint64_t i = 0; i < per_producer; ++i) {
                stamp(msg, (uint64_t(p) << 40) | i);
                if (pub->publish(msg) != shmbus::PublishStatus::ok) return 4;
            }
            return 0;
        });
    }
    for (int c = 0; c < consumers; ++c) ready.wait();
    for (int p = 0; p < producers; ++p) go.post();
    bool ok = true;
    for (auto& part : parts) ok &= part.join(kRunTimeout) == 0;
    if (auto c = connect_bus()) (void)c->delete_topic(topic);
    if (!ok) out.error = "a partner failed";
    else out = outcome_of(*r);
    release_shared(r);
    return out;
}

void throughput_shmbus(benchmark::State& state, const std::string& mode, std::size_t size, int producers,
                       int consumers, uint64_t per_producer, uint64_t capacity = 8u << 20) {
    const StreamRate o = stream_shmbus(mode, size, producers, consumers, per_producer, capacity);
    report_stream(state, o, size, consumers, per_producer * uint64_t(producers));
    if (o.error.empty()) state.counters["oversubscribed"] = producers + consumers > cpu_count() ? 1 : 0;
}

// shmbus and Aeron streams (64 B, 1->1) in alternating runs of `count` messages, so that both see
// the same phase of the machine; the ratio is the median over pairs of runs of a's rate over b's.
void paired_throughput(benchmark::State& state, const std::string& a, bool b_exclusive, uint64_t ring, int pairs,
                       uint64_t count) {
    std::vector<double> ratios, rate[2];
    for (int k = 0; k < pairs; ++k) {
        double got[2] = {0, 0};
        for (int side = 0; side < 2; ++side) {
            const bool shmbus_side = (side == 0) == (k % 2 == 0);  // alternate which goes first
            const StreamRate o = shmbus_side ? stream_shmbus(a, 64, 1, 1, count, ring) : stream_aeron(b_exclusive, 64, ring, count);
            if (!o.error.empty()) return fail_run(state, o.error);
            got[shmbus_side ? 0 : 1] = o.per_second();
        }
        rate[0].push_back(got[0]);
        rate[1].push_back(got[1]);
        ratios.push_back(got[0] / got[1]);
    }
    for (auto _ : state) state.SetIterationTime(1e-3);
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    state.counters["a_msgs_per_s"] = median(rate[0]);
    state.counters["b_msgs_per_s"] = median(rate[1]);
    state.counters["a_over_b"] = median(ratios);
    state.counters["a_over_b_min"] = *std::min_element(ratios.begin(), ratios.end());
    state.counters["a_over_b_max"] = *std::max_element(ratios.begin(), ratios.end());
    state.counters["pairs"] = pairs;
}

// ---- scaling ----

// One stream of throughput_shmbus under `family` ("Throughput" or "Fanout"), named
// <family>/<mode>/<bytes>/<P>x<S>, `total` messages shared among the producers.
void register_stream(const std::string& family, const std::string& mode, std::size_t size, int producers, int consumers,
                     uint64_t total) {
    const std::string name = family + "/" + mode + "/" + std::to_string(size) + "/" + std::to_string(producers) + "x" +
                             std::to_string(consumers);
    benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
        throughput_shmbus(st, mode, size, producers, consumers, total / uint64_t(producers));
    })
        ->Iterations(1)
        ->Repetitions(kRepetitions)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
}

// Fan-out (1 -> 1..16 busy-spinning subscribers) and many producers (1..16 -> 1) with a core for
// every process: registered only for the counts this machine has the cores for (with fewer, the
// runs measure the scheduler, as the always-registered Fanout/shmbus_block and 4x1 runs show). On
// a machine with 17 cores or more: --benchmark_filter='Fanout/shmbus_spin|Throughput/shmbus_spin/64/'.
void register_core_scaling() {
    for (int n : {1, 2, 4, 8, 16}) {
        if (1 + n > cpu_count()) break;
        register_stream("Fanout", "shmbus_spin", 64, 1, n, 2'000'000);
        if (n == 1 || n == 4) continue;  // Throughput/shmbus_spin/64/1x1 and 4x1 are registered with the others
        register_stream("Throughput", "shmbus_spin", 64, n, 1, 2'000'000);
    }
}

void latency_with_topics(benchmark::State& state, int topics) {
    std::string why;
    if (!ensure_shmbusd(why)) return fail_run(state, why);
    std::vector<std::string> extra;
    {
        auto c = connect_bus();
        shmbus::TopicConfig small;
        small.capacity = 64 * 1024;
        for (int i = 1; i < topics; ++i) {
            extra.push_back("idle" + std::to_string(getpid()) + "-" + std::to_string(i));
            if (!c->create_topic(extra.back(), small)) return fail_run(state, "cannot create topics");
        }
    }
    // Both partners keep a publisher and a subscriber on every idle topic: all of them mapped.
    struct Holder {
        std::unique_ptr<shmbus::Client> client;
        std::vector<shmbus::Publisher> pubs;
        std::vector<shmbus::Subscriber> subs;
        void hold(const std::vector<std::string>& names) {
            auto c = connect_bus();
            if (!c) return;
            client = std::make_unique<shmbus::Client>(std::move(c.value()));
            for (const auto& n : names) {
                if (auto p = client->publisher(n)) pubs.push_back(std::move(p.value()));
                if (auto s = client->subscribe(n)) subs.push_back(std::move(s.value()));
            }
        }
    };
    auto link = make_link("shmbus_spin", 64, why);
    if (!link) return fail_run(state, why);
    const uint64_t n = uint64_t(state.max_iterations);
    SharedArray<uint64_t> samples(n), send_ticks(n);
    Partner echo(1, [&] {
        Holder h;
        h.hold(extra);
        return echo_side(*link, 64);
    });
    Partner ping(0, [&] {
        Holder h;
        h.hold(extra);
        return ping_side(*link, 64, n, n, samples.data(), send_ticks.data());  // warm-up as in latency()
    });
    const bool ok = ping.join(kRunTimeout) == 0 && echo.join(std::chrono::seconds(5)) == 0;
    if (auto c = connect_bus())
        for (const auto& e : extra) (void)c->delete_topic(e);
    if (!ok) return fail_run(state, "a partner failed");
    std::vector<uint64_t> v(samples.data(), samples.data() + n);
    report_latency(state, v);
    state.counters["topics"] = topics;
}

void publish_cost(benchmark::State& state, int topics, bool single_producer = false) {
    std::string why;
    if (!ensure_shmbusd(why)) return fail_run(state, why);
    auto c = connect_bus();
    if (!c) return fail_run(state, "cannot connect");
    shmbus::TopicConfig small;
    small.capacity = 64 * 1024;
    small.single_producer = single_producer;
    std::vector<std::string> names;
    std::vector<shmbus::Publisher> pubs;
    for (int i = 0; i < topics; ++i) {
        names.push_back("pc" + std::to_string(getpid()) + "-" + std::to_string(g_topic_counter++));
        auto p = c->publisher(names.back(), {small, std::chrono::seconds(1), {}});
        if (!p) return fail_run(state, "cannot create topics");
        pubs.push_back(std::move(p.value()));
    }
    pin_to_cpu(0);
    std::byte msg[64] = {};
    std::size_t i = 0;
    uint64_t failures = 0;
    for (auto _ : state) {
        stamp(msg, i);
        failures += pubs[i % pubs.size()].publish(msg) != shmbus::PublishStatus::ok;
        ++i;
    }
    pubs.clear();
    for (const auto& n : names) (void)c->delete_topic(n);
    if (failures) fail_run(state, "publish failed");
    state.counters["topics"] = topics;
}

void memory_per_topic(benchmark::State& state, uint64_t capacity) {
    std::string why;
    if (!ensure_shmbusd(why)) return fail_run(state, why);
    auto c = connect_bus();
    const std::string name = "mem" + std::to_string(getpid()) + "-" + std::to_string(capacity);
    shmbus::TopicConfig config;
    config.capacity = capacity;
    if (!c || !c->create_topic(name, config)) return fail_run(state, "cannot create the topic");
    auto stats = c->topic_stats(name);
    (void)c->delete_topic(name);
    for (auto _ : state) benchmark::DoNotOptimize(stats);
    state.counters["bytes_per_topic"] = double(stats->segment_bytes);
    state.counters["overhead_bytes"] = double(stats->segment_bytes - capacity);
}

// ---- registration ----

// Throughput against Aeron at equal buffer sizes: a 1 MiB and a 16 MiB ring beside the same term
// length, 64 B 1->1, every message checked. Only in a build with Aeron (aeron.h).
void register_against_aeron() {
    if (!aeron_available()) return;
    // Latency in alternating blocks (paired_latency): shmbus against Aeron at 64 B (and at 256 B
    // and 1 KiB, records of several lines), and against
    // iceoryx at 64 KiB and 1 MiB (where the phase decides the most).
    std::vector<std::tuple<std::string, std::string, std::size_t>> pairs = {
        {"shmbus_exclusive", "aeron_ipc_exclusive", 64}, {"shmbus_spin", "aeron_ipc", 64},
        {"shmbus_exclusive_untimed", "aeron_ipc_exclusive", 64}, {"shmbus_spin_untimed", "aeron_ipc", 64},
        {"shmbus_spin", "aeron_ipc", 256}, {"shmbus_spin", "aeron_ipc", 1024}};
#if SHMBUS_BENCH_HAVE_ICEORYX
    pairs.emplace_back("shmbus_spin", "iceoryx", 1 << 16);
    pairs.emplace_back("shmbus_spin", "iceoryx", 1 << 20);
    pairs.emplace_back("shmbus_spin_reuse", "iceoryx", 1 << 20);
#endif
    for (const auto& [a, b, size] : pairs) {
        // Blocks of round trips (and as many of warm-up before each): fewer as messages grow.
        const int blocks = size >= (1 << 20) ? 10 : 20;
        const uint64_t per_block = size >= (1 << 20) ? 300 : size >= (1 << 16) ? 2000 : 10000;
        benchmark::RegisterBenchmark(("Paired/" + a + "/" + b + "/" + std::to_string(size)).c_str(),
                                     [a, b, size, blocks, per_block](benchmark::State& st) {
                                         paired_latency(st, a, b, size, blocks, per_block);
                                     })
            ->Iterations(1)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
    }
    // The 64 B pairs again in blocks as long as a Latency/ run: Aeron's driver is busy for a while
    // with the publications each block makes, which the short blocks' p99 carries; after 100,000
    // round trips of warm-up it has settled, so the p99 targets are judged here, in one phase.
    for (const auto& [a, b, size] : pairs) {
        if (size != 64) continue;
        benchmark::RegisterBenchmark(("PairedLong/" + a + "/" + b + "/64").c_str(),
                                     [a, b](benchmark::State& st) { paired_latency(st, a, b, 64, 6, 100000); })
            ->Iterations(1)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
    }
    // Throughput in alternating runs at a 16 MiB ring (at 1 MiB Aeron's driver sets the pace).
    for (const auto& [a, b, b_exclusive] : {std::tuple{"shmbus_exclusive", "aeron_ipc_exclusive", true},
                                            std::tuple{"shmbus_spin", "aeron_ipc", false},
                                            std::tuple{"shmbus_exclusive_unpaced", "aeron_ipc_exclusive", true},
                                            std::tuple{"shmbus_batch", "aeron_ipc", false},
                                            std::tuple{"shmbus_batch", "aeron_ipc_exclusive", true}}) {
        const std::string sa = a;
        const bool bx = b_exclusive;
        benchmark::RegisterBenchmark(("PairedThroughput/" + sa + "/" + b + "/64/16m").c_str(),
                                     [sa, bx](benchmark::State& st) { paired_throughput(st, sa, bx, uint64_t(16) << 20, 8, 2'000'000); })
            ->Iterations(1)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
    }
    constexpr uint64_t kCount = 10'000'000;
    for (uint64_t ring : {uint64_t(1) << 20, uint64_t(16) << 20}) {
        const std::string r = std::to_string(ring >> 20) + "m";
        for (const char* t : {"aeron_ipc", "aeron_ipc_exclusive"})
            benchmark::RegisterBenchmark(("VsAeron/" + std::string(t) + "/64/" + r).c_str(),
                                         [=](benchmark::State& st) {
                                             throughput_aeron(st, std::string(t) == "aeron_ipc_exclusive", 64, ring, kCount);
                                         })
                ->Iterations(1)
                ->Repetitions(kRepetitions)
                ->UseManualTime()
                ->Unit(benchmark::kMillisecond);
        for (const char* t : {"shmbus_spin", "shmbus_exclusive", "shmbus_exclusive_unpaced", "shmbus_batch"})
            benchmark::RegisterBenchmark(("VsAeron/" + std::string(t) + "/64/" + r).c_str(),
                                         [=](benchmark::State& st) { throughput_shmbus(st, t, 64, 1, 1, kCount, ring); })
                ->Iterations(1)
                ->Repetitions(kRepetitions)
                ->UseManualTime()
                ->Unit(benchmark::kMillisecond);
    }
}

uint64_t latency_rounds(std::size_t size) {
    if (size <= 1024) return 100000;
    if (size <= 64 * 1024) return 20000;
    return 1000;
}

// Transports measured with small messages only: the floors, and untimed topics (what a publish
// saves without its clock read, a fixed cost).
bool floor_only_small(const std::string& t) {
    return t == "cacheline" || t == "futex" || t.find("_untimed") != std::string::npos;
}
// Publishers that reuse the ring's warm memory (PublisherOptions::reuse_space): a choice for large
// messages only, measured where it applies.
bool large_only(const std::string& t) { return t.find("_reuse") != std::string::npos; }

void register_all() {
    // Two seconds of ping-pong before anything is measured: CPU frequency and caches settle.
    benchmark::RegisterBenchmark("Warmup/cacheline/64", [](benchmark::State& st) { latency(st, "cacheline", 64); })
        ->Iterations(2'000'000)
        ->UseManualTime()
        ->Unit(benchmark::kNanosecond);
    const std::vector<std::size_t> sizes = {8, 32, 64, 1024, 64 * 1024, 1024 * 1024};
    for (const auto& t : available_transports())
        for (std::size_t s : sizes) {
            if ((floor_only_small(t) && s > 64) || (large_only(t) && s < shmbus::kReuseSpaceFrom)) continue;
            // 32 B: a message and its header in one cache line, for the floor and the fastest paths.
            if (s == 32 && t != "cacheline" && t != "raw_ring" && t != "shmbus_spin" && t != "shmbus_exclusive" &&
                t.rfind("aeron_", 0) != 0)
                continue;
            if (t == "shmbus_archived") continue;  // ArchiveLatency below, beside shmbus_spin in the same run
            benchmark::RegisterBenchmark(("Latency/" + t + "/" + std::to_string(s)).c_str(),
                                         [t, s](benchmark::State& st) { latency(st, t, s); })
                ->Iterations(int64_t(latency_rounds(s)))
                ->Repetitions(kRepetitions)
                ->UseManualTime()
                ->Unit(benchmark::kNanosecond);
        }
    for (std::size_t s : {std::size_t(64), std::size_t(1024)}) {
        const uint64_t count = s == 64 ? 2'000'000 : 500'000;
        for (const char* t : {"shmbus_spin", "shmbus_exclusive", "shmbus_batch", "shmbus_block", "shmbus_durable"})
            for (auto [p, c] : {std::pair{1, 1}, std::pair{4, 1}, std::pair{1, 4}}) {
                const std::string mode = t;
                if (mode == "shmbus_durable" && (p != 1 || c != 1)) continue;
                if ((mode == "shmbus_exclusive" || mode == "shmbus_batch") && p != 1) continue;  // one publisher by definition
                register_stream("Throughput", mode, s, p, c, count);
            }
        for (const auto& t : available_transports()) {
            if (t.rfind("shmbus_", 0) == 0 || floor_only_small(t) || large_only(t)) continue;
            const uint64_t n = t == "raw_ring" ? count : count / 4;
            benchmark::RegisterBenchmark(("Throughput/" + t + "/" + std::to_string(s) + "/1x1").c_str(),
                                         [=](benchmark::State& st) { throughput_link(st, t, s, n); })
                ->Iterations(1)
                ->Repetitions(kRepetitions)
                ->UseManualTime()
                ->Unit(benchmark::kMillisecond);
        }
    }
    for (int subs : {1, 4, 16, 64})
        for (const char* t : {"shmbus_block", "shmbus_durable"})
            benchmark::RegisterBenchmark(("Fanout/" + std::string(t) + "/64/1x" + std::to_string(subs)).c_str(),
                                         [=](benchmark::State& st) { throughput_shmbus(st, t, 64, 1, subs, 200000); })
                ->Iterations(1)
                ->UseManualTime()
                ->Unit(benchmark::kMillisecond);
    register_core_scaling();
    for (int topics : {1, 100, 1000}) {
        benchmark::RegisterBenchmark(("LatencyTopics/shmbus_spin/64/" + std::to_string(topics)).c_str(),
                                     [=](benchmark::State& st) { latency_with_topics(st, topics); })
            ->Iterations(100000)
            ->Repetitions(kRepetitions)
            ->UseManualTime()
            ->Unit(benchmark::kNanosecond);
        benchmark::RegisterBenchmark(("Publish/shmbus/64/" + std::to_string(topics)).c_str(),
                                     [=](benchmark::State& st) { publish_cost(st, topics); })
            ->Iterations(2'000'000)
            ->Unit(benchmark::kNanosecond);
    }
    benchmark::RegisterBenchmark("Publish/shmbus_exclusive/64/1", [](benchmark::State& st) { publish_cost(st, 1, true); })
        ->Iterations(2'000'000)
        ->Unit(benchmark::kNanosecond);
    for (uint64_t cap : {uint64_t(64) << 10, uint64_t(4) << 20, uint64_t(64) << 20})
        benchmark::RegisterBenchmark(("Memory/topic/" + std::to_string(cap)).c_str(),
                                     [=](benchmark::State& st) { memory_per_topic(st, cap); })
            ->Iterations(1);
    // Reach: the C API beside the C++ calls it wraps; a reader asleep in a wait set (wait() and
    // the descriptor through epoll) of 1, 16 and 256 subscriptions beside one asleep in receive().
    std::vector<std::string> reach = {"shmbus_spin", "shmbus_c", "shmbus_block"};
    for (int n : {1, 16, 256})
        for (const char* kind : {"shmbus_wait", "shmbus_fd"}) reach.push_back(kind + std::to_string(n));
    // Readers that sleep get a 50 us pause before each ping, so that they are asleep when it comes.
    for (const auto& t : reach) {
        const bool spins = t == "shmbus_spin" || t == "shmbus_c";
        benchmark::RegisterBenchmark(("Reach/" + t + "/64").c_str(),
                                     [t, spins](benchmark::State& st) { latency(st, t, 64, spins ? 0 : 50'000); })
            ->Iterations(spins ? 100000 : 10000)
            ->Repetitions(kRepetitions)
            ->UseManualTime()
            ->Unit(benchmark::kNanosecond);
    }
    register_against_aeron();
    register_python_benchmarks();
    register_recovery_benchmarks();
    register_work_queue_benchmarks();
    register_archive_benchmarks();
    register_breakdown_benchmarks();
    // The ping-pong with an archiver reading behind each topic, beside the same link without.
    for (const char* t : {"shmbus_spin", "shmbus_archived"})
        benchmark::RegisterBenchmark(("ArchiveLatency/" + std::string(t) + "/64").c_str(),
                                     [t](benchmark::State& st) { latency(st, t, 64); })
            ->Iterations(int64_t(latency_rounds(64)))
            ->Repetitions(kRepetitions)
            ->UseManualTime()
            ->Unit(benchmark::kNanosecond);
}

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown";
}

void add_context() {
    utsname u{};
    uname(&u);
    benchmark::AddCustomContext("machine", std::string(u.nodename) + " " + u.sysname + " " + u.release + " " + u.machine);
    benchmark::AddCustomContext("cpu_model", cpu_model());
    benchmark::AddCustomContext("cpus_online", std::to_string(cpu_count()));
    benchmark::AddCustomContext("compiler", std::string("g++ ") + __VERSION__);
    benchmark::AddCustomContext("shmbus_build_type", SHMBUS_BENCH_BUILD_TYPE);
    // scripts/bench.sh passes the commit it runs at; the configure-time value can be stale.
    const char* commit = std::getenv("SHMBUS_BENCH_COMMIT");
    benchmark::AddCustomContext("shmbus_commit", commit != nullptr && *commit != '\0' ? commit : SHMBUS_BENCH_COMMIT);
    std::string missing;
    for (const auto& m : missing_transports()) missing += (missing.empty() ? "" : "; ") + m;
    for (const auto& m : missing_work_queue_peers()) missing += (missing.empty() ? "" : "; ") + m;
    for (const auto& m : missing_python_peers()) missing += (missing.empty() ? "" : "; ") + m;
    benchmark::AddCustomContext("transports_left_out", missing.empty() ? "none" : missing);
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
    (void)bench::Clock::ns_per_tick();  // calibrate before any fork
    bench::block_sigchld();
    bench::add_context();
    bench::register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
