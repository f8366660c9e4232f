#include "bridge.h"

#include <nats/nats.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "shmbus/headers.h"
#include "shmbus/names.h"
#include "shmbus/publisher.h"
#include "shmbus/subscriber.h"

namespace cli {

namespace {

using namespace std::chrono_literals;

constexpr const char* kOriginHeader = "shmbus-origin-bus";  // the bus a message was first published on
constexpr const char* kMsgIdHeader = "Nats-Msg-Id";
constexpr int64_t kPublishWaitMs = 5000;   // a publish not acked by then counts as failed
constexpr int kFetchBatch = 256;
constexpr int64_t kFetchWaitMs = 250;
constexpr int64_t kAckWaitNs = 5'000'000'000;  // a fetched message not acked by then is delivered again

std::atomic<bool> g_stop{false};

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
BridgeMetrics* g_metrics = nullptr;  // set once before any thread starts; null without --metrics
std::string g_bridge_name;

struct MappingCounters {
    prometheus::Counter* carried = nullptr;
    prometheus::Counter* retried = nullptr;
    void carry(double n) const { if (carried) carried->Increment(n); }
    void retry() const { if (retried) retried->Increment(); }
};
MappingCounters counters_for(const char* direction, const std::string& topic, const std::string& subject) {
    if (g_metrics == nullptr) return {};
    const std::map<std::string, std::string> labels{{"bridge", g_bridge_name}, {"direction", direction}, {"topic", topic}, {"subject", subject}};
    return {&g_metrics->carried.Add(labels), &g_metrics->retried.Add(labels)};
}
void set_connected(bool up) {
    if (g_metrics == nullptr) return;
    g_metrics->connected.Add({{"bridge", g_bridge_name}}).Set(up ? 1 : 0);
    if (up) g_metrics->reconnects.Add({{"bridge", g_bridge_name}}).Increment(0);
}

void log_line(const std::string& text) {
    std::fprintf(stderr, "shmbus bridge: %s\n", text.c_str());
    std::fflush(stderr);
}

std::string nats_error(natsStatus s) {
    std::string text = natsStatus_GetText(s);
    if (const char* last = nats_GetLastError(nullptr); last != nullptr && *last != '\0') text += std::string(" (") + last + ")";
    return text;
}

std::string hex_id(uint64_t id) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
    return buf;
}

// A name for JetStream (durable consumer: no '.', '*', '>' or spaces) and for a shmbus producer
// ([A-Za-z0-9._-], at most 47): what does not fit becomes '_', and a long one is cut and keeps a hash.
std::string safe_name(const std::string& text, bool allow_dot) {
    std::string out;
    for (char c : text) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || (allow_dot && c == '.')) ? c : '_';
    if (out.size() > 40) out = out.substr(0, 30) + "-" + hex_id(std::hash<std::string>{}(text)).substr(0, 8);
    return out;
}

template <class T, void (*Destroy)(T*)>
struct NatsDeleter {
    void operator()(T* p) const { Destroy(p); }
};
using Options = std::unique_ptr<natsOptions, NatsDeleter<natsOptions, natsOptions_Destroy>>;
using Connection = std::unique_ptr<natsConnection, NatsDeleter<natsConnection, natsConnection_Destroy>>;
using JetStream = std::unique_ptr<jsCtx, NatsDeleter<jsCtx, jsCtx_Destroy>>;
using Subscription = std::unique_ptr<natsSubscription, NatsDeleter<natsSubscription, natsSubscription_Destroy>>;
using Msg = std::unique_ptr<natsMsg, NatsDeleter<natsMsg, natsMsg_Destroy>>;

void on_disconnected(natsConnection*, void*) {
    set_connected(false);
    log_line("disconnected from the NATS server; reconnecting");
}
void on_reconnected(natsConnection*, void*) {
    set_connected(true);
    if (g_metrics != nullptr) g_metrics->reconnects.Add({{"bridge", g_bridge_name}}).Increment();
    log_line("reconnected to the NATS server");
}

