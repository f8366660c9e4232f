// shmbus-bridge-bench: the cost of `shmbus bridge`. In one run, against one nats-server with
// JetStream started here on loopback (a temporary store), N messages are stored in a stream two
// ways: published directly with nats.c (asynchronously, a window of 1024 awaiting acks, with the
// same two headers the bridge adds), and published into a shmbus topic that a running bridge
// forwards. Each way runs `rounds` times, alternating; the medians and their ratio are printed
// with the machine, compiler and commit. Goal: the bridge costs at most 10% of direct throughput.
//   shmbus-bridge-bench [MESSAGES] [ROUNDS] [PAYLOAD_BYTES]
#include <nats/nats.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "jetstream.h"
#include "net.h"
#include "shmbus/shmbus.h"
#include "shmbus/version.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
    const pid_t pid = fork();
    if (pid != 0) return pid;
    if (FILE* f = std::freopen(log.c_str(), "w", stdout)) (void)f;
    if (FILE* f = std::freopen(log.c_str(), "a", stderr)) (void)f;
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
}

void stop(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
}

using shmbus::test::add_stream;
using shmbus::test::stream_count;

// Messages per second stored by publishing them directly.
double direct_round(jsCtx* js, uint64_t n, const std::string& payload, int round) {
    const std::string stream = "DIRECT" + std::to_string(round), subject = "direct." + std::to_string(round);
    add_stream(js, stream.c_str(), subject.c_str());
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < n; ++i) {
        natsMsg* m = nullptr;
        natsMsg_Create(&m, subject.c_str(), nullptr, payload.data(), int(payload.size()));
        natsMsgHeader_Set(m, "shmbus-origin-bus", "0123456789abcdef");
        natsMsgHeader_Set(m, "Nats-Msg-Id", ("0123456789abcdef-t-" + std::to_string(i)).c_str());
        if (js_PublishMsgAsync(js, &m, nullptr) != NATS_OK) std::fprintf(stderr, "direct publish failed\n");
        natsMsg_Destroy(m);
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    (void)js_PublishAsyncComplete(js, &po);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (stream_count(js, stream.c_str()) != n) std::fprintf(stderr, "direct: the stream holds %llu, not %llu\n",
                                                             (unsigned long long)stream_count(js, stream.c_str()), (unsigned long long)n);
    return double(n) / s;
}

// Messages per second stored through the bridge: from the first local publish to the last
// message in the stream.
double bridged_round(shmbus::Client& client, jsCtx* js, const std::string& cli, const std::string& bus_dir,
                     const std::string& url, uint64_t n, const std::string& payload, int round, const std::string& work) {
    const std::string stream = "BRIDGED" + std::to_string(round), subject = "bridged." + std::to_string(round);
    const std::string topic = "bench" + std::to_string(round);
    add_stream(js, stream.c_str(), subject.c_str());
    shmbus::TopicConfig c;
    c.capacity = 64 << 20;
    (void)client.create_topic(topic, c);
    const pid_t bridge = spawn({cli, "--dir", bus_dir, "bridge", "--nats", url, "--out", topic + ":" + subject, "--name",
                                "bench" + std::to_string(round)}, work + "/bridge.log");
    shmbus::PublisherOptions po;
    po.create_config = c;
    auto pub = client.publisher(topic, po);
    // The bridge's durable subscription exists before the clock starts (it reads from the start anyway).
    for (int i = 0; i < 500; ++i) {
        auto st = client.topic_stats(topic);
        if (st && !st->subscriptions.empty()) break;
        std::this_thread::sleep_for(10ms);
    }
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < n; ++i)
        if (pub->publish(payload) != shmbus::PublishStatus::ok) std::fprintf(stderr, "local publish failed\n");
    while (stream_count(js, stream.c_str()) < n && Clock::now() - t0 < 120s) std::this_thread::sleep_for(1ms);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    stop(bridge);
    return double(n) / s;
}

