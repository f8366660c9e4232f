#include "work_queue.h"

#include "net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

#include "harness.h"
#include "links.h"
#include "shmbus/shmbus.h"

#if SHMBUS_BENCH_HAVE_RABBITMQ
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif
#if SHMBUS_BENCH_HAVE_REDIS
#include <hiredis/hiredis.h>
#endif

namespace bench {
namespace {

using shmbus::test::free_port;

constexpr std::size_t kSize = 64;
constexpr uint32_t kWindow = 64;  // the group's window, RabbitMQ's prefetch, XREADGROUP's COUNT
constexpr int kRepeats = 3;
constexpr auto kTimeout = std::chrono::seconds(120);
// Ordered-by-key runs: message i has key i % kOrderedKeys. The peers partition by key: a key's
// partition (one per member) by a hash, as a partitioner does.
constexpr uint64_t kOrderedKeys = 1000;
[[maybe_unused]] int key_partition(uint64_t key, int partitions) {
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
Checked check(std::span<const std::byte> msg) {
    const uint64_t seq = seq_of(msg);
    return {seq, verify(msg, seq, kSize)};
}

// Counts one processed (and acked) message; true once all `total` are.
bool note(Tally& t, Checked c, uint64_t total) {
    if (!c.ok) t.bad.fetch_add(1, std::memory_order_relaxed);
    t.seq_sum.fetch_add(c.seq, std::memory_order_relaxed);
    const uint64_t done = t.acked.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (done == total) t.last_ack_ticks.store(Clock::ticks(), std::memory_order_release);
    return done >= total;
}

bool finished(const Tally& t, uint64_t total) { return t.acked.load(std::memory_order_acquire) >= total; }

// Runs one producer and `members` consumers as processes (spread over the CPUs), all started
// together; reports messages per second from the start to the last ack, and fails the run if any
// message was lost, repeated or damaged.
void run_queue(benchmark::State& state, int members, uint64_t total, const std::function<int(Tally&)>& produce,
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

// ---- shmbus ----

std::atomic<int> g_queue_counter{0};

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

// ---- servers for the peers ----
// Built with the peers that are (their client libraries were found).
#if SHMBUS_BENCH_HAVE_REDIS || SHMBUS_BENCH_HAVE_RABBITMQ
bool executable(const char* path) { return access(path, X_OK) == 0; }

// A server process in its own process group and scratch directory, stopped (group and all) and
// removed at exit.
struct Server {
    pid_t pid = -1;
    pid_t owner = -1;
    std::string dir;
    int port = 0;
    std::function<void()> before_stop;
};
Server g_redis, g_rabbit;

void stop_server(Server& s) {
    if (s.pid <= 0 || s.owner != getpid()) return;
    if (s.before_stop) s.before_stop();
    kill(-s.pid, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (waitpid(s.pid, nullptr, WNOHANG) == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    kill(-s.pid, SIGKILL);
    waitpid(s.pid, nullptr, 0);
    s.pid = -1;
    std::error_code ec;
    std::filesystem::remove_all(s.dir, ec);
}

void stop_servers() {
    stop_server(g_redis);
    stop_server(g_rabbit);
}

pid_t spawn_server(const std::vector<std::string>& args, const std::vector<std::string>& env, const std::string& log) {
    const pid_t pid = fork();
    if (pid != 0) return pid;
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (FILE* f = std::freopen(log.c_str(), "w", stdout)) (void)f;
    (void)!dup2(STDOUT_FILENO, STDERR_FILENO);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
}

bool scratch_dir(Server& s, const char* name, std::string& why) {
    std::string tmpl = std::string("/tmp/shmbus-bench-") + name + "-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
        why = "cannot create a scratch directory";
        return false;
    }
    s.dir = tmpl;
    s.port = free_port();
    static bool registered = false;
    if (!registered) std::atexit(stop_servers), registered = true;
    return true;
}

std::string log_tail(const std::string& path) {
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.size() > 300 ? text.substr(text.size() - 300) : text;
}
#endif

// ---- Redis Streams ----
#if SHMBUS_BENCH_HAVE_REDIS
constexpr const char* kRedisServer = "/usr/bin/redis-server";

redisContext* redis_connect() {
    redisContext* c = redisConnect("127.0.0.1", g_redis.port);
    if (c != nullptr && c->err) {
        redisFree(c);
        return nullptr;
    }
    return c;
}

bool ensure_redis(std::string& why) {
    if (g_redis.pid > 0) return true;
    if (!executable(kRedisServer)) {
        why = "redis-server is not installed (scripts/bench.sh installs it)";
        return false;
    }
    if (!scratch_dir(g_redis, "redis", why)) return false;
    g_redis.pid = spawn_server({kRedisServer, "--port", std::to_string(g_redis.port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", g_redis.dir, "--daemonize", "no"},
                               {}, g_redis.dir + "/redis.log");
    g_redis.owner = getpid();
    for (int i = 0; i < 500; ++i) {
        if (redisContext* c = redis_connect()) {
            redisFree(c);
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    why = "redis-server did not start: " + log_tail(g_redis.dir + "/redis.log");
    return false;
}

bool redis_ok(redisReply* r) {
    const bool ok = r != nullptr && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
    return ok;
}

// `partitions` 0: one stream, one consumer group over it (unordered). Otherwise ordered by key,
// as Kafka orders: one stream per member, each message to the stream its key hashes to (1,000
// keys in turn), each stream read by its member alone, so a key's messages are processed one at a
// time in order.
void redis_queue_partitioned(benchmark::State& state, int members, uint64_t total, bool by_key) {
    std::string why;
    if (!ensure_redis(why)) return fail_run(state, why);
    const std::string base = "wq" + std::to_string(g_queue_counter++);
    const int streams = by_key ? members : 1;
    auto stream_name = [&](int i) { return base + "-" + std::to_string(i); };
    {
        redisContext* c = redis_connect();
        if (c == nullptr) return fail_run(state, "cannot connect to redis");
        bool ok = true;
        for (int i = 0; i < streams; ++i)
            ok = ok && redis_ok(static_cast<redisReply*>(redisCommand(c, "XGROUP CREATE %s workers 0 MKSTREAM", stream_name(i).c_str())));
        redisFree(c);
        if (!ok) return fail_run(state, "XGROUP CREATE failed");
    }
    auto produce = [&](Tally&) {
        redisContext* c = redis_connect();
        if (c == nullptr) return 1;
        std::byte msg[kSize] = {};
        constexpr uint64_t kPipeline = 256;
        std::vector<std::string> names;
        for (int i = 0; i < streams; ++i) names.push_back(stream_name(i));
        for (uint64_t i = 0; i < total;) {
            const uint64_t n = std::min(kPipeline, total - i);
            for (uint64_t k = 0; k < n; ++k, ++i) {
                stamp(msg, i);
                const std::string& stream = names[by_key ? key_partition(i % kOrderedKeys, streams) : 0];
                redisAppendCommand(c, "XADD %s * m %b", stream.c_str(), msg, kSize);
            }
            for (uint64_t k = 0; k < n; ++k) {
                void* reply = nullptr;
                if (redisGetReply(c, &reply) != REDIS_OK || !redis_ok(static_cast<redisReply*>(reply))) return 2;
            }
        }
        redisFree(c);
        return 0;
    };
    auto consume = [&](Tally& t, int m) {
        redisContext* c = redis_connect();
        if (c == nullptr) return 1;
        const std::string name = "c" + std::to_string(m);
        const std::string stream = stream_name(by_key ? m : 0);
        while (!finished(t, total)) {
            auto* r = static_cast<redisReply*>(redisCommand(c, "XREADGROUP GROUP workers %s COUNT %u BLOCK 10 STREAMS %s >",
                                                            name.c_str(), kWindow, stream.c_str()));
            if (r == nullptr) return 2;
            std::vector<std::pair<std::string, std::string>> got;  // (entry id, payload)
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
                const redisReply* entries = r->element[0]->element[1];
                for (std::size_t i = 0; i < entries->elements; ++i) {
                    const redisReply* e = entries->element[i];
                    const redisReply* fields = e->element[1];
                    if (fields->elements >= 2) got.emplace_back(e->element[0]->str, std::string(fields->element[1]->str, fields->element[1]->len));
                }
            }
            freeReplyObject(r);
            for (const auto& [id, payload] : got) redisAppendCommand(c, "XACK %s workers %s", stream.c_str(), id.c_str());
            for (const auto& [id, payload] : got) {
                void* reply = nullptr;
                if (redisGetReply(c, &reply) != REDIS_OK || !redis_ok(static_cast<redisReply*>(reply))) return 2;
                (void)note(t, check(std::as_bytes(std::span<const char>(payload.data(), payload.size()))), total);
            }
        }
        redisFree(c);
        return 0;
    };
    run_queue(state, members, total, produce, consume);
    if (redisContext* c = redis_connect()) {
        for (int i = 0; i < streams; ++i) redis_ok(static_cast<redisReply*>(redisCommand(c, "DEL %s", stream_name(i).c_str())));
        redisFree(c);
    }
}
void redis_queue(benchmark::State& state, int members, uint64_t total) { redis_queue_partitioned(state, members, total, false); }
void redis_ordered_queue(benchmark::State& state, int members, uint64_t total) { redis_queue_partitioned(state, members, total, true); }
#endif

// ---- RabbitMQ ----
#if SHMBUS_BENCH_HAVE_RABBITMQ
constexpr const char* kRabbitServer = "/usr/sbin/rabbitmq-server";

struct Amqp {
    amqp_connection_state_t conn = nullptr;
    bool open(int port) {
        conn = amqp_new_connection();
        amqp_socket_t* s = amqp_tcp_socket_new(conn);
        if (s == nullptr || amqp_socket_open(s, "127.0.0.1", port) != AMQP_STATUS_OK) return false;
        if (amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type != AMQP_RESPONSE_NORMAL)
            return false;
        amqp_channel_open(conn, 1);
        return amqp_get_rpc_reply(conn).reply_type == AMQP_RESPONSE_NORMAL;
    }
    ~Amqp() {
        if (conn == nullptr) return;
        amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn);
    }
};

bool ensure_rabbit(std::string& why) {
    if (g_rabbit.pid > 0) return true;
    if (!executable(kRabbitServer)) {
        why = "rabbitmq-server is not installed (scripts/bench.sh installs it)";
        return false;
    }
    if (!scratch_dir(g_rabbit, "rabbitmq", why)) return false;
    const std::string node = "shmbusbench" + std::to_string(getpid()) + "@localhost";
    std::ofstream(g_rabbit.dir + "/enabled_plugins") << "[].\n";
    // Run as root, rabbitmq-server drops to its own user: the scratch directory must be its.
    if (const passwd* user = getuid() == 0 ? getpwnam("rabbitmq") : nullptr) {
        (void)!chown(g_rabbit.dir.c_str(), user->pw_uid, user->pw_gid);
        (void)!chown((g_rabbit.dir + "/enabled_plugins").c_str(), user->pw_uid, user->pw_gid);
    }
    const std::vector<std::string> env = {"HOME=" + g_rabbit.dir,
                                          "RABBITMQ_NODENAME=" + node,
                                          "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
                                          "RABBITMQ_NODE_PORT=" + std::to_string(g_rabbit.port),
                                          "RABBITMQ_DIST_PORT=" + std::to_string(free_port()),
                                          "RABBITMQ_MNESIA_BASE=" + g_rabbit.dir + "/mnesia",
                                          "RABBITMQ_LOG_BASE=" + g_rabbit.dir + "/log",
                                          "RABBITMQ_ENABLED_PLUGINS_FILE=" + g_rabbit.dir + "/enabled_plugins",
                                          "RABBITMQ_FEATURE_FLAGS_FILE=" + g_rabbit.dir + "/feature_flags",
                                          "RABBITMQ_PLUGINS_EXPAND_DIR=" + g_rabbit.dir + "/plugins-expand",
                                          "RABBITMQ_CONFIG_FILE=" + g_rabbit.dir + "/none",
                                          "RABBITMQ_ADVANCED_CONFIG_FILE=" + g_rabbit.dir + "/none.config"};
    const bool epmd_was_running = std::system("pgrep -x epmd >/dev/null 2>&1") == 0;
    g_rabbit.pid = spawn_server({kRabbitServer}, env, g_rabbit.dir + "/rabbitmq.log");
    g_rabbit.owner = getpid();
    g_rabbit.before_stop = [epmd_was_running, env, node] {
        // An orderly stop; epmd, which the node started, goes too unless it ran before.
        std::string cmd;
        for (const auto& e : env) cmd += e + " ";
        (void)std::system((cmd + "rabbitmqctl -n " + node + " stop >/dev/null 2>&1").c_str());
        if (!epmd_was_running) (void)std::system("epmd -kill >/dev/null 2>&1");
    };
    for (int i = 0; i < 1500; ++i) {  // the Erlang node takes seconds to boot
        Amqp a;
        if (a.open(g_rabbit.port)) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(40));
    }
    why = "rabbitmq-server did not start: " + log_tail(g_rabbit.dir + "/rabbitmq.log");
    return false;
}

// `by_key`: ordered by key as on Redis above: one queue per member, each message published to the
// queue its key hashes to (what RabbitMQ's consistent-hash exchange does on the broker), each
// queue consumed by its member alone.
void rabbit_queue_partitioned(benchmark::State& state, int members, uint64_t total, bool by_key) {
    std::string why;
    if (!ensure_rabbit(why)) return fail_run(state, why);
    const std::string base = "wq" + std::to_string(g_queue_counter++);
    const int queues = by_key ? members : 1;
    auto queue_name = [&](int i) { return base + "-" + std::to_string(i); };
    {
        Amqp a;
        if (!a.open(g_rabbit.port)) return fail_run(state, "cannot connect to RabbitMQ");
        for (int i = 0; i < queues; ++i) {
            amqp_queue_declare(a.conn, 1, amqp_cstring_bytes(queue_name(i).c_str()), 0, 0, 0, 0, amqp_empty_table);
            if (amqp_get_rpc_reply(a.conn).reply_type != AMQP_RESPONSE_NORMAL) return fail_run(state, "queue.declare failed");
        }
    }
    auto produce = [&](Tally&) {
        Amqp a;
        if (!a.open(g_rabbit.port)) return 1;
        std::byte msg[kSize] = {};
        std::vector<std::string> names;
        for (int i = 0; i < queues; ++i) names.push_back(queue_name(i));
        for (uint64_t i = 0; i < total; ++i) {
            stamp(msg, i);
            amqp_bytes_t body{kSize, msg};
            const std::string& queue = names[by_key ? key_partition(i % kOrderedKeys, queues) : 0];
            if (amqp_basic_publish(a.conn, 1, amqp_empty_bytes, amqp_cstring_bytes(queue.c_str()), 0, 0, nullptr, body) !=
                AMQP_STATUS_OK)
                return 2;
        }
        return 0;
    };
    auto consume = [&](Tally& t, int m) {
        Amqp a;
        if (!a.open(g_rabbit.port)) return 1;
        amqp_basic_qos(a.conn, 1, 0, uint16_t(kWindow), 0);
        const std::string queue = queue_name(by_key ? m : 0);
        amqp_basic_consume(a.conn, 1, amqp_cstring_bytes(queue.c_str()), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
        if (amqp_get_rpc_reply(a.conn).reply_type != AMQP_RESPONSE_NORMAL) return 2;
        while (!finished(t, total)) {
            amqp_envelope_t env;
            amqp_maybe_release_buffers(a.conn);
            timeval wait{0, 10'000};
            const amqp_rpc_reply_t r = amqp_consume_message(a.conn, &env, &wait, 0);
            if (r.reply_type != AMQP_RESPONSE_NORMAL) {
                if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) continue;
                return 3;
            }
            const std::span<const std::byte> body(static_cast<const std::byte*>(env.message.body.bytes), env.message.body.len);
            const bool acked = amqp_basic_ack(a.conn, 1, env.delivery_tag, 0) == AMQP_STATUS_OK;
            if (acked) (void)note(t, check(body), total);
            amqp_destroy_envelope(&env);
            if (!acked) return 4;
        }
        return 0;
    };
    run_queue(state, members, total, produce, consume);
    Amqp a;
    if (a.open(g_rabbit.port))
        for (int i = 0; i < queues; ++i) amqp_queue_delete(a.conn, 1, amqp_cstring_bytes(queue_name(i).c_str()), 0, 0);
}
void rabbit_queue(benchmark::State& state, int members, uint64_t total) { rabbit_queue_partitioned(state, members, total, false); }
void rabbit_ordered_queue(benchmark::State& state, int members, uint64_t total) { rabbit_queue_partitioned(state, members, total, true); }
#endif

void register_queue(const std::string& peer, uint64_t total, void (*run)(benchmark::State&, int, uint64_t)) {
    for (int members : {1, 2, 4, 8})
        benchmark::RegisterBenchmark(("WorkQueue/" + peer + "/64/" + std::to_string(members) + "members").c_str(),
                                     [=](benchmark::State& st) { run(st, members, total); })
            ->Iterations(1)
            ->Repetitions(kRepeats)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
}

}  // namespace

void register_work_queue_benchmarks() {
    register_queue("shmbus", 400'000, shmbus_queue);
    register_queue("shmbus_ordered_by_key", 400'000, shmbus_ordered_queue);
#if SHMBUS_BENCH_HAVE_REDIS
    register_queue("redis_streams", 100'000, redis_queue);
    register_queue("redis_streams_by_key", 100'000, redis_ordered_queue);
#endif
#if SHMBUS_BENCH_HAVE_RABBITMQ
    register_queue("rabbitmq", 40'000, rabbit_queue);
    register_queue("rabbitmq_by_key", 40'000, rabbit_ordered_queue);
#endif
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

std::vector<std::string> missing_work_queue_peers() {
    std::vector<std::string> out;
#if SHMBUS_BENCH_HAVE_REDIS
    if (!executable(kRedisServer)) out.push_back("redis_streams: redis-server not installed (scripts/bench.sh installs it)");
#else
    out.push_back("redis_streams: built without hiredis (libhiredis-dev)");
#endif
#if SHMBUS_BENCH_HAVE_RABBITMQ
    if (!executable(kRabbitServer)) out.push_back("rabbitmq: rabbitmq-server not installed (scripts/bench.sh installs it)");
#else
    out.push_back("rabbitmq: built without librabbitmq (librabbitmq-dev)");
#endif
    return out;
}

}  // namespace bench