// One connection, never reconnected by the library: after a disconnection the library would send
// what it still held for the old server to the new one ahead of the window the bridge sends again,
// out of order. Each forwarding loop makes its own (Link) and makes it again when it fails.
natsStatus connect(const BridgeSettings& s, Connection& out) {
    natsOptions* raw = nullptr;
    if (natsStatus st = natsOptions_Create(&raw); st != NATS_OK) return st;
    Options opts(raw);
    natsStatus st = natsOptions_SetURL(raw, s.nats_url.c_str());
    if (st == NATS_OK) st = natsOptions_SetName(raw, ("shmbus-bridge-" + s.name).c_str());
    if (st == NATS_OK) st = natsOptions_SetAllowReconnect(raw, false);
    if (st == NATS_OK) st = natsOptions_SetDisconnectedCB(raw, on_disconnected, nullptr);
    if (st == NATS_OK && !s.user.empty()) st = natsOptions_SetUserInfo(raw, s.user.c_str(), s.password.c_str());
    if (st == NATS_OK && !s.token.empty()) st = natsOptions_SetToken(raw, s.token.c_str());
    if (st == NATS_OK && !s.creds.empty()) st = natsOptions_SetUserCredentialsFromFiles(raw, s.creds.c_str(), nullptr);
    if (st == NATS_OK && !s.tls_ca.empty()) {
        st = natsOptions_SetSecure(raw, true);
        if (st == NATS_OK) st = natsOptions_LoadCATrustedCertificates(raw, s.tls_ca.c_str());
    }
    if (st != NATS_OK) return st;
    natsConnection* nc = nullptr;
    st = natsConnection_Connect(&nc, raw);
    out.reset(nc);
    return st;
}

natsStatus jet_stream(natsConnection* nc, JetStream& out, jsOptions* opts) {
    jsCtx* js = nullptr;
    const natsStatus st = natsConnection_JetStream(&js, nc, opts);
    out.reset(js);
    return st;
}

// A forwarding loop's connection and JetStream context, made again (every 250 ms to 2 s) after
// the server went away, until the bridge stops.
struct Link {
    const BridgeSettings& settings;
    jsOptions* options;  // the JetStream context's (asynchronous publishing), or null
    Connection nc;
    JetStream js;
    bool was_connected = false;
    uint64_t generation = 0;  // bumped with every new connection

    [[nodiscard]] bool ensure() {
        auto backoff = 250ms;
        while (!g_stop.load()) {
            if (nc && natsConnection_Status(nc.get()) == NATS_CONN_STATUS_CONNECTED) return true;
            drop();
            if (connect(settings, nc) == NATS_OK && jet_stream(nc.get(), js, options) == NATS_OK) {
                ++generation;
                if (was_connected) on_reconnected(nc.get(), nullptr);
                was_connected = true;
                set_connected(true);
                return true;
            }
            std::this_thread::sleep_for(backoff);
            backoff = std::min<std::chrono::milliseconds>(backoff * 2, 2000ms);
        }
        return false;
    }
    // Discards the connection and whatever it still held for the server.
    void drop() {
        js.reset();
        nc.reset();
    }
};

// --stream NAME: made for the --out subjects unless it exists (its subjects are then its own).
bool ensure_stream(natsConnection* nc, const BridgeSettings& s) {
    JetStream js;
    if (jet_stream(nc, js, nullptr) != NATS_OK) return false;
    jsStreamInfo* info = nullptr;
    jsErrCode jerr{};
    if (js_GetStreamInfo(&info, js.get(), s.stream.c_str(), nullptr, &jerr) == NATS_OK) {
        jsStreamInfo_Destroy(info);
        return true;
    }
    std::vector<const char*> subjects;
    for (const auto& [topic, subject] : s.out) subjects.push_back(subject.c_str());
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = s.stream.c_str();
    cfg.Subjects = subjects.data();
    cfg.SubjectsLen = int(subjects.size());
    cfg.Storage = js_FileStorage;
    const natsStatus st = js_AddStream(&info, js.get(), &cfg, nullptr, &jerr);
    if (st != NATS_OK) {
        log_line("cannot create stream '" + s.stream + "': " + nats_error(st));
        return false;
    }
    jsStreamInfo_Destroy(info);
    log_line("created stream '" + s.stream + "'");
    return true;
}

