// shmbus-request-bench: the round trip of a 64-byte request and its 64-byte reply, shmbus's
// request/reply beside D-Bus method calls (sd-bus, a private dbus-daemon), gRPC over a Unix socket
// (the generic API, no code generation) and NATS request/reply on loopback, in one run.
//   shmbus-request-bench [--calls N] [--runs R]
// Each transport: the responder is a child pinned to core 1, the caller pinned to core 0; 2,000
// warm-up calls, then N timed calls one after another (each reply checked byte for byte against
// its request, which carries its sequence number and a checksum); p50 and p99 of the round trips
// and calls per second over the timed calls; R runs, medians reported. Servers are started here
// on loopback or in a temporary directory, and stopped.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "net.h"
#include "shmbus/shmbus.h"

#if SHMBUS_BENCH_HAVE_SDBUS
#include <systemd/sd-bus.h>
#endif
#if SHMBUS_BENCH_HAVE_NATS
#include <nats/nats.h>
#endif
#if SHMBUS_BENCH_HAVE_GRPC
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kSize = 64;
constexpr int kWarmup = 2000;

// One call: sends `request`, fills `reply`; false on any failure.
using Call = std::function<bool(std::span<const std::byte> request, std::vector<std::byte>& reply)>;

struct Figures {
    double p50_ns = 0, p99_ns = 0, calls_per_s = 0;
    bool ok = false;
};

