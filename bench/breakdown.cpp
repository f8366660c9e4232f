// The per-message breakdown (breakdown.h). Every figure is one thread on one pinned core, the
// data in its cache: what a message costs in instructions, apart from the line transfers a
// ping-pong adds (Latency/cacheline is that floor).
//
//   Breakdown/rdtsc                  the timestamp a publish takes (one rdtsc)
//   Breakdown/cas16                  the 16-byte compare-and-swap a multi-producer claim takes
//   Breakdown/store16                the 16-byte store a single-producer claim takes instead
//   Breakdown/copy/64                one 64-byte copy (a publish copies the payload in once)
//   Breakdown/publish/<kind>/64      Publisher::publish on a multi-producer or single-producer topic
//   Breakdown/publish_batch/<n>/64   publish_batch() of n messages, per message
//   Breakdown/poll/<reader>/64       Subscriber::poll of one message per call, per message (ephemeral:
//                                    validated copy; durable: in place, acked per poll)
//   Breakdown/poll_batch/<reader>/64 the same, up to 64 messages per poll
//   Breakdown/poll_empty/<reader>    Subscriber::poll of an empty ring: one turn of a spinning
//                                    receive() (its PAUSE apart), which bounds how soon it sees a record
#include "breakdown.h"

#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "harness.h"
#include "links.h"
#include "shmbus/shmbus.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace bench {
namespace {

std::atomic<int> g_breakdown_topics{0};

std::string fresh_topic() { return "bd" + std::to_string(getpid()) + "-" + std::to_string(g_breakdown_topics++); }

void rdtsc_cost(benchmark::State& state) {
    pin_to_cpu(0);
    uint64_t sum = 0;
    for (auto _ : state) sum += __builtin_ia32_rdtsc();
    benchmark::DoNotOptimize(sum);
}

void cas16_cost(benchmark::State& state) {
    pin_to_cpu(0);
    __extension__ typedef unsigned __int128 u128;
    alignas(16) static u128 word = 0;
    u128 seen = 0;
    for (auto _ : state) {
        const u128 next = seen + (u128(1) << 64) + 64;
        if (__sync_bool_compare_and_swap(&word, seen, next)) seen = next;
    }
    benchmark::DoNotOptimize(word);
}

__attribute__((target("avx"))) void store16_cost(benchmark::State& state) {
    pin_to_cpu(0);
    alignas(16) static __m128i word;
    uint64_t i = 0;
    for (auto _ : state) {
        const __m128i v = _mm_set_epi64x(int64_t(i), int64_t(i * 64));
        asm volatile("vmovdqa %1, %0" : "=m"(word) : "x"(v) : "memory");
        ++i;
    }
    benchmark::DoNotOptimize(word);
}

void copy_cost(benchmark::State& state) {
    pin_to_cpu(0);
    alignas(64) std::byte src[64] = {}, dst[64];
    for (auto _ : state) {
        benchmark::DoNotOptimize(src);
        std::memcpy(dst, src, sizeof dst);
        benchmark::ClobberMemory();
    }
}

// A 1 MiB topic on the shared shmbusd: it stays in the cache, as a busy topic's ring does.
bool make_topic(benchmark::State& state, const std::string& name, bool single_producer, std::optional<shmbus::Client>& client) {
    std::string why;
    if (!ensure_shmbusd(why)) return fail_run(state, why), false;
    auto c = connect_bus();
    if (!c) return fail_run(state, "cannot connect"), false;
    shmbus::TopicConfig config;
    config.capacity = 1u << 20;
    config.single_producer = single_producer;
    if (!c->create_topic(name, config)) return fail_run(state, "cannot create the topic"), false;
    client.emplace(std::move(c.value()));
    return true;
}

void publish_cost(benchmark::State& state, bool single_producer) {
    std::optional<shmbus::Client> client;
    const std::string name = fresh_topic();
    if (!make_topic(state, name, single_producer, client)) return;
    auto pub = client->publisher(name);
    if (!pub) return fail_run(state, "cannot publish");
    pin_to_cpu(0);
    std::byte msg[64] = {};
    uint64_t failures = 0, i = 0;
    for (auto _ : state) {
        stamp(msg, i++);
        failures += pub->publish(msg) != shmbus::PublishStatus::ok;
    }
    pub = shmbus::make_error(shmbus::Errc::ok, "");
    (void)client->delete_topic(name);
    if (failures != 0) fail_run(state, "publish failed");
}

void publish_batch_cost(benchmark::State& state, std::size_t n) {
    std::optional<shmbus::Client> client;
    const std::string name = fresh_topic();
    if (!make_topic(state, name, true, client)) return;
    auto pub = client->publisher(name);
    if (!pub) return fail_run(state, "cannot publish");
    pin_to_cpu(0);
    std::vector<std::vector<std::byte>> store(n, std::vector<std::byte>(64));
    std::vector<std::span<const std::byte>> batch(store.begin(), store.end());
    uint64_t failures = 0, i = 0;
    const uint64_t t0 = Clock::ticks();
    for (auto _ : state) {
        for (auto& m : store) stamp(m, i++);
        failures += pub->publish_batch(batch).published != n;
    }
    state.counters["ns_per_message"] = double(Clock::ticks() - t0) * Clock::ns_per_tick() / double(i ? i : 1);
    pub = shmbus::make_error(shmbus::Errc::ok, "");
    (void)client->delete_topic(name);
    if (failures != 0) fail_run(state, "publish failed");
}

// Rounds of kRound messages: published untimed, then read; only the reads are timed.
void poll_cost(benchmark::State& state, bool durable, std::size_t per_poll) {
    constexpr uint64_t kRound = 4096;  // 384 KiB of records: under the ring, so nothing is overrun
    std::optional<shmbus::Client> client;
    const std::string name = fresh_topic();
    if (!make_topic(state, name, true, client)) return;
    shmbus::SubscribeOptions o;
    o.from = shmbus::StartFrom::earliest;
    if (durable) o.durable_name = "d";
    auto sub = client->subscribe(name, o);
    auto pub = client->publisher(name);
    if (!sub || !pub) return fail_run(state, "cannot subscribe");
    pin_to_cpu(0);
    std::byte msg[64] = {};
    uint64_t sent = 0, expected = 0, bad = 0, ticks = 0;
    auto check = [&](const shmbus::Message& m) { bad += !verify(m.payload, expected++, 64); };
    for (auto _ : state) {
        for (uint64_t i = 0; i < kRound; ++i) {
            stamp(msg, sent++);
            bad += pub->publish(msg) != shmbus::PublishStatus::ok;
        }
        const uint64_t t0 = Clock::ticks();
        for (uint64_t got = 0; got < kRound;) {
            const auto r = sub->poll(check, per_poll);
            if (r.count == 0) break;
            got += r.count;
        }
        const uint64_t t1 = Clock::ticks();
        ticks += t1 - t0;
        state.SetIterationTime(double(t1 - t0) * Clock::ns_per_tick() / 1e9);
    }
    state.counters["ns_per_message"] = double(ticks) * Clock::ns_per_tick() / double(expected ? expected : 1);
    sub = shmbus::make_error(shmbus::Errc::ok, "");
    pub = shmbus::make_error(shmbus::Errc::ok, "");
    (void)client->delete_topic(name);
    if (bad != 0 || expected != sent) fail_run(state, "a message was missing or failed its checksum");
}

// Polls of a ring with nothing to read: what a spinning reader does between two records.
void empty_poll_cost(benchmark::State& state, bool durable) {
    std::optional<shmbus::Client> client;
    const std::string name = fresh_topic();
    if (!make_topic(state, name, true, client)) return;
    shmbus::SubscribeOptions o;
    if (durable) o.durable_name = "d";
    auto sub = client->subscribe(name, o);
    if (!sub) return fail_run(state, "cannot subscribe");
    pin_to_cpu(0);
    uint64_t got = 0;
    auto count = [&](const shmbus::Message&) { ++got; };
    for (auto _ : state) got += sub->poll(count, 1).status != shmbus::ReceiveStatus::empty;
    sub = shmbus::make_error(shmbus::Errc::ok, "");
    (void)client->delete_topic(name);
    if (got != 0) fail_run(state, "an empty ring delivered something");
}

}  // namespace

