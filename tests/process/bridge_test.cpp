// `shmbus bridge` against a real nats-server with JetStream, started here on loopback with a
// temporary store: outbound exactly once into the stream with the bridge and then the server
// SIGKILLed mid-stream, inbound exactly once across a bridge kill, two buses joined through one
// subject both ways without echoes, and authentication and TLS.
#include <nats/nats.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "bus_fixture.h"
#include "jetstream.h"
#include "net.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

// A nats-server with JetStream on a free loopback port; killed and started again on the same port
// and store.
class NatsServer {
public:
    NatsServer(std::string dir, std::vector<std::string> extra = {}) : dir_(std::move(dir)), extra_(std::move(extra)) {
        port_ = free_port();
    }
    ~NatsServer() { stop(); }
    void start() {
        std::vector<std::string> args{"/usr/sbin/nats-server", "-js", "-sd", dir_ + "/store", "-a", "127.0.0.1", "-p", std::to_string(port_)};
        args.insert(args.end(), extra_.begin(), extra_.end());
        pid_ = spawn(args, {dir_ + "/nats.out", dir_ + "/nats.err"});
        ASSERT_TRUE(eventually([&] { return port_open(port_); })) << read_file(dir_ + "/nats.err");
    }
    void kill9() {
        kill(pid_, SIGKILL);
        (void)wait_exit(pid_);
        pid_ = -1;
    }
    void stop() {
        if (pid_ <= 0) return;
        kill(pid_, SIGTERM);
        (void)wait_exit(pid_, 10s);
        pid_ = -1;
    }
    [[nodiscard]] std::string url(const char* scheme = "nats") const { return std::string(scheme) + "://127.0.0.1:" + std::to_string(port_); }

private:
    std::string dir_;
    std::vector<std::string> extra_;
    int port_ = 0;
    pid_t pid_ = -1;
};

// The test's own NATS client: reads a stream and publishes into it.
class NatsClient {
public:
    explicit NatsClient(const std::string& url) {
        EXPECT_EQ(natsConnection_ConnectTo(&nc_, url.c_str()), NATS_OK);
        EXPECT_EQ(natsConnection_JetStream(&js_, nc_, nullptr), NATS_OK);
    }
    ~NatsClient() {
        jsCtx_Destroy(js_);
        natsConnection_Destroy(nc_);
    }
    void add_stream(const char* name, const char* subject) { ASSERT_TRUE(test::add_stream(js_, name, subject)); }
    uint64_t count(const char* stream) { return stream_count(js_, stream); }
    // Every message of `stream`, in order: (payload, header `key`).
    std::vector<std::pair<std::string, std::string>> read(const char* stream, uint64_t n, const char* key = "shmbus-origin-bus") {
        std::vector<std::pair<std::string, std::string>> out;
        for (uint64_t seq = 1; seq <= n; ++seq) {
            natsMsg* m = nullptr;
            if (js_GetMsg(&m, js_, stream, seq, nullptr, nullptr) != NATS_OK) continue;
            const char* v = nullptr;
            natsMsgHeader_Get(m, key, &v);
            out.emplace_back(std::string(natsMsg_GetData(m), std::size_t(natsMsg_GetDataLength(m))), v ? v : "");
            natsMsg_Destroy(m);
        }
        return out;
    }
    void publish(const char* subject, const std::string& payload) {
        jsPubAck* ack = nullptr;
        ASSERT_EQ(js_Publish(&ack, js_, subject, payload.data(), int(payload.size()), nullptr, nullptr), NATS_OK);
        jsPubAck_Destroy(ack);
    }

private:
    natsConnection* nc_ = nullptr;
    jsCtx* js_ = nullptr;
};

