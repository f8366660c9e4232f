#include "work_queue.h"

#include <atomic>
#include <cstdlib>
#include <optional>

#include "harness.h"
#include "links.h"
#include "shmbus/shmbus.h"
#include "work_queue_run.h"

namespace bench {
namespace queue {

void register_queue(const std::string& peer, uint64_t total, QueueRun run) {
    for (int members : {1, 2, 4, 8})
        benchmark::RegisterBenchmark(("WorkQueue/" + peer + "/64/" + std::to_string(members) + "members").c_str(),
                                     [=](benchmark::State& st) { run(st, members, total); })
            ->Iterations(1)
            ->Repetitions(kRepeats)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
}


}  // namespace queue

namespace {

using namespace queue;

// ---- shmbus ----

// `spin`: a member with a core of its own. Otherwise it spins briefly, and not at all where the
// producer and members outnumber the cores (a spinning member would take the producer's core).
shmbus::SubscribeOptions member_options(bool spin, int processes = 0) {
    shmbus::SubscribeOptions o;
    o.group = "workers";
    o.group_settings.window = kWindow;
    o.auto_ack = false;
    o.wait = spin ? shmbus::WaitStrategy::busy_spin : shmbus::WaitStrategy::spin_then_sleep;
    (void)processes;
    return o;
}

// A fresh topic with its group created before the first message (`ordered`: ordered by key).
std::optional<std::string> fresh_queue(std::string& why, bool ordered = false) {
    if (!ensure_shmbusd(why)) return std::nullopt;
    auto c = connect_bus();
    if (!c) {
        why = c.error().message;
        return std::nullopt;
    }
    const std::string topic = "wq" + std::to_string(getpid()) + "-" + std::to_string(g_queue_counter++);
    shmbus::TopicConfig config;
    config.capacity = 4u << 20;
    if (auto st = c->create_topic(topic, config); !st) {
        why = st.error().message;
        return std::nullopt;
    }
    shmbus::GroupSettings settings;
    settings.window = kWindow;
    settings.ordered_by_key = ordered;
    if (auto st = c->create_group(topic, "workers", settings, shmbus::StartFrom::earliest); !st) {
        why = st.error().message;
        return std::nullopt;
    }
    return topic;
}

void drop_queue(const std::string& topic) {
    if (auto c = connect_bus()) {
        (void)c->delete_group(topic, "workers");
        (void)c->delete_topic(topic, true);
    }
}

// `keys` != 0: every message carries one of that many keys, in turn, and the group is ordered by
// key (each key's messages one at a time across the members); 0: no keys, an unordered group.
void shmbus_queue_keyed(benchmark::State& state, int members, uint64_t total, uint64_t keys) {
    std::string why;
    const auto topic = fresh_queue(why, keys != 0);
    if (!topic) return fail_run(state, why);
    auto produce = [&](Tally&) {
        auto c = connect_bus();
        if (!c) return 1;
        auto pub = c->publisher(*topic);
        if (!pub) return 1;
        std::byte msg[kSize] = {};
        std::vector<std::string> names;
        for (uint64_t k = 0; k < keys; ++k) names.push_back("key-" + std::to_string(k));
        for (uint64_t i = 0; i < total; ++i) {
            stamp(msg, i);
            const shmbus::MessageOptions o{.key = keys != 0 ? std::string_view(names[i % keys]) : std::string_view()};
            if (pub->publish(msg, o, std::chrono::seconds(30)) != shmbus::PublishStatus::ok) return 2;
        }
        return 0;
    };
    auto consume = [&](Tally& t, int) {
        auto c = connect_bus();
        if (!c) return 1;
        auto sub = c->subscribe(*topic, member_options(false, members + 1));
        if (!sub) return 1;
        while (!finished(t, total)) {
            const auto r = sub->receive([&](const shmbus::Message& m) {
                const Checked c = check(m.payload);  // before the ack: once acked, its bytes may be reused
                if (sub->ack(m) == shmbus::AckStatus::ok) (void)note(t, c, total);
            }, std::chrono::milliseconds(10), kWindow);
            if (r.status == shmbus::ReceiveStatus::corrupt) return 3;
        }
        return 0;
    };
    run_queue(state, members, total, produce, consume);
    drop_queue(*topic);
}

void shmbus_queue(benchmark::State& state, int members, uint64_t total) { shmbus_queue_keyed(state, members, total, 0); }
// Ordered by key over 1,000 keys: the same members, the same messages, each with a key.
void shmbus_ordered_queue(benchmark::State& state, int members, uint64_t total) {
    shmbus_queue_keyed(state, members, total, kOrderedKeys);
}

// One job at a time: the publisher stamps the time, a spinning member's handler reads it.
void shmbus_job_latency(benchmark::State& state, uint64_t rounds) {
    std::string why;
    const auto topic = fresh_queue(why);
    if (!topic) return fail_run(state, why);
    struct Shared {
        std::atomic<uint64_t> handled{0};
        std::atomic<uint64_t> bad{0};
        std::atomic<uint64_t> samples[1];  // followed by more (mapped larger below)
    };
    const std::size_t bytes = sizeof(Shared) + rounds * sizeof(uint64_t);
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return fail_run(state, "no shared memory");
    auto* shared = new (mem) Shared{};
    Signal ready;
    Partner member(1, [&] {
        auto c = connect_bus();
        if (!c) return 1;
        auto sub = c->subscribe(*topic, member_options(true));
        if (!sub) return 1;
        ready.post();
        while (shared->handled.load(std::memory_order_relaxed) < rounds) {
            (void)sub->receive([&](const shmbus::Message& m) {
                const uint64_t now = Clock::ticks();
                uint64_t sent = 0, seq = seq_of(m.payload);
                std::memcpy(&sent, m.payload.data() + 16, 8);
                if (!verify(m.payload.first(16), seq, 16) || m.payload.size() != kSize) shared->bad.fetch_add(1);
                if (seq < rounds) shared->samples[seq].store(now - sent, std::memory_order_relaxed);
                (void)sub->ack(m);
                shared->handled.fetch_add(1, std::memory_order_release);
            }, std::chrono::seconds(1), 1);
        }
        return 0;
    });
    int rc = 0;
    {
        Partner publisher(0, [&] {
            auto c = connect_bus();
            if (!c) return 1;
            auto pub = c->publisher(*topic);
            if (!pub) return 1;
            std::byte msg[kSize] = {};
            for (uint64_t i = 0; i < rounds; ++i) {
                stamp(std::span<std::byte>(msg, 16), i);
                const uint64_t now = Clock::ticks();
                std::memcpy(msg + 16, &now, 8);
                if (pub->publish(msg) != shmbus::PublishStatus::ok) return 2;
                while (shared->handled.load(std::memory_order_acquire) <= i) {
#if defined(__x86_64__)
                    __builtin_ia32_pause();
#endif
                }
            }
            return 0;
        });
        ready.wait();
        rc = publisher.join(kTimeout);
    }
    rc |= member.join(kTimeout);
    std::vector<uint64_t> samples(rounds);
    for (uint64_t i = 0; i < rounds; ++i) samples[i] = shared->samples[i].load();
    const uint64_t bad = shared->bad.load();
    munmap(mem, bytes);
    drop_queue(*topic);
    if (rc != 0 || bad != 0) return fail_run(state, "a partner failed or a message was damaged");
    // The first tenth warms up.
    std::vector<uint64_t> measured(samples.begin() + std::ptrdiff_t(rounds / 10), samples.end());
    const Percentiles p = percentiles(measured, 1.0);
    for (auto _ : state) state.SetIterationTime(p.p50 / 1e9);
    state.counters["p50_ns"] = p.p50;
    state.counters["p99_ns"] = p.p99;
    state.counters["p999_ns"] = p.p999;
}

// What ack() and nack() cost one member, alone (no contention): timed around the call only.
void shmbus_settle_cost(benchmark::State& state, bool nack, uint64_t total) {
    std::string why;
    const auto topic = fresh_queue(why);
    if (!topic) return fail_run(state, why);
    auto c = connect_bus();
    auto pub = c ? c->publisher(*topic) : shmbus::Result<shmbus::Publisher>(shmbus::make_error(shmbus::Errc::io_error, "no bus"));
    auto sub = c ? c->subscribe(*topic, member_options(true)) : shmbus::Result<shmbus::Subscriber>(pub.error());
    if (!pub || !sub) return fail_run(state, "cannot attach");
    pin_to_cpu(0);
    std::byte msg[kSize] = {};
    uint64_t ticks = 0, settled = 0, failures = 0;
    std::vector<shmbus::Message> batch;
    for (uint64_t i = 0; settled < total && failures == 0;) {
        for (uint64_t k = 0; k < kWindow && i < total; ++k, ++i) {
            stamp(msg, i);
            failures += pub->publish(msg) != shmbus::PublishStatus::ok;
        }
        batch.clear();
        (void)sub->receive([&](const shmbus::Message& m) { batch.push_back(m); }, std::chrono::seconds(1), kWindow);
        for (const auto& m : batch) {
            const uint64_t t0 = Clock::ticks();
            const auto st = nack ? sub->nack(m, std::chrono::nanoseconds(1)) : sub->ack(m);
            ticks += Clock::ticks() - t0;
            failures += st != shmbus::AckStatus::ok;
            ++settled;
        }
        if (nack)  // take the redeliveries back and ack them, untimed
            while (sub->in_flight() > 0 || c->topic_stats(*topic)->groups[0].waiting_retry > 0)
                (void)sub->receive([&](const shmbus::Message& m) { (void)sub->ack(m); }, std::chrono::milliseconds(5));
    }
    pub = shmbus::make_error(shmbus::Errc::ok, "");
    sub = shmbus::make_error(shmbus::Errc::ok, "");
    drop_queue(*topic);
    if (failures != 0) return fail_run(state, "a settle failed");
    const double ns = double(ticks) * Clock::ns_per_tick() / double(settled);
    for (auto _ : state) state.SetIterationTime(ns / 1e9);
    state.counters["ns_per_op"] = ns;
}


}  // namespace

void register_work_queue_benchmarks() {
    register_queue("shmbus", 400'000, shmbus_queue);
    register_queue("shmbus_ordered_by_key", 400'000, shmbus_ordered_queue);
    register_peer_queues();
    benchmark::RegisterBenchmark("WorkQueueLatency/shmbus_spin/64", [](benchmark::State& st) { shmbus_job_latency(st, 100'000); })
        ->Iterations(1)
        ->Repetitions(kRepeats)
        ->UseManualTime()
        ->Unit(benchmark::kNanosecond);
    for (bool nack : {false, true})
        benchmark::RegisterBenchmark(nack ? "WorkQueueCost/nack" : "WorkQueueCost/ack",
                                     [=](benchmark::State& st) { shmbus_settle_cost(st, nack, 20'000); })
            ->Iterations(1)
            ->Repetitions(kRepeats)
            ->UseManualTime()
            ->Unit(benchmark::kNanosecond);
}

}  // namespace bench
