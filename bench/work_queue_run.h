// shmbus-bench: what the work-queue runs share, shmbus's and its peers' (work_queue.cpp,
// work_queue_peers.cpp): the message, the tally every member counts into, and the run itself.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace bench::queue {

inline constexpr std::size_t kSize = 64;
inline constexpr uint32_t kWindow = 64;  // the group's window, RabbitMQ's prefetch, XREADGROUP's COUNT
inline constexpr int kRepeats = 3;
inline constexpr auto kTimeout = std::chrono::seconds(120);
// Ordered-by-key runs: message i has key i % kOrderedKeys. The peers partition by key: a key's
// partition (one per member) by a hash, as a partitioner does.
inline constexpr uint64_t kOrderedKeys = 1000;
inline int key_partition(uint64_t key, int partitions) {
    return int(std::hash<std::string>{}("key-" + std::to_string(key)) % uint64_t(partitions));
}

// What the members of one run share: acks so far, the sum of acked sequence numbers (each
// message acked once sums to n(n-1)/2), checksum failures, and when the last ack happened.
struct Tally {
    std::atomic<uint64_t> acked{0};
    std::atomic<uint64_t> seq_sum{0};
    std::atomic<uint64_t> bad{0};
    std::atomic<uint64_t> last_ack_ticks{0};
    std::atomic<uint64_t> ready{0};
};

struct Checked {
    uint64_t seq;
    bool ok;  // size and checksum right
};
inline Checked check(std::span<const std::byte> msg) {
    const uint64_t seq = seq_of(msg);
    return {seq, verify(msg, seq, kSize)};
}

// Counts one processed (and acked) message; true once all `total` are.
inline bool note(Tally& t, Checked c, uint64_t total) {
    if (!c.ok) t.bad.fetch_add(1, std::memory_order_relaxed);
    t.seq_sum.fetch_add(c.seq, std::memory_order_relaxed);
    const uint64_t done = t.acked.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (done == total) t.last_ack_ticks.store(Clock::ticks(), std::memory_order_release);
    return done >= total;
}

inline bool finished(const Tally& t, uint64_t total) { return t.acked.load(std::memory_order_acquire) >= total; }

// Runs one producer and `members` consumers as processes (spread over the CPUs), all started
// together; reports messages per second from the start to the last ack, and fails the run if any
// message was lost, repeated or damaged.
inline void run_queue(benchmark::State& state, int members, uint64_t total, const std::function<int(Tally&)>& produce,
               const std::function<int(Tally&, int)>& consume) {
    Tally* tally = shared_object<Tally>();
    if (tally == nullptr) return fail_run(state, "no shared memory");
    // A core each where there are enough; otherwise the scheduler places them (pinning two busy
    // processes to one core while another idles would measure the pinning).
    const bool pinned = members + 1 <= cpu_count();
    std::vector<Partner> partners;
    Signal go;
    for (int m = 0; m < members; ++m)
        partners.emplace_back(pinned ? 1 + m : -1, [&, m] {
            tally->ready.fetch_add(1);
            go.wait();
            return consume(*tally, m);
        });
    Partner producer(pinned ? 0 : -1, [&] {
        go.wait();
        return produce(*tally);
    });
    while (tally->ready.load() < uint64_t(members)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the members are waiting on `go`
    const uint64_t start = Clock::ticks();
    for (int i = 0; i <= members; ++i) go.post();
    int failed = producer.join(kTimeout) != 0;
    for (auto& p : partners) failed += p.join(kTimeout) != 0;
    const uint64_t acked = tally->acked.load(), sum = tally->seq_sum.load(), bad = tally->bad.load();
    const double seconds = double(tally->last_ack_ticks.load() - start) * Clock::ns_per_tick() / 1e9;
    release_shared(tally);
    const uint64_t expected_sum = total * (total - 1) / 2;
    if (failed != 0) return fail_run(state, "a producer or member failed");
    if (acked != total || sum != expected_sum || bad != 0)
        return fail_run(state, "lost, repeated or damaged messages: " + std::to_string(acked) + " acked of " +
                                   std::to_string(total) + ", " + std::to_string(bad) + " bad");
    for (auto _ : state) state.SetIterationTime(seconds);
    state.counters["msgs_per_s"] = double(total) / seconds;
    state.counters["members"] = members;
}


// Names of the topics, streams and queues of this process's runs.
inline std::atomic<int> g_queue_counter{0};

using QueueRun = void (*)(benchmark::State&, int, uint64_t);
// WorkQueue/<peer>/64/<n>members for 1, 2, 4 and 8 members.
void register_queue(const std::string& peer, uint64_t total, QueueRun run);
// The peers' runs (work_queue_peers.cpp), registered where their client libraries were built in.
void register_peer_queues();

}  // namespace bench::queue