// ---- outbound: topic -> subject ----

// A message read from the topic and not yet settled: sent (maybe again) until JetStream
// acknowledged it. The ring's copy stays too (the cursor still holds it); this one is what a retry
// sends, without seeking.
struct InFlight {
    shmbus::Message handle;  // what the cursor is acked with once this and everything before it are done
    std::string payload;
    std::vector<std::pair<std::string, std::string>> headers;
    bool forward = true;     // false: it came from another bus and is not sent back out
    bool acked = false;      // JetStream acknowledged it (or it needs no sending)
};

// The sliding window of one mapping, shared with the library's acknowledgment handler.
struct OutState {
    std::mutex mutex;
    std::condition_variable acked;  // an acknowledgment or a failure came
    std::deque<InFlight> window;    // in id order
    uint64_t failures = 0;
    uint64_t duplicates = 0;        // acknowledged as already stored (sent again)
};

// The message id at the end of a Nats-Msg-Id "<bus>-<topic>-<id>".
uint64_t id_of(natsMsg* msg) {
    const char* text = nullptr;
    if (natsMsgHeader_Get(msg, kMsgIdHeader, &text) != NATS_OK || text == nullptr) return UINT64_MAX;
    const char* dash = std::strrchr(text, '-');
    return dash == nullptr ? UINT64_MAX : std::strtoull(dash + 1, nullptr, 10);
}

void on_publish_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto& state = *static_cast<OutState*>(closure);
    const uint64_t id = id_of(msg);
    {
        std::lock_guard lock(state.mutex);
        if (pa != nullptr && pae == nullptr) {
            if (pa->Duplicate) ++state.duplicates;
            auto it = std::lower_bound(state.window.begin(), state.window.end(), id,
                                       [](const InFlight& f, uint64_t v) { return f.handle.id < v; });
            if (it != state.window.end() && it->handle.id == id) it->acked = true;
        } else {
            ++state.failures;
        }
    }
    state.acked.notify_one();
    natsMsg_Destroy(msg);
}

// The NATS message for `f`: its payload, its headers, its origin and its id for JetStream's
// duplicate window.
Msg to_nats(const std::string& subject, const std::string& topic, const std::string& bus, const InFlight& f) {
    natsMsg* raw = nullptr;
    if (natsMsg_Create(&raw, subject.c_str(), nullptr, f.payload.data(), int(f.payload.size())) != NATS_OK) return nullptr;
    Msg msg(raw);
    bool has_origin = false;
    for (const auto& [k, v] : f.headers) {
        (void)natsMsgHeader_Add(raw, k.c_str(), v.c_str());
        has_origin = has_origin || k == kOriginHeader;
    }
    if (!has_origin) (void)natsMsgHeader_Set(raw, kOriginHeader, bus.c_str());
    (void)natsMsgHeader_Set(raw, kMsgIdHeader, (bus + "-" + topic + "-" + std::to_string(f.handle.id)).c_str());
    return msg;
}