class Bridge : public BusTest {
protected:
    void SetUp() override {
        BusTest::SetUp();
        nats = std::make_unique<NatsServer>(dir, extra_server_args());
        nats->start();
    }
    void TearDown() override {
        for (pid_t p : bridges_) {
            kill(p, SIGTERM);
            (void)wait_exit(p, 10s);
        }
        nats.reset();
        BusTest::TearDown();
    }
    virtual std::vector<std::string> extra_server_args() { return {}; }
    pid_t bridge(const std::string& tag, std::vector<std::string> args, const std::string& bus_dir = "") {
        args.insert(args.begin(), {SHMBUS_CLI_PATH, "--dir", bus_dir.empty() ? dir : bus_dir, "bridge"});
        const pid_t p = spawn(args, {path(tag + ".out"), path(tag + ".err")});
        bridges_.push_back(p);
        return p;
    }
    void forget(pid_t p) { std::erase(bridges_, p); }
    // Every message of a topic from the start: (payload, sequence).
    std::vector<std::pair<std::string, uint64_t>> topic_messages(Client& c, const std::string& topic) {
        SubscribeOptions o;
        o.from = StartFrom::earliest;
        auto sub = c.subscribe(topic, o);
        std::vector<std::pair<std::string, uint64_t>> out;
        while (sub && sub->poll([&](const Message& m) { out.emplace_back(std::string(m.text()), m.sequence); }, 1024).status ==
                          ReceiveStatus::ok) {
        }
        return out;
    }

    std::unique_ptr<NatsServer> nats;
    std::vector<pid_t> bridges_;
};

