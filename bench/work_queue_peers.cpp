// shmbus-bench: the work-queue peers, Redis Streams consumer groups and RabbitMQ queues, each
// server started on loopback by the benchmark and stopped after it; built where their client
// libraries were found. Unordered, and ordered by key by partitioning (one stream or queue per
// member).
#include "work_queue.h"

#include "net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include "harness.h"
#include "links.h"
#include "work_queue_run.h"

#if SHMBUS_BENCH_HAVE_RABBITMQ
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif
#if SHMBUS_BENCH_HAVE_REDIS
#include <hiredis/hiredis.h>
#endif

namespace bench {
namespace {

using namespace queue;
using shmbus::test::free_port;

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

}  // namespace

namespace queue {

void register_peer_queues() {
#if SHMBUS_BENCH_HAVE_REDIS
    register_queue("redis_streams", 100'000, redis_queue);
    register_queue("redis_streams_by_key", 100'000, redis_ordered_queue);
#endif
#if SHMBUS_BENCH_HAVE_RABBITMQ
    register_queue("rabbitmq", 40'000, rabbit_queue);
    register_queue("rabbitmq_by_key", 40'000, rabbit_ordered_queue);
#endif
}

}  // namespace queue

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