// Forwards `topic` to `subject` until stopped, keeping up to `window` messages in flight all the
// time (a sliding window): the cursor is acked up to the longest acknowledged prefix, so it never
// passes a message JetStream has not stored. After a failure nothing more goes out; once what is in
// flight has settled, everything unacknowledged is sent again, in order, over a new connection (the
// library's own reconnection would send what it still held for the old server ahead of it).
// JetStream drops the repeats by Nats-Msg-Id, and one connection stores publishes in the order sent,
// so what a failure left stored is a prefix and the stream's order holds.
void forward_out(shmbus::Subscriber& sub, const BridgeSettings& settings, const std::string& topic, const std::string& subject,
                 const std::string& bus, uint32_t window) {
    OutState state;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = window;
    jo.PublishAsync.AckHandler = on_publish_ack;
    jo.PublishAsync.AckHandlerClosure = &state;
    Link link{settings, &jo, nullptr, nullptr};
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = kPublishWaitMs;
    const MappingCounters counters = counters_for("out", topic, subject);
    auto backoff = 100ms;
    std::size_t sent = 0;  // entries at the window's front already sent on this connection
    uint64_t generation = 0;
    auto progress = std::chrono::steady_clock::now();  // when the acknowledged prefix last moved
    while (!g_stop.load()) {
        if (!link.ensure()) return;  // also while idle: its state (and the metrics) follow the server
        if (link.generation != generation) {  // a new connection: nothing sent on the old one counts
            generation = link.generation;
            sent = 0;
            progress = std::chrono::steady_clock::now();
        }
        // 1. The acknowledged prefix leaves the window and the cursor moves past it.
        std::optional<shmbus::Message> done;
        uint64_t carried = 0, failures = 0, duplicates = 0;
        {
            std::lock_guard lock(state.mutex);
            while (!state.window.empty() && state.window.front().acked) {
                done = state.window.front().handle;
                carried += state.window.front().forward ? 1 : 0;
                state.window.pop_front();
                if (sent > 0) --sent;
            }
            failures = state.failures;
            duplicates = std::exchange(state.duplicates, 0);
        }
        if (done) {
            (void)sub.ack(*done);
            counters.carry(double(carried));
        }
        if (done || sent == 0) progress = std::chrono::steady_clock::now();
        // Acknowledgments that never come (the server went away with the messages) are failures.
        if (failures == 0 && sent != 0 && std::chrono::steady_clock::now() - progress > std::chrono::milliseconds(2 * kPublishWaitMs)) {
            std::lock_guard lock(state.mutex);
            failures = ++state.failures;
        }
        if (duplicates != 0)
            log_line("'" + topic + "' -> '" + subject + "': " + std::to_string(duplicates) + " were stored already (sent again)");
        // 2. A failure: let what is in flight settle, then start over on a new connection.
        if (failures != 0) {
            jsPubOptions wait;
            jsPubOptions_Init(&wait);
            wait.MaxWait = kPublishWaitMs * 2;
            if (js_PublishAsyncComplete(link.js.get(), &wait) != NATS_OK) {
                natsMsgList pending{};
                if (js_PublishAsyncGetPendingList(&pending, link.js.get()) == NATS_OK) natsMsgList_Destroy(&pending);
            }
            uint64_t first = 0;
            {
                std::lock_guard lock(state.mutex);
                state.failures = 0;
                first = state.window.empty() ? 0 : state.window.front().handle.id;
            }
            log_line("'" + topic + "' -> '" + subject + "': " + std::to_string(failures) +
                     " not acknowledged; sending everything unacknowledged again from id " + std::to_string(first));
            counters.retry();
            link.drop();
            sent = 0;
            std::this_thread::sleep_for(backoff);
            backoff = std::min<std::chrono::milliseconds>(backoff * 2, 2000ms);
            continue;
        }
        // 3. Fill the window: what is not sent on this connection yet, then new messages.
        std::size_t size = 0;
        {
            std::lock_guard lock(state.mutex);
            size = state.window.size();
        }
        bool caught_up = true;
        if (size < window) {
            auto read = [&](const shmbus::Message& m) {
                InFlight f;
                f.handle = m;
                // A message that came in from another bus is not sent back out: every bus reads
                // the subject itself.
                if (auto origin = m.headers.get(kOriginHeader); origin && *origin != bus) f.forward = false;
                if (f.forward) {
                    f.payload.assign(m.text());
                    for (const shmbus::Header& h : m.headers) f.headers.emplace_back(h.key, h.value);
                }
                f.acked = !f.forward;
                std::lock_guard lock(state.mutex);
                state.window.push_back(std::move(f));
            };
            const std::size_t room = window - size;
            const auto r = size == 0 ? sub.receive(read, 100ms, room) : sub.poll(read, room);
            if (r.status == shmbus::ReceiveStatus::deleted || r.status == shmbus::ReceiveStatus::corrupt) {
                log_line("topic '" + topic + "' can no longer be read: " + (r.status == shmbus::ReceiveStatus::deleted ? "deleted" : "corrupt"));
                return;
            }
            caught_up = r.status != shmbus::ReceiveStatus::ok || r.count < room;
        }
        bool published = false;
        for (;;) {
            Msg msg;
            {
                std::lock_guard lock(state.mutex);
                if (sent >= state.window.size() || state.failures != 0) break;
                const InFlight& f = state.window[sent++];
                if (!f.forward || f.acked) continue;
                msg = to_nats(subject, topic, bus, f);
            }
            natsMsg* raw = msg.release();
            if (raw == nullptr || js_PublishMsgAsync(link.js.get(), &raw, &po) != NATS_OK) {
                std::lock_guard lock(state.mutex);
                ++state.failures;
            }
            natsMsg_Destroy(raw);  // no-op once the library took it
            published = true;
        }
        // Out at once when there is no more to send: left to the library's flusher, a lone
        // message waits about a millisecond in its buffer.
        if (published && caught_up) (void)natsConnection_FlushTimeout(link.nc.get(), kPublishWaitMs);
        if (!published) {  // nothing to send: wait for an acknowledgment (or new messages next turn)
            std::unique_lock lock(state.mutex);
            if (!state.window.empty() && !state.window.front().acked && state.failures == 0)
                state.acked.wait_for(lock, 10ms);
        }
        backoff = 100ms;
    }
}