// One-way latency, publish to arrival at a NATS subscriber of the subject, one message at a time
// (the next goes when the last arrived): directly (a synchronous JetStream publish) or through the
// bridge (a local publish). Returns the sorted samples in microseconds.
std::vector<double> latencies(natsConnection* nc, const std::string& subject, int samples,
                              const std::function<void()>& publish_one) {
    natsSubscription* sub = nullptr;
    std::vector<double> out;
    if (natsConnection_SubscribeSync(&sub, nc, subject.c_str()) != NATS_OK) return out;
    (void)natsConnection_Flush(nc);
    for (int i = 0; i < samples; ++i) {
        const auto t0 = Clock::now();
        publish_one();
        natsMsg* m = nullptr;
        if (natsSubscription_NextMsg(&m, sub, 5000) != NATS_OK) break;
        out.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    std::sort(out.begin(), out.end());
    return out;
}

double percentile(const std::vector<double>& sorted, double q) {
    return sorted.empty() ? 0 : sorted[std::min(sorted.size() - 1, size_t(q * double(sorted.size())))];
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200'000;
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
    const std::string payload(argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 64, 'x');
    char tmpl[] = "/tmp/shmbus-bridge-bench-XXXXXX";
    const std::string work = mkdtemp(tmpl);
    const std::string bus_dir = work + "/bus";
    std::filesystem::create_directories(bus_dir);
    const int port = shmbus::test::free_port();
    const std::string url = "nats://127.0.0.1:" + std::to_string(port);
    const pid_t server = spawn({"/usr/sbin/nats-server", "-js", "-sd", work + "/store", "-a", "127.0.0.1", "-p", std::to_string(port)},
                               work + "/nats.log");
    const pid_t daemon = spawn({SHMBUSD_BIN, "--dir", bus_dir}, work + "/shmbusd.log");
    std::this_thread::sleep_for(500ms);
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 1024;
    int rc = 0;
    for (int i = 0; i < 50 && natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK; ++i) std::this_thread::sleep_for(100ms);
    shmbus::ClientOptions co;
    co.dir = bus_dir;
    co.connect_wait = 5s;
    auto client = shmbus::Client::connect(co);
    if (nc == nullptr || natsConnection_JetStream(&js, nc, &jo) != NATS_OK || !client) {
        std::fprintf(stderr, "shmbus-bridge-bench: cannot start nats-server or shmbusd (logs in %s)\n", work.c_str());
        rc = 1;
    } else {
        std::vector<double> direct, bridged;
        (void)direct_round(js, n / 10, payload, 99);  // warm-up: the server's first stream and files
        for (int r = 0; r < rounds; ++r) {
            direct.push_back(direct_round(js, n, payload, r));
            bridged.push_back(bridged_round(*client, js, SHMBUS_CLI_BIN, bus_dir, url, n, payload, r, work));
        }
        utsname u{};
        uname(&u);
        std::printf("shmbus-bridge-bench: %s %s, %u cpus, %s, shmbus %s (%s), nats.c %s\n", u.nodename, u.release,
                    std::thread::hardware_concurrency(), __VERSION__, shmbus::kVersion, SHMBUS_BENCH_COMMIT, nats_GetVersion());
        std::printf("%llu messages of %zu B, %d rounds, one JetStream file stream each\n", (unsigned long long)n, payload.size(), rounds);
        for (int r = 0; r < rounds; ++r) std::printf("  round %d: direct %.0f msg/s, bridged %.0f msg/s\n", r, direct[size_t(r)], bridged[size_t(r)]);
        const double d = median(direct), b = median(bridged);
        std::printf("median: direct %.0f msg/s, bridged %.0f msg/s: the bridge keeps %.1f%% of direct throughput (goal: >= 90%%)\n", d, b,
                    100.0 * b / d);
        // Latency, 2,000 single messages each way, after 200 to warm up.
        add_stream(js, "LATENCY", "latency.t");
        const std::string msg_payload = payload;
        auto direct_one = [&] {
            jsPubAck* ack = nullptr;
            (void)js_Publish(&ack, js, "latency.t", msg_payload.data(), int(msg_payload.size()), nullptr, nullptr);
            jsPubAck_Destroy(ack);
        };
        (void)latencies(nc, "latency.t", 200, direct_one);
        const auto ld = latencies(nc, "latency.t", 2000, direct_one);
        shmbus::TopicConfig lc;
        (void)client->create_topic("latency", lc);
        const pid_t bridge = spawn({SHMBUS_CLI_BIN, "--dir", bus_dir, "bridge", "--nats", url, "--out", "latency:latency.t", "--name", "latency"},
                                   work + "/bridge-latency.log");
        auto lpub = client->publisher("latency");
        for (int i = 0; i < 500; ++i) {
            auto st = client->topic_stats("latency");
            if (st && !st->subscriptions.empty()) break;
            std::this_thread::sleep_for(10ms);
        }
        auto bridged_one = [&] { (void)lpub->publish(msg_payload); };
        (void)latencies(nc, "latency.t", 200, bridged_one);
        const auto lb = latencies(nc, "latency.t", 2000, bridged_one);
        stop(bridge);
        std::printf("latency, publish to a NATS subscriber (us): direct p50 %.0f p99 %.0f; bridged p50 %.0f p99 %.0f\n",
                    percentile(ld, 0.5), percentile(ld, 0.99), percentile(lb, 0.5), percentile(lb, 0.99));
    }
    if (js) jsCtx_Destroy(js);
    if (nc) natsConnection_Destroy(nc);
    stop(daemon);
    stop(server);
    std::filesystem::remove_all(work);
    return rc;
}
