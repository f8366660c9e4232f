#include "bridge/link.h"

#include <cctype>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <vector>

namespace cli::bridge {

MappingCounters counters_for(const char* direction, const std::string& topic, const std::string& subject) {
    if (g_metrics == nullptr) return {};
    const std::map<std::string, std::string> labels{{"bridge", g_bridge_name}, {"direction", direction}, {"topic", topic}, {"subject", subject}};
    return {&g_metrics->carried.Add(labels), &g_metrics->retried.Add(labels)};
}
namespace {
std::mutex g_live_mutex;
std::set<uint64_t> g_live;  // the numbers of the connections up (guarded by g_live_mutex)
std::atomic<uint64_t> g_next_connection{1};

// Called with g_live_mutex held, so that a report and a connect never show in the wrong order.
void show_connected_locked() {
    if (g_metrics == nullptr) return;
    g_metrics->connected.Add({{"bridge", g_bridge_name}}).Set(g_live.empty() ? 0 : 1);
    g_metrics->reconnects.Add({{"bridge", g_bridge_name}}).Increment(0);  // shown from the start
}

// The library's report, on its own thread; the closure is the connection's number.
void on_disconnected(natsConnection*, void* closure) {
    const auto id = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(closure));
    {
        std::lock_guard lock(g_live_mutex);
        if (g_live.erase(id) == 0) return;  // closed by the bridge itself: not news
        show_connected_locked();
    }
    log_line("disconnected from the NATS server; reconnecting");
}
}  // namespace

void show_connected() {
    std::lock_guard lock(g_live_mutex);
    show_connected_locked();
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

std::string safe_name(const std::string& text, bool allow_dot) {
    std::string out;
    for (char c : text) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || (allow_dot && c == '.')) ? c : '_';
    if (out.size() > 40) out = out.substr(0, 30) + "-" + hex_id(std::hash<std::string>{}(text)).substr(0, 8);
    return out;
}

void note_reconnected() {
    if (g_metrics != nullptr) g_metrics->reconnects.Add({{"bridge", g_bridge_name}}).Increment();
    log_line("reconnected to the NATS server");
}

namespace {
natsStatus connect_untracked(const BridgeSettings& s, uint64_t id, Connection& out) {
    natsOptions* raw = nullptr;
    if (natsStatus st = natsOptions_Create(&raw); st != NATS_OK) return st;
    Options opts(raw);
    natsStatus st = natsOptions_SetURL(raw, s.nats_url.c_str());
    if (st == NATS_OK) st = natsOptions_SetName(raw, ("shmbus-bridge-" + s.name).c_str());
    if (st == NATS_OK) st = natsOptions_SetAllowReconnect(raw, false);
    if (st == NATS_OK) st = natsOptions_SetDisconnectedCB(raw, on_disconnected, reinterpret_cast<void*>(static_cast<uintptr_t>(id)));
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
}  // namespace

natsStatus TrackedConnection::open(const BridgeSettings& s) {
    close();
    id_ = g_next_connection.fetch_add(1, std::memory_order_relaxed);  // only unique: no order needed
    {
        // Up before it connects, so that a report of its loss during the connect is not missed.
        std::lock_guard lock(g_live_mutex);
        g_live.insert(id_);
    }
    const natsStatus st = connect_untracked(s, id_, nc_);
    if (st != NATS_OK) {
        close();
        return st;
    }
    show_connected();
    return st;
}

void TrackedConnection::close() noexcept {
    if (id_ != 0) {
        std::lock_guard lock(g_live_mutex);
        g_live.erase(id_);  // before the library's report of it, which then changes nothing
        id_ = 0;
    }
    nc_.reset();
}

natsStatus jet_stream(natsConnection* nc, JetStream& out, jsOptions* opts) {
    jsCtx* js = nullptr;
    const natsStatus st = natsConnection_JetStream(&js, nc, opts);
    out.reset(js);
    return st;
}

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

}  // namespace cli::bridge