// ---- inbound: subject -> topic ----

// The local headers of a NATS message: its own (those shmbus can carry) and its origin, so that
// this bus never sends it back out.
std::vector<std::pair<std::string, std::string>> from_nats_headers(natsMsg* msg, std::string& origin) {
    std::vector<std::pair<std::string, std::string>> out;
    const char** keys = nullptr;
    int count = 0;
    if (natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK) {
        for (int i = 0; i < count; ++i) {
            const std::string key = keys[i];
            if (key == kMsgIdHeader || !shmbus::validate_header_key(key)) continue;
            const char** values = nullptr;
            int n = 0;
            if (natsMsgHeader_Values(msg, keys[i], &values, &n) != NATS_OK) continue;
            for (int v = 0; v < n; ++v) {
                if (key == kOriginHeader) origin = values[v];
                else out.emplace_back(key, values[v]);
            }
            free(values);
        }
        free(keys);
    }
    if (origin.empty()) origin = "nats";  // published into NATS directly
    out.emplace_back(kOriginHeader, origin);
    return out;
}

// The stream that stores `subject`, or empty.
std::string stream_of(jsCtx* js, const std::string& subject) {
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = subject.c_str();
    jsStreamNamesList* names = nullptr;
    std::string out;
    if (js_StreamNames(&names, js, &o, nullptr) == NATS_OK && names != nullptr && names->Count > 0) out = names->List[0];
    if (names != nullptr) jsStreamNamesList_Destroy(names);
    return out;
}

// Where the durable consumer must start so that nothing committed here comes twice and nothing
// fetched by a predecessor and never published here is stepped over: one past the higher of this
// topic's last sequence from the bridge's producer and the consumer's own ack floor (the latter
// matters when the topic is new, after a reboot). A consumer left with a predecessor's unacked
// messages would deliver new ones before them, out of order, so it is made again at that point.
uint64_t restart_consumer(jsCtx* js, const std::string& stream, const std::string& durable, uint64_t committed) {
    uint64_t floor = 0;
    jsConsumerInfo* ci = nullptr;
    if (js_GetConsumerInfo(&ci, js, stream.c_str(), durable.c_str(), nullptr, nullptr) == NATS_OK) {
        floor = ci->AckFloor.Stream;
        jsConsumerInfo_Destroy(ci);
        (void)js_DeleteConsumer(js, stream.c_str(), durable.c_str(), nullptr, nullptr);
    }
    return std::max(floor, committed) + 1;
}

