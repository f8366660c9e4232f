#include "bridge/link.h"

#include <cctype>
#include <cstdio>
#include <functional>
#include <map>
#include <vector>

namespace cli::bridge {

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

std::string safe_name(const std::string& text, bool allow_dot) {
    std::string out;
    for (char c : text) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || (allow_dot && c == '.')) ? c : '_';
    if (out.size() > 40) out = out.substr(0, 30) + "-" + hex_id(std::hash<std::string>{}(text)).substr(0, 8);
    return out;
}

void on_disconnected(natsConnection*, void*) {
    set_connected(false);
    log_line("disconnected from the NATS server; reconnecting");
}
void on_reconnected(natsConnection*, void*) {
    set_connected(true);
    if (g_metrics != nullptr) g_metrics->reconnects.Add({{"bridge", g_bridge_name}}).Increment();
    log_line("reconnected to the NATS server");
}

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