Figures measure(const Call& call, int calls) {
    std::vector<std::byte> request(kSize), reply;
    for (int i = 0; i < kWarmup; ++i) {
        bench::stamp(request, uint64_t(i));
        if (!call(request, reply) || !bench::verify(reply, uint64_t(i), kSize)) return {};
    }
    std::vector<uint64_t> samples;
    samples.reserve(std::size_t(calls));
    const auto t0 = Clock::now();
    for (int i = 0; i < calls; ++i) {
        const uint64_t seq = uint64_t(kWarmup + i);
        bench::stamp(request, seq);
        const uint64_t a = bench::Clock::ticks();
        if (!call(request, reply)) return {};
        samples.push_back(bench::Clock::ticks() - a);
        if (!bench::verify(reply, seq, kSize)) return {};
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto p = bench::percentiles(samples, 1.0);
    return {p.p50, p.p99, double(calls) / seconds, true};
}

// Waits (up to 5 s) until a call goes through, the responder may still be starting; then `runs` measurements.
std::vector<Figures> probe_and_measure(const Call& call, int calls, int runs) {
    std::vector<std::byte> probe(kSize), answer;
    for (int i = 0; i < 500 && !call(probe, answer); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::vector<Figures> out;
    for (int i = 0; i < runs; ++i) out.push_back(measure(call, calls));
    return out;
}

pid_t start(const std::vector<std::string>& args, const std::string& log) {
    const pid_t pid = fork();
    if (pid == 0) {
        FILE* f = std::freopen(log.c_str(), "w", stdout);
        (void)f;
        dup2(STDOUT_FILENO, STDERR_FILENO);
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execvp(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

void stop(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
}

std::string temp_dir() {
    char tmpl[] = "/tmp/shmbus-request-bench-XXXXXX";
    return mkdtemp(tmpl) != nullptr ? tmpl : "/tmp";
}

// --- shmbus -----------------------------------------------------------------------------------
std::vector<Figures> run_shmbus(int calls, int runs, shmbus::WaitStrategy wait, uint32_t spin_polls) {
    const std::string dir = temp_dir();
    const pid_t daemon = start({SHMBUSD_PATH, "--dir", dir + "/bus", "--state-dir", dir + "/state"}, dir + "/shmbusd.log");
    shmbus::ClientOptions o;
    o.dir = dir + "/bus";
    std::vector<Figures> out;
    auto client = shmbus::Client::connect(o);
    if (client) {
        bench::Partner responder(1, [&] {
            auto c = shmbus::Client::connect(o);
            if (!c) return 2;
            shmbus::ServeOptions so;
            so.wait = wait;
            so.spin_polls = spin_polls;
            auto r = c->serve("bench.echo", so);
            if (!r) return 3;
            for (;;)
                (void)r->serve([](const shmbus::Message& m, shmbus::Answer& a) { (void)a.reply(m.payload); },
                               std::chrono::seconds(1));
        });
        bench::pin_to_cpu(0);
        shmbus::RequestOptions ro;
        ro.wait = wait;
        ro.spin_polls = spin_polls;
        ro.timeout = std::chrono::seconds(5);
        const Call call = [&](std::span<const std::byte> req, std::vector<std::byte>& reply) {
            auto r = client->request("bench.echo", req, ro);
            if (!r) return false;
            reply = std::move(r->payload);
            return true;
        };
        out = probe_and_measure(call, calls, runs);  // until the responder joined
    }
    stop(daemon);
    std::filesystem::remove_all(dir);
    return out;
}

// --- D-Bus (sd-bus, private dbus-daemon) -------------------------------------------------------
#if SHMBUS_BENCH_HAVE_SDBUS
int echo_method(sd_bus_message* m, void*, sd_bus_error*) {
    const void* p = nullptr;
    size_t n = 0;
    if (sd_bus_message_read_array(m, 'y', &p, &n) < 0) return -EINVAL;
    sd_bus_message* r = nullptr;
    if (sd_bus_message_new_method_return(m, &r) < 0) return -ENOMEM;
    sd_bus_message_append_array(r, 'y', p, n);
    sd_bus_send(nullptr, r, nullptr);
    sd_bus_message_unref(r);
    return 1;
}
const sd_bus_vtable kVtable[] = {SD_BUS_VTABLE_START(0),
                                 SD_BUS_METHOD("Echo", "ay", "ay", echo_method, SD_BUS_VTABLE_UNPRIVILEGED), SD_BUS_VTABLE_END};

sd_bus* open_bus(const std::string& address) {
    sd_bus* bus = nullptr;
    if (sd_bus_new(&bus) < 0) return nullptr;
    sd_bus_set_address(bus, address.c_str());
    sd_bus_set_bus_client(bus, 1);
    if (sd_bus_start(bus) < 0) {
        sd_bus_unref(bus);
        return nullptr;
    }
    return bus;
}

std::vector<Figures> run_dbus(int calls, int runs) {
    const std::string dir = temp_dir();
    const std::string address = "unix:path=" + dir + "/bus";
    const std::string config = dir + "/bus.conf";
    if (FILE* f = std::fopen(config.c_str(), "w")) {
        std::fprintf(f, "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" "
                        "\"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig><type>session</type>"
                        "<listen>%s</listen><auth>EXTERNAL</auth><policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>"
                        "<allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n", address.c_str());
        std::fclose(f);
    }
    const pid_t daemon = start({"dbus-daemon", "--nofork", "--config-file=" + config}, dir + "/dbus.log");
    std::vector<Figures> out;
    for (int i = 0; i < 500 && !std::filesystem::exists(dir + "/bus"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    {
        bench::Partner responder(1, [&] {
            sd_bus* bus = open_bus(address);
            if (bus == nullptr) return 2;
            sd_bus_slot* slot = nullptr;
            if (sd_bus_add_object_vtable(bus, &slot, "/bench", "org.shmbus.Bench", kVtable, nullptr) < 0) return 3;
            if (sd_bus_request_name(bus, "org.shmbus.Bench", 0) < 0) return 4;
            for (;;) {
                const int r = sd_bus_process(bus, nullptr);
                if (r < 0) return 5;
                if (r == 0) sd_bus_wait(bus, UINT64_MAX);
            }
        });
        bench::pin_to_cpu(0);
        sd_bus* bus = open_bus(address);
        if (bus != nullptr) {
            const Call call = [&](std::span<const std::byte> req, std::vector<std::byte>& reply) {
                sd_bus_message* m = nullptr;
                sd_bus_message* r = nullptr;
                sd_bus_error error = SD_BUS_ERROR_NULL;
                bool ok = sd_bus_message_new_method_call(bus, &m, "org.shmbus.Bench", "/bench", "org.shmbus.Bench", "Echo") >= 0 &&
                          sd_bus_message_append_array(m, 'y', req.data(), req.size()) >= 0 && sd_bus_call(bus, m, 5'000'000, &error, &r) >= 0;
                const void* p = nullptr;
                size_t n = 0;
                if (ok && sd_bus_message_read_array(r, 'y', &p, &n) >= 0) {
                    const auto* b = static_cast<const std::byte*>(p);
                    reply.assign(b, b + n);
                } else {
                    ok = false;
                }
                sd_bus_error_free(&error);
                sd_bus_message_unref(m);
                sd_bus_message_unref(r);
                return ok;
            };
            out = probe_and_measure(call, calls, runs);  // the name may take a moment to appear
            sd_bus_unref(bus);
        }
    }
    stop(daemon);
    std::filesystem::remove_all(dir);
    return out;
}
#endif

// --- NATS request/reply on loopback ------------------------------------------------------------
#if SHMBUS_BENCH_HAVE_NATS
// Sends each message at once instead of leaving it to the library's flusher thread (which waits
// for more to batch): what a request/reply caller and responder want.
natsConnection* connect_nats(const std::string& url) {
    natsOptions* opts = nullptr;
    natsConnection* nc = nullptr;
    if (natsOptions_Create(&opts) != NATS_OK) return nullptr;
    natsOptions_SetURL(opts, url.c_str());
    natsOptions_SetSendAsap(opts, true);
    if (natsConnection_Connect(&nc, opts) != NATS_OK) nc = nullptr;
    natsOptions_Destroy(opts);
    return nc;
}

void on_request(natsConnection* nc, natsSubscription*, natsMsg* msg, void*) {
    natsConnection_Publish(nc, natsMsg_GetReply(msg), natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

std::vector<Figures> run_nats(int calls, int runs) {
    const std::string dir = temp_dir();
    const int port = shmbus::test::free_port();
    const pid_t server = start({"nats-server", "-a", "127.0.0.1", "-p", std::to_string(port)}, dir + "/nats.log");
    const std::string url = "nats://127.0.0.1:" + std::to_string(port);
    std::vector<Figures> out;
    natsConnection* nc = nullptr;
    for (int i = 0; i < 500 && (nc = connect_nats(url)) == nullptr; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (nc != nullptr) {
        bench::Partner responder(1, [&] {
            natsConnection* rc = connect_nats(url);
            if (rc == nullptr) return 2;
            natsSubscription* sub = nullptr;
            if (natsConnection_Subscribe(&sub, rc, "bench.echo", on_request, nullptr) != NATS_OK) return 3;
            natsConnection_Flush(rc);
            for (;;) pause();
        });
        bench::pin_to_cpu(0);
        const Call call = [&](std::span<const std::byte> req, std::vector<std::byte>& reply) {
            natsMsg* r = nullptr;
            if (natsConnection_Request(&r, nc, "bench.echo", req.data(), int(req.size()), 5000) != NATS_OK) return false;
            const auto* b = reinterpret_cast<const std::byte*>(natsMsg_GetData(r));
            reply.assign(b, b + natsMsg_GetDataLength(r));
            natsMsg_Destroy(r);
            return true;
        };
        out = probe_and_measure(call, calls, runs);
        natsConnection_Destroy(nc);
    }
    stop(server);
    std::filesystem::remove_all(dir);
    return out;
}
#endif

// --- gRPC over a Unix socket (generic API) ---------------------------------------------------
#if SHMBUS_BENCH_HAVE_GRPC
class EchoService final : public grpc::CallbackGenericService {
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
        class Reactor final : public grpc::ServerGenericBidiReactor {
        public:
            Reactor() { StartRead(&buffer_); }
            void OnReadDone(bool ok) override {
                if (!ok) return Finish(grpc::Status::OK);
                StartWriteAndFinish(&buffer_, grpc::WriteOptions(), grpc::Status::OK);
            }
            void OnDone() override { delete this; }

        private:
            grpc::ByteBuffer buffer_;
        };
        return new Reactor;
    }
};

std::vector<Figures> run_grpc(int calls, int runs) {
    const std::string dir = temp_dir();
    const std::string address = "unix:" + dir + "/grpc.sock";
    std::vector<Figures> out;
    {
        bench::Partner responder(1, [&] {
            EchoService service;
            grpc::ServerBuilder builder;
            builder.AddListeningPort(address, grpc::InsecureServerCredentials());
            builder.RegisterCallbackGenericService(&service);
            auto server = builder.BuildAndStart();
            if (!server) return 2;
            server->Wait();
            return 0;
        });
        bench::pin_to_cpu(0);
        auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
        grpc::GenericStub stub(channel);
        grpc::CompletionQueue cq;
        const Call call = [&](std::span<const std::byte> req, std::vector<std::byte>& reply) {
            grpc::ClientContext ctx;
            ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
            grpc::Slice slice(req.data(), req.size());
            grpc::ByteBuffer request(&slice, 1), response;
            auto rpc = stub.PrepareUnaryCall(&ctx, "/bench.Echo/Call", request, &cq);
            rpc->StartCall();
            grpc::Status status;
            rpc->Finish(&response, &status, reinterpret_cast<void*>(1));
            void* tag = nullptr;
            bool ok = false;
            if (!cq.Next(&tag, &ok) || !ok || !status.ok()) return false;
            std::vector<grpc::Slice> slices;
            if (!response.Dump(&slices).ok()) return false;
            reply.clear();
            for (const auto& s : slices) reply.insert(reply.end(), reinterpret_cast<const std::byte*>(s.begin()),
                                                      reinterpret_cast<const std::byte*>(s.end()));
            return true;
        };
        out = probe_and_measure(call, calls, runs);
        cq.Shutdown();
    }
    std::filesystem::remove_all(dir);
    return out;
}
#endif

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

struct Row {
    std::string name;
    Figures median;
};

Row summarize(const std::string& name, const std::vector<Figures>& runs) {
    std::vector<double> p50, p99, rate;
    for (const auto& f : runs)
        if (f.ok) p50.push_back(f.p50_ns), p99.push_back(f.p99_ns), rate.push_back(f.calls_per_s);
    if (p50.size() != runs.size() || runs.empty()) return {name, {}};
    return {name, {median(p50), median(p99), median(rate), true}};
}

std::string us(double ns) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f µs", ns / 1000.0);
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    int calls = 20000, runs = 3;
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], "--calls") == 0) calls = std::atoi(argv[i + 1]);
        if (std::strcmp(argv[i], "--runs") == 0) runs = std::atoi(argv[i + 1]);
    }
    signal(SIGPIPE, SIG_IGN);
    char host[256] = "?";
    gethostname(host, sizeof host);
    std::printf("shmbus-request-bench: %d calls x %d runs, 64 B request and reply, caller on core 0, responder on core 1;\n", calls, runs);
    const char* commit = std::getenv("SHMBUS_BENCH_COMMIT");  // scripts/bench.sh: the tree as it is now
    std::printf("machine %s, %u CPUs; compiler %s; commit %s.\n", host, std::thread::hardware_concurrency(), __VERSION__,
                commit != nullptr && *commit != '\0' ? commit : SHMBUS_BENCH_COMMIT);
    std::fflush(stdout);  // before the forks, which would print it again
    std::vector<Row> rows;
    rows.push_back(summarize("shmbus (busy_spin)", run_shmbus(calls, runs, shmbus::WaitStrategy::busy_spin, 0)));
    rows.push_back(summarize("shmbus (spin_then_sleep, default)", run_shmbus(calls, runs, shmbus::WaitStrategy::spin_then_sleep, 2000)));
    rows.push_back(summarize("shmbus (sleep at once)", run_shmbus(calls, runs, shmbus::WaitStrategy::spin_then_sleep, 0)));
#if SHMBUS_BENCH_HAVE_SDBUS
    rows.push_back(summarize("D-Bus (sd-bus, dbus-daemon)", run_dbus(calls, runs)));
#endif
#if SHMBUS_BENCH_HAVE_GRPC
    rows.push_back(summarize("gRPC (Unix socket)", run_grpc(calls, runs)));
#endif
#if SHMBUS_BENCH_HAVE_NATS
    rows.push_back(summarize("NATS (loopback)", run_nats(calls, runs)));
#endif
    const double ours = rows[1].median.ok ? rows[1].median.p50_ns : 0;
    std::printf("\n| transport | p50 | p99 | calls/s | p50 / shmbus default p50 |\n|---|---:|---:|---:|---:|\n");
    for (const auto& r : rows) {
        if (!r.median.ok) {
            std::printf("| %s | failed | | | |\n", r.name.c_str());
            continue;
        }
        std::printf("| %s | %s | %s | %.0f | %.1f× |\n", r.name.c_str(), us(r.median.p50_ns).c_str(), us(r.median.p99_ns).c_str(),
                    r.median.calls_per_s, ours > 0 ? r.median.p50_ns / ours : 0.0);
    }
    return 0;
}