void forward_in(shmbus::Publisher& pub, const BridgeSettings& settings, const std::string& subject, const std::string& durable,
                const std::string& topic, const std::string& bus) {
    Link link{settings, nullptr, nullptr, nullptr};
    const MappingCounters counters = counters_for("in", topic, subject);
    Subscription sub;
    auto backoff = 100ms;
    while (!g_stop.load()) {
        if (!link.ensure()) return;
        jsCtx* js = link.js.get();
        if (!sub) {
            const std::string stream = stream_of(js, subject);
            jsSubOptions so;
            jsSubOptions_Init(&so);
            so.Config.AckPolicy = js_AckExplicit;
            so.Config.DeliverPolicy = js_DeliverAll;
            if (!stream.empty()) {
                so.Config.DeliverPolicy = js_DeliverByStartSequence;
                so.Config.OptStartSeq = restart_consumer(js, stream, durable, pub.last_sequence());
            }
            // What a bridge killed mid-batch had fetched comes again after this (the default is 30 s).
            so.Config.AckWait = kAckWaitNs;
            // One batch in hand at a time, processed in order: the producer's sequence check relies
            // on stream order (a lower sequence after a higher one reads as a duplicate).
            so.Config.MaxAckPending = kFetchBatch;
            natsSubscription* raw = nullptr;
            jsErrCode jerr{};
            const natsStatus st = js_PullSubscribe(&raw, js, subject.c_str(), durable.c_str(), nullptr, &so, &jerr);
            sub.reset(raw);
            if (st != NATS_OK) {
                log_line("cannot consume '" + subject + "' yet: " + nats_error(st));
                std::this_thread::sleep_for(backoff);
                backoff = std::min<std::chrono::milliseconds>(backoff * 2, 2000ms);
                continue;
            }
            backoff = 100ms;
        }
        natsMsgList list{};
        jsErrCode jerr{};
        const natsStatus st = natsSubscription_Fetch(&list, sub.get(), kFetchBatch, kFetchWaitMs, &jerr);
        if (st == NATS_TIMEOUT) continue;
        if (st != NATS_OK) {  // the server went away: a new connection, and the consumer made again
            sub.reset();
            link.drop();
            std::this_thread::sleep_for(100ms);
            continue;
        }
        for (int i = 0; i < list.Count && !g_stop.load(); ++i) {
            natsMsg* msg = list.Msgs[i];
            jsMsgMetaData* meta = nullptr;
            if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) continue;
            const uint64_t sequence = meta->Sequence.Stream;
            jsMsgMetaData_Destroy(meta);
            std::string origin;
            const auto pairs = from_nats_headers(msg, origin);
            if (origin == bus) {  // ours, sent out by this bus: already here
                (void)natsMsg_Ack(msg, nullptr);
                continue;
            }
            std::vector<shmbus::Header> headers;
            for (const auto& [k, v] : pairs) headers.push_back({k, v});
            const auto payload = std::as_bytes(std::span<const char>(natsMsg_GetData(msg), std::size_t(natsMsg_GetDataLength(msg))));
            // The stream sequence as the producer's: a message delivered again after a crash
            // between the local commit and the JetStream ack is a duplicate here. In order: one
            // that cannot be published now (a full topic) is tried again, never stepped over.
            shmbus::PublishStatus ps = pub.publish_sequence(sequence, payload, headers);
            for (auto wait = 100ms; ps != shmbus::PublishStatus::ok && ps != shmbus::PublishStatus::duplicate && !g_stop.load();
                 wait = std::min<std::chrono::milliseconds>(wait * 2, 2000ms)) {
                log_line("'" + subject + "' -> '" + topic + "': stream message " + std::to_string(sequence) +
                         " not published yet: " + shmbus::to_string(ps));
                if (ps == shmbus::PublishStatus::deleted || ps == shmbus::PublishStatus::corrupt) return;
                counters.retry();
                std::this_thread::sleep_for(wait);
                ps = pub.publish_sequence(sequence, payload, headers);
            }
            if (ps == shmbus::PublishStatus::ok || ps == shmbus::PublishStatus::duplicate) {
                (void)natsMsg_Ack(msg, nullptr);
                if (ps == shmbus::PublishStatus::ok) counters.carry(1);
            }
        }
        natsMsgList_Destroy(&list);
    }
}

}  // namespace