void register_breakdown_benchmarks() {
    constexpr int64_t kRounds = 2'000'000;
    benchmark::RegisterBenchmark("Breakdown/rdtsc", rdtsc_cost)->Iterations(kRounds);
    benchmark::RegisterBenchmark("Breakdown/cas16", cas16_cost)->Iterations(kRounds);
    if (__builtin_cpu_supports("avx")) benchmark::RegisterBenchmark("Breakdown/store16", store16_cost)->Iterations(kRounds);
    benchmark::RegisterBenchmark("Breakdown/copy/64", copy_cost)->Iterations(kRounds);
    benchmark::RegisterBenchmark("Breakdown/publish/multi_producer/64", [](benchmark::State& s) { publish_cost(s, false); })
        ->Iterations(kRounds);
    benchmark::RegisterBenchmark("Breakdown/publish/single_producer/64", [](benchmark::State& s) { publish_cost(s, true); })
        ->Iterations(kRounds);
    for (std::size_t n : {std::size_t(16), std::size_t(64)})
        benchmark::RegisterBenchmark(("Breakdown/publish_batch/" + std::to_string(n) + "/64").c_str(),
                                     [n](benchmark::State& s) { publish_batch_cost(s, n); })
            ->Iterations(kRounds / int64_t(n));
    for (bool durable : {false, true}) {
        const std::string reader = durable ? "durable" : "ephemeral";
        for (std::size_t per_poll : {std::size_t(1), std::size_t(64)})
            benchmark::RegisterBenchmark(("Breakdown/" + std::string(per_poll == 1 ? "poll/" : "poll_batch/") + reader + "/64").c_str(),
                                         [durable, per_poll](benchmark::State& s) { poll_cost(s, durable, per_poll); })
                ->Iterations(200)
                ->UseManualTime();
        benchmark::RegisterBenchmark(("Breakdown/poll_empty/" + reader).c_str(), [durable](benchmark::State& s) { empty_poll_cost(s, durable); })
            ->Iterations(kRounds);
    }
}

}  // namespace bench