// 100,000 messages out, the bridge SIGKILLed at 20,000 and the server at 50,000: each message in
// the stream once, in order.
TEST_F(Bridge, OutboundEveryMessageInTheStreamOnceAcrossBridgeAndServerKills) {
    constexpr uint64_t kCount = 100'000;
    auto c = connect();
    ASSERT_TRUE(c);
    const std::vector<std::string> args{"--nats", nats->url(), "--out", "t:orders.t", "--stream", "ORDERS", "--name", "b1"};
    pid_t b = bridge("b1", args);
    NatsClient reader(nats->url());
    ASSERT_TRUE(eventually([&] { return reader.count("ORDERS") == 0 && std::filesystem::exists(path("b1.err")) &&
                                        read_file(path("b1.err")).find("out,") != std::string::npos; }, 20s))
        << read_file(path("b1.err"));
    std::atomic<uint64_t> published{0};
    std::thread producer([&] {
        auto pc = connect();
        auto pub = pc->publisher("t");
        for (uint64_t i = 0; i < kCount; ++i) {
            ASSERT_EQ(pub->publish("m" + std::to_string(i)), PublishStatus::ok);
            published.store(i + 1);
        }
    });
    EXPECT_TRUE(eventually([&] { return reader.count("ORDERS") >= 20'000; }, 60s));
    kill(b, SIGKILL);
    EXPECT_EQ(wait_exit(b), 128 + SIGKILL);
    forget(b);
    b = bridge("b1-again", args);
    EXPECT_TRUE(eventually([&] { return reader.count("ORDERS") >= 50'000; }, 60s)) << read_file(path("b1-again.err"));
    nats->kill9();
    std::this_thread::sleep_for(300ms);
    nats->start();
    producer.join();
    NatsClient after(nats->url());
    EXPECT_TRUE(eventually([&] { return after.count("ORDERS") >= kCount; }, 120s))
        << after.count("ORDERS") << "\n" << read_file(path("b1-again.err"));
    std::this_thread::sleep_for(500ms);  // nothing more arrives
    const auto stored = after.read("ORDERS", after.count("ORDERS"));
    if (stored.size() != kCount) {  // say which: where the gap is tells which kill lost them
        std::set<std::string> have;
        for (const auto& [p, h] : stored) have.insert(p);
        uint64_t first_missing = 0, missing = 0;
        for (uint64_t i = 0; i < kCount; ++i)
            if (!have.count("m" + std::to_string(i)) && missing++ == 0) first_missing = i;
        std::string around;
        for (uint64_t q = 0; q < stored.size(); ++q)
            if (stored[q].first == "m" + std::to_string(first_missing - 1) || stored[q].first == "m" + std::to_string(first_missing - 2))
                for (uint64_t r = q; r < std::min<uint64_t>(q + 6, stored.size()); ++r) around += std::to_string(r + 1) + ":" + stored[r].first + " ";
        ADD_FAILURE() << missing << " missing, the first m" << first_missing << "; around it: " << around;
    }
    ASSERT_EQ(after.count("ORDERS"), kCount);
    ASSERT_EQ(stored.size(), kCount);
    for (uint64_t i = 0; i < kCount; ++i) ASSERT_EQ(stored[i].first, "m" + std::to_string(i)) << "at stream sequence " << i + 1;
}

// A stream's messages reach a local durable subscription across a bridge kill: none lost, none twice.
TEST_F(Bridge, InboundEveryMessageLocallyOnceAcrossABridgeKill) {
    constexpr int kCount = 3000;
    NatsClient writer(nats->url());
    writer.add_stream("IN", "in.x");
    for (int i = 0; i < kCount; ++i) writer.publish("in.x", "n" + std::to_string(i));
    auto c = connect();
    const std::vector<std::string> args{"--nats", nats->url(), "--in", "in.x:t", "--name", "b2"};
    pid_t b = bridge("b2", args);
    ASSERT_TRUE(eventually([&] { auto s = c->topic_stats("t"); return s && s->published >= kCount / 3; }, 30s)) << read_file(path("b2.err"));
    kill(b, SIGKILL);
    EXPECT_EQ(wait_exit(b), 128 + SIGKILL);
    forget(b);
    bridge("b2-again", args);
    std::vector<std::pair<std::string, uint64_t>> got;
    EXPECT_TRUE(eventually([&] { got = topic_messages(*c, "t"); return got.size() >= kCount; }, 60s)) << got.size() << read_file(path("b2.err")) << read_file(path("b2-again.err"));
    std::this_thread::sleep_for(500ms);
    got = topic_messages(*c, "t");
    ASSERT_EQ(got.size(), size_t(kCount));
    for (int i = 0; i < kCount; ++i) {
        ASSERT_EQ(got[i].first, "n" + std::to_string(i));
        ASSERT_EQ(got[i].second, uint64_t(i + 1));  // the stream sequence, as the bridge's producer sequence
    }
}

// Two buses on this host, each bridging topic t both ways through subject shared.t: a message
// published on one is delivered on the other once, and never comes back.
TEST_F(Bridge, TwoBusesJoinedThroughOneSubjectDeliverOnceWithoutEchoes) {
    const std::string other = dir + "-b";
    std::filesystem::create_directories(other);
    const pid_t other_daemon = spawn({SHMBUSD_PATH, "--dir", other}, {path("other.log"), path("other.err")});
    ClientOptions o;
    o.dir = other;
    o.connect_wait = 5s;
    auto cb = Client::connect(o);
    ASSERT_TRUE(cb) << cb.error().message;
    auto ca = connect();
    const std::vector<std::string> both{"--nats", nats->url(), "--out", "t:shared.t", "--in", "shared.t:t", "--stream", "SHARED"};
    auto with_name = [&](const char* n) {
        auto a = both;
        a.insert(a.end(), {"--name", n});
        return a;
    };
    bridge("a", with_name("a"));
    ASSERT_TRUE(eventually([&] { return read_file(path("a.err")).find("out,") != std::string::npos; }, 20s)) << read_file(path("a.err"));
    bridge("b", with_name("b"), other);
    ASSERT_TRUE(eventually([&] { return read_file(path("b.err")).find("out,") != std::string::npos; }, 20s)) << read_file(path("b.err"));
    ASSERT_EQ(ca->publisher("t")->publish("from a"), PublishStatus::ok);
    ASSERT_EQ(cb->publisher("t")->publish("from b"), PublishStatus::ok);
    auto payloads = [&](Client& c) {
        std::multiset<std::string> out;
        for (const auto& [p, seq] : topic_messages(c, "t")) out.insert(p);
        return out;
    };
    const std::multiset<std::string> both_once{"from a", "from b"};
    EXPECT_TRUE(eventually([&] { return payloads(*ca) == both_once && payloads(*cb) == both_once; }, 20s));
    std::this_thread::sleep_for(1s);  // no echo arrives later
    EXPECT_EQ(payloads(*ca), both_once);
    EXPECT_EQ(payloads(*cb), both_once);
    NatsClient reader(nats->url());
    EXPECT_EQ(reader.count("SHARED"), 2u);
    for (pid_t p : bridges_) {
        kill(p, SIGTERM);
        EXPECT_EQ(wait_exit(p, 10s), 0);
    }
    bridges_.clear();
    kill(other_daemon, SIGTERM);
    (void)wait_exit(other_daemon, 10s);
    std::filesystem::remove_all(other);
}

// The [bridge] section of a configuration file (shmbusd's own accepts it): its settings run the
// bridge, the command line wins, and a mistake names its line.
TEST_F(Bridge, TheConfigFilesBridgeSectionRunsItAndAMistakeNamesItsLine) {
    {
        std::ofstream f(path("bus.toml"));
        f << "[bus]\nlog_level = \"info\"\n\n[bridge]\nname = \"from-file\"\nnats = \"nats://127.0.0.1:1\"\nout = [\"t:cfg.t\"]\n"
          << "stream = \"CFG\"\nwindow = 64\n";
        std::ofstream bad(path("bad.toml"));
        bad << "[bridge]\nnats = \"" << nats->url() << "\"\noutput = [\"t\"]\n";
    }
    const auto wrong = cli({"bridge", "--config", path("bad.toml")});
    EXPECT_EQ(wrong.code, 2);
    EXPECT_NE(wrong.err.find(path("bad.toml") + ":3: unknown key 'output' in [bridge]"), std::string::npos) << wrong.err;
    // shmbusd itself starts with a [bridge] section in its file
    std::filesystem::create_directories(dir + "-cfg");
    const pid_t d = spawn({SHMBUSD_PATH, "--dir", dir + "-cfg", "--config", path("bus.toml")}, {path("cfgd.out"), path("cfgd.err")});
    EXPECT_TRUE(eventually([&] { return read_file(path("cfgd.out")).find("ready") != std::string::npos; }))
        << read_file(path("cfgd.out")) << read_file(path("cfgd.err"));
    kill(d, SIGTERM);
    EXPECT_EQ(wait_exit(d), 0);
    std::filesystem::remove_all(dir + "-cfg");
    // The file's settings, with --nats from the command line in place of the file's.
    bridge("cfg", {"--config", path("bus.toml"), "--nats", nats->url()});
    EXPECT_TRUE(eventually([&] { return read_file(path("cfg.err")).find("1 out, 0 in") != std::string::npos; }, 20s)) << read_file(path("cfg.err"));
    auto c = connect();
    ASSERT_EQ(c->publisher("t")->publish("configured"), PublishStatus::ok);
    NatsClient reader(nats->url());
    EXPECT_TRUE(eventually([&] { return reader.count("CFG") == 1; }, 20s));
    const auto st = c->topic_stats("t");
    bool found = false;
    for (const auto& sub : st->subscriptions) found = found || sub.name == "bridge-from-file";
    EXPECT_TRUE(found);
}

// --metrics: whether the bridge is connected and what it carried, per mapping.
TEST_F(Bridge, ItsMetricsShowItsStateAndWhatItCarried) {
    const int port = free_port();
    bridge("m", {"--nats", nats->url(), "--out", "t:m.t", "--stream", "M", "--name", "m", "--metrics", std::to_string(port)});
    auto c = connect();
    ASSERT_TRUE(eventually([&] { return read_file(path("m.err")).find("1 out, 0 in") != std::string::npos; }, 20s)) << read_file(path("m.err"));
    auto pub = c->publisher("t");
    for (int i = 0; i < 5; ++i) ASSERT_EQ(pub->publish("x"), PublishStatus::ok);
    const std::string carried = "shmbus_bridge_messages_total{bridge=\"m\",direction=\"out\",subject=\"m.t\",topic=\"t\"} 5";
    std::string body;
    EXPECT_TRUE(eventually([&] { body = http_get(port, "/metrics"); return body.find(carried) != std::string::npos; }, 20s)) << body;
    EXPECT_NE(body.find("shmbus_bridge_connected{bridge=\"m\"} 1"), std::string::npos) << body;
    // The bridge closing its own first connection (it checks the credentials and the stream with
    // it) is no disconnection: the library's late report of it once set the gauge to 0.
    std::this_thread::sleep_for(300ms);
    EXPECT_NE(http_get(port, "/metrics").find("shmbus_bridge_connected{bridge=\"m\"} 1"), std::string::npos);
    EXPECT_EQ(read_file(path("m.err")).find("disconnected"), std::string::npos) << read_file(path("m.err"));
    nats->kill9();
    EXPECT_TRUE(eventually([&] { return http_get(port, "/metrics").find("shmbus_bridge_connected{bridge=\"m\"} 0") != std::string::npos; }, 20s));
    nats->start();
    EXPECT_TRUE(eventually([&] {
        body = http_get(port, "/metrics");
        return body.find("shmbus_bridge_connected{bridge=\"m\"} 1") != std::string::npos &&
               body.find("shmbus_bridge_reconnects_total{bridge=\"m\"} 1") != std::string::npos;
    }, 20s)) << body;
}

class BridgeWithPassword : public Bridge {
    std::vector<std::string> extra_server_args() override { return {"--user", "bridge", "--pass", "s3cret"}; }
};

TEST_F(BridgeWithPassword, TheRightPasswordConnectsAndAWrongOneIsAClearError) {
    auto base = [&](const char* password) {
        return std::vector<std::string>{"--nats", nats->url(), "--user", "bridge", "--password", password, "--out", "t:pw.t",
                                        "--stream", "PW", "--name", "pw"};
    };
    const pid_t wrong = bridge("wrong", base("nope"));
    EXPECT_EQ(wait_exit(wrong, 20s), 1);
    forget(wrong);
    EXPECT_NE(read_file(path("wrong.err")).find("uthorization"), std::string::npos) << read_file(path("wrong.err"));
    bridge("right", base("s3cret"));
    auto c = connect();
    ASSERT_EQ(c->publisher("t")->publish("x"), PublishStatus::ok);
    EXPECT_TRUE(eventually([&] { return read_file(path("right.err")).find("out,") != std::string::npos; }, 20s)) << read_file(path("right.err"));
    natsConnection* nc = nullptr;
    natsOptions* opts = nullptr;
    natsOptions_Create(&opts);
    natsOptions_SetURL(opts, nats->url().c_str());
    natsOptions_SetUserInfo(opts, "bridge", "s3cret");
    ASSERT_EQ(natsConnection_Connect(&nc, opts), NATS_OK);
    jsCtx* js = nullptr;
    natsConnection_JetStream(&js, nc, nullptr);
    EXPECT_TRUE(eventually([&] {
        jsStreamInfo* si = nullptr;
        if (js_GetStreamInfo(&si, js, "PW", nullptr, nullptr) != NATS_OK) return false;
        const bool one = si->State.Msgs == 1;
        jsStreamInfo_Destroy(si);
        return one;
    }, 20s));
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
}

class BridgeWithToken : public Bridge {
    std::vector<std::string> extra_server_args() override { return {"--auth", "t0ken"}; }
};

TEST_F(BridgeWithToken, TheTokenConnectsAndAWrongOneIsRefused) {
    const pid_t wrong = bridge("wrong", {"--nats", nats->url(), "--token", "bad", "--out", "t:tk.t", "--name", "tk"});
    EXPECT_EQ(wait_exit(wrong, 20s), 1);
    forget(wrong);
    bridge("right", {"--nats", nats->url(), "--token", "t0ken", "--out", "t:tk.t", "--name", "tk"});
    EXPECT_TRUE(eventually([&] { return read_file(path("right.err")).find("out,") != std::string::npos; }, 20s)) << read_file(path("right.err"));
}

// TLS with a certificate made here: the bridge trusts it through --tls-ca.
class BridgeOverTls : public Bridge {
    std::vector<std::string> extra_server_args() override {
        const std::string key = dir + "/key.pem", cert = dir + "/cert.pem";
        const int rc = wait_exit(spawn({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                                        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert},
                                       {dir + "/openssl.out", dir + "/openssl.err"}));
        EXPECT_EQ(rc, 0) << read_file(dir + "/openssl.err");
        return {"--tls", "--tlscert", cert, "--tlskey", key};
    }
};

TEST_F(BridgeOverTls, TheBridgeConnectsWithTheServersCertificate) {
    const pid_t untrusted = bridge("untrusted", {"--nats", nats->url("tls"), "--out", "t:tls.t", "--name", "tls"});
    EXPECT_EQ(wait_exit(untrusted, 20s), 1);  // no CA given: the self-made certificate is not trusted
    forget(untrusted);
    bridge("trusted", {"--nats", nats->url("tls"), "--tls-ca", path("cert.pem"), "--out", "t:tls.t", "--stream", "TLS", "--name", "tls"});
    EXPECT_TRUE(eventually([&] { return read_file(path("trusted.err")).find("out,") != std::string::npos; }, 20s))
        << read_file(path("trusted.err"));
}

}  // namespace
}  // namespace shmbus::test