bool bridge_available() noexcept { return true; }

int run_bridge(shmbus::Client& client, const BridgeSettings& s) {
    if (s.out.empty() && s.in.empty()) {
        std::cerr << "shmbus: bridge needs at least one --out or --in\n";
        return 2;
    }
    const std::string durable = "bridge-" + safe_name(s.name, true);
    if (auto st = shmbus::validate_subscription_name(durable); !st) {
        std::cerr << "shmbus: bridge name: " << st.error().message << "\n";
        return 2;
    }
    const std::string bus = hex_id(client.bus_id());
    // Everything local first: a topic that cannot be opened is an error before NATS is involved.
    std::vector<shmbus::Subscriber> outs;
    for (const auto& [topic, subject] : s.out) {
        shmbus::SubscribeOptions o;
        o.durable_name = durable;
        o.from = shmbus::StartFrom::earliest;  // a new bridge forwards what the ring still holds
        o.auto_ack = false;
        auto sub = client.subscribe(topic, o);
        if (!sub) {
            std::cerr << "shmbus: bridge: " << sub.error().message << "\n";
            return 1;
        }
        outs.push_back(std::move(sub.value()));
    }
    std::vector<shmbus::Publisher> ins;
    std::vector<std::string> consumers;
    for (const auto& [subject, topic] : s.in) {
        shmbus::PublisherOptions o;
        o.producer = "bridge." + safe_name(s.name + "." + subject, true);
        o.block_timeout = 1s;
        auto pub = client.publisher(topic, o);
        if (!pub) {
            std::cerr << "shmbus: bridge: " << pub.error().message << "\n";
            return 1;
        }
        ins.push_back(std::move(pub.value()));
        consumers.push_back(safe_name(s.name + "-" + subject, false));
    }

    BridgeMetrics metrics;
    g_bridge_name = s.name;
    if (!s.metrics.empty()) {
        const std::string address = s.metrics.find(':') == std::string::npos ? "127.0.0.1:" + s.metrics : s.metrics;
        try {
            metrics.exposer = std::make_unique<prometheus::Exposer>(address, 1);
            metrics.exposer->RegisterCollectable(metrics.registry);
        } catch (const std::exception& e) {
            std::cerr << "shmbus: bridge: cannot serve metrics on " << address << ": " << e.what() << "\n";
            return 1;
        }
        g_metrics = &metrics;
        set_connected(false);
    }
    Connection nc;
    if (natsStatus st = connect(s, nc); st != NATS_OK) {
        std::cerr << "shmbus: bridge: cannot connect to " << s.nats_url << ": " << nats_error(st) << "\n";
        return 1;
    }
    set_connected(true);
    if (!s.stream.empty() && !ensure_stream(nc.get(), s)) return 1;
    std::signal(SIGTERM, [](int) { g_stop.store(true); });
    std::signal(SIGINT, [](int) { g_stop.store(true); });
    log_line("bus " + bus + " <-> " + s.nats_url + ": " + std::to_string(s.out.size()) + " out, " + std::to_string(s.in.size()) + " in");
    nc.reset();  // it checked the credentials and the stream: each mapping has its own (Link)
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < s.out.size(); ++i)
        threads.emplace_back(forward_out, std::ref(outs[i]), std::cref(s), s.out[i].first, s.out[i].second, bus, s.window);
    for (std::size_t i = 0; i < s.in.size(); ++i)
        threads.emplace_back(forward_in, std::ref(ins[i]), std::cref(s), s.in[i].first, consumers[i], s.in[i].second, bus);
    for (auto& t : threads) t.join();
    g_metrics = nullptr;
    return 0;
}

}  // namespace cli
