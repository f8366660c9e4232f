// Pieces every shmbus subcommand shares: exit statuses, stop signals, option parsing, output.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "shmbus/shmbus.h"

namespace cli {

inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

inline std::atomic<bool> g_stop{false};
extern "C" inline void on_signal(int) { g_stop.store(true, std::memory_order_relaxed); }

inline void install_stop_handlers() {
    struct sigaction sa{};
    sa.sa_handler = on_signal;  // no SA_RESTART: blocking calls return and the loop sees g_stop
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
}

inline int fail(const shmbus::Error& e) {
    std::cerr << "shmbus: " << e.message << "\n";
    return e.code == shmbus::Errc::invalid_name ? kExitUsage : kExitError;
}

// An option given as text and parsed after the command line: empty means "not given"; text that
// does not parse sets rc to the usage exit status and says what would have.
template <class T, std::optional<T> (*Parse)(std::string_view)>
struct ParsedOption {
    std::string text;
    const char* examples;
    std::optional<T> parse(const char* what, int& rc) const {
        if (text.empty()) return std::nullopt;
        auto v = Parse(text);
        if (!v) {
            std::cerr << "shmbus: invalid " << what << " '" << text << "' (" << examples << ")\n";
            rc = kExitUsage;
        }
        return v;
    }
};
using SizeOption = ParsedOption<uint64_t, shmbus::parse_size>;
using DurationOption = ParsedOption<std::chrono::nanoseconds, shmbus::parse_duration>;
inline constexpr const char* kSizeExamples = "use bytes or a suffix: 64K, 16M, 1G";
inline constexpr const char* kDurationExamples = "use a number and a unit: 500ms, 30s, 15m, 2h, 7d";

// 0 → "off"; otherwise the largest unit that divides it exactly: "250ms", "30s", "2h".
inline std::string duration_text(std::chrono::nanoseconds d, const char* zero) {
    if (d.count() <= 0) return zero;
    struct Unit {
        int64_t ns;
        const char* name;
    };
    static constexpr Unit kUnits[] = {{86'400'000'000'000, "d"}, {3'600'000'000'000, "h"}, {60'000'000'000, "m"},
                                      {1'000'000'000, "s"},      {1'000'000, "ms"},         {1'000, "us"}};
    for (const auto& u : kUnits)
        if (d.count() % u.ns == 0) return std::to_string(d.count() / u.ns) + u.name;
    return std::to_string(d.count()) + "ns";
}

inline int64_t to_ms(std::chrono::nanoseconds d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// Decimal digits only, within 64 bits: what CLI11 or strtoull alone would also take ("-1" as
// 2^64-1, "+5", " 5") is refused.
inline std::optional<uint64_t> parse_whole_number(const std::string& text) {
    if (text.empty() || text.size() > 20 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    errno = 0;
    const uint64_t value = std::strtoull(text.c_str(), nullptr, 10);
    if (errno == ERANGE) return std::nullopt;
    return value;
}


// CLI11's check for a whole number option (CLI11 alone would read "-1" as 2^64-1).
[[nodiscard]] const CLI::Validator& whole_number();
// `--from`: earliest, latest or a message id. rc is set on failure.
void parse_from(const std::string& from, shmbus::SubscribeOptions& options, int& rc);
// A name given on the command line, checked before anything talks to shmbusd (a bad one is a
// usage error): 0 or the exit status.
[[nodiscard]] int check_topic_name(const std::string& name);
// `--header KEY=VALUE`, each checked before anything talks to shmbusd (the views point into
// `given`). rc is set on failure.
std::vector<shmbus::Header> parse_headers(const std::vector<std::string>& given, int& rc);
[[nodiscard]] int check_subscription_name(const std::string& name);  // empty: not given

// Whether `text` is well-formed UTF-8 (what JSON strings can carry as they are).
[[nodiscard]] bool is_utf8(std::string_view text) noexcept;
// RFC 4648 base64, with padding.
[[nodiscard]] std::string base64(std::string_view bytes);

// One received message as `sub --format json` prints it (and `dlq list --json` lists it). A
// payload that is UTF-8 is a string, any other is base64: `payload_encoding` says which
// ("utf-8" or "base64"). Header values likewise; those in base64 are named in `header_encodings`.
inline nlohmann::json message_json(std::string_view topic, const shmbus::Message& m, bool group) {
    const bool text = is_utf8(m.text());
    nlohmann::json j = {{"topic", topic},
                        {"id", m.id},
                        {"timestamp_ns", m.timestamp_ns},
                        {"lost_before", m.lost_before},
                        {"payload", text ? std::string(m.text()) : base64(m.text())},
                        {"payload_encoding", text ? "utf-8" : "base64"}};
    if (group) j["attempt"] = m.attempt;
    if (!m.producer.empty()) {
        j["producer"] = std::string(m.producer);
        j["sequence"] = m.sequence;
    }
    if (!m.key.empty()) {
        const bool text_key = is_utf8(m.key);
        j["key"] = text_key ? std::string(m.key) : base64(m.key);
        if (!text_key) j["key_encoding"] = "base64";
    }
    if (m.expires_at_ns != 0) j["expires_at_ns"] = m.expires_at_ns;
    if (m.deliver_at_ns != 0) j["deliver_at_ns"] = m.deliver_at_ns;
    nlohmann::json headers = nlohmann::json::object();
    nlohmann::json encodings = nlohmann::json::object();
    for (const shmbus::Header& h : m.headers) {
        const std::string key(h.key);
        if (headers.contains(key)) continue;
        if (is_utf8(h.value)) {
            headers[key] = std::string(h.value);
        } else {
            headers[key] = base64(h.value);
            encodings[key] = "base64";
        }
    }
    j["headers"] = std::move(headers);
    if (!encodings.empty()) j["header_encodings"] = std::move(encodings);
    return j;
}

// A JSON text on one line; bytes that are not UTF-8 become U+FFFD rather than an exception.
inline std::string json_line(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace cli
