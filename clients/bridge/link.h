// What the bridge's forwarding loops share: the NATS connection of each loop (Link), the
// process's stop flag, its metrics, and small helpers. Internal to clients/bridge/.
#pragma once

#include <nats/nats.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "bridge/bridge.h"

namespace cli::bridge {

using namespace std::chrono_literals;

constexpr const char* kOriginHeader = "shmbus-origin-bus";  // the bus a message was first published on
constexpr const char* kMsgIdHeader = "Nats-Msg-Id";
constexpr int64_t kPublishWaitMs = 5000;   // a publish not acked by then counts as failed
constexpr int kFetchBatch = 256;
constexpr int64_t kFetchWaitMs = 250;
constexpr int64_t kAckWaitNs = 5'000'000'000;  // a fetched message not acked by then is delivered again


inline std::atomic<bool> g_stop{false};  // set by SIGTERM or SIGINT: every loop ends

// What the bridge shows on its metrics endpoint (--metrics): whether it is connected, and per
// mapping the messages carried and the windows (out) or publishes (in) it had to try again.
// Lag is the topic's: the durable subscription bridge-NAME (out) in shmbusd's metrics and bus-top.
struct BridgeMetrics {
    std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
    prometheus::Family<prometheus::Gauge>& connected =
        prometheus::BuildGauge().Name("shmbus_bridge_connected").Help("1 while connected to the NATS server").Register(*registry);
    prometheus::Family<prometheus::Counter>& reconnects =
        prometheus::BuildCounter().Name("shmbus_bridge_reconnects_total").Help("Reconnections to the NATS server").Register(*registry);
    prometheus::Family<prometheus::Counter>& carried =
        prometheus::BuildCounter().Name("shmbus_bridge_messages_total").Help("Messages carried, acknowledged at the far side").Register(*registry);
    prometheus::Family<prometheus::Counter>& retried =
        prometheus::BuildCounter().Name("shmbus_bridge_retries_total").Help("Windows sent again (out), publishes tried again (in)").Register(*registry);
    std::unique_ptr<prometheus::Exposer> exposer;
};
inline BridgeMetrics* g_metrics = nullptr;  // set once before any thread starts; null without --metrics
inline std::string g_bridge_name;

struct MappingCounters {
    prometheus::Counter* carried = nullptr;
    prometheus::Counter* retried = nullptr;
    void carry(double n) const { if (carried) carried->Increment(n); }
    void retry() const { if (retried) retried->Increment(); }
};
[[nodiscard]] MappingCounters counters_for(const char* direction, const std::string& topic, const std::string& subject);
// shmbus_bridge_connected: 1 while at least one of the bridge's connections is up. Shown as 0
// before the first connection, and whenever a connection attempt fails with none up.
void show_connected();
void log_line(const std::string& text);
[[nodiscard]] std::string nats_error(natsStatus s);
[[nodiscard]] std::string hex_id(uint64_t id);
// A name for JetStream (durable consumer: no '.', '*', '>' or spaces) and for a shmbus producer
// ([A-Za-z0-9._-], at most 47): what does not fit becomes '_', and a long one is cut and keeps a hash.
[[nodiscard]] std::string safe_name(const std::string& text, bool allow_dot);

template <class T, void (*Destroy)(T*)>
struct NatsDeleter {
    void operator()(T* p) const { Destroy(p); }
};
using Options = std::unique_ptr<natsOptions, NatsDeleter<natsOptions, natsOptions_Destroy>>;
using Connection = std::unique_ptr<natsConnection, NatsDeleter<natsConnection, natsConnection_Destroy>>;
using JetStream = std::unique_ptr<jsCtx, NatsDeleter<jsCtx, jsCtx_Destroy>>;
using Subscription = std::unique_ptr<natsSubscription, NatsDeleter<natsSubscription, natsSubscription_Destroy>>;
using Msg = std::unique_ptr<natsMsg, NatsDeleter<natsMsg, natsMsg_Destroy>>;

void note_reconnected();
// One connection, never reconnected by the library: after a disconnection the library would send
// what it still held for the old server to the new one ahead of the window the bridge sends again,
// out of order. Each forwarding loop makes its own (Link) and makes it again when it fails.
//
// It counts as up (show_connected) from its connect until the server drops it. The library also
// reports a disconnection, later and from its own thread, when the bridge closes a connection
// itself; each connection's report carries its own number, so a report about a connection the
// bridge already closed changes nothing (it once set the gauge to 0 under a newer connection).
class TrackedConnection {
public:
    TrackedConnection() = default;
    TrackedConnection(const TrackedConnection&) = delete;
    TrackedConnection& operator=(const TrackedConnection&) = delete;
    ~TrackedConnection() { close(); }

    [[nodiscard]] natsStatus open(const BridgeSettings& s);
    void close() noexcept;  // not a disconnection: the gauge stays as it is until the next attempt
    [[nodiscard]] natsConnection* get() const noexcept { return nc_.get(); }
    explicit operator bool() const noexcept { return nc_ != nullptr; }

private:
    uint64_t id_ = 0;  // 0: none open
    Connection nc_;
};
[[nodiscard]] natsStatus jet_stream(natsConnection* nc, JetStream& out, jsOptions* opts);
// --stream NAME: made for the --out subjects unless it exists (its subjects are then its own).
[[nodiscard]] bool ensure_stream(natsConnection* nc, const BridgeSettings& s);

// A forwarding loop's connection and JetStream context, made again (every 250 ms to 2 s) after
// the server went away, until the bridge stops.
struct Link {
    const BridgeSettings& settings;
    jsOptions* options;  // the JetStream context's (asynchronous publishing), or null
    TrackedConnection nc;
    JetStream js;
    bool was_connected = false;
    uint64_t generation = 0;  // bumped with every new connection

    [[nodiscard]] bool ensure() {
        auto backoff = 250ms;
        while (!g_stop.load()) {
            if (nc && natsConnection_Status(nc.get()) == NATS_CONN_STATUS_CONNECTED) return true;
            drop();
            if (nc.open(settings) == NATS_OK && jet_stream(nc.get(), js, options) == NATS_OK) {
                ++generation;
                if (was_connected) note_reconnected();
                was_connected = true;
                return true;
            }
            drop();
            show_connected();
            std::this_thread::sleep_for(backoff);
            backoff = std::min<std::chrono::milliseconds>(backoff * 2, 2000ms);
        }
        return false;
    }
    // Discards the connection and whatever it still held for the server.
    void drop() {
        js.reset();
        nc.close();
    }
};

// The forwarding loops, one thread per mapping, until g_stop.
void forward_out(shmbus::Subscriber& sub, const BridgeSettings& settings, const std::string& topic, const std::string& subject,
                 const std::string& bus, uint32_t window);
void forward_in(shmbus::Publisher& pub, const BridgeSettings& settings, const std::string& subject, const std::string& durable,
                const std::string& topic, const std::string& bus);

}  // namespace cli::bridge
