#include "shmbus/names.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "shmbus/layout/consumer_region.h"
#include "shmbus/layout/record.h"
#include "shmbus/layout/segment_header.h"
#include "shmbus/topic.h"

namespace shmbus {
namespace {

bool name_char(char c) noexcept {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

Status validate_name(std::string_view kind, std::string_view name, std::size_t max) {
    auto bad = [&](const std::string& why) {
        return make_error(Errc::invalid_name, "invalid " + std::string(kind) + " name '" + std::string(name) + "': " + why);
    };
    if (name.empty()) return make_error(Errc::invalid_name, "invalid " + std::string(kind) + " name: empty");
    if (name.size() > max) return bad("longer than " + std::to_string(max) + " characters");
    if (!std::isalnum(static_cast<unsigned char>(name.front()))) return bad("must start with a letter or digit");
    for (char c : name)
        if (!name_char(c)) return bad("only letters, digits, '.', '_' and '-' are allowed");
    if (name.find("..") != std::string_view::npos) return bad("'..' is not allowed");
    return ok_status();
}

}  // namespace

Status validate_topic_name(std::string_view name) { return validate_name("topic", name, layout::kMaxTopicName); }

bool is_inbox_name(std::string_view name) noexcept {
    if (name.size() != kInboxNameSize || name.substr(0, kInboxPrefix.size()) != kInboxPrefix) return false;
    for (char c : name.substr(kInboxPrefix.size()))
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

Status validate_topic_or_inbox_name(std::string_view name) {
    return is_inbox_name(name) ? ok_status() : validate_topic_name(name);
}

Status validate_subscription_name(std::string_view name) {
    return validate_name("subscription", name, layout::kMaxSubscriptionName);
}

Status validate_producer_name(std::string_view name) {
    return validate_name("producer", name, layout::kMaxProducerName);
}

std::optional<uint64_t> parse_size(std::string_view text) {
    if (text.empty()) return std::nullopt;
    uint64_t value = 0;
    std::size_t i = 0;
    for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
        const uint64_t digit = uint64_t(text[i] - '0');
        if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    if (i == 0) return std::nullopt;
    std::string_view unit = text.substr(i);
    unsigned shift = 0;
    if (!unit.empty()) {
        switch (std::toupper(static_cast<unsigned char>(unit.front()))) {
            case 'K': shift = 10; break;
            case 'M': shift = 20; break;
            case 'G': shift = 30; break;
            case 'B': shift = 0; break;
            default: return std::nullopt;
        }
        unit.remove_prefix(1);
        if (shift != 0 && (unit == "iB" || unit == "ib" || unit == "B" || unit == "b")) unit = {};
        if (!unit.empty()) return std::nullopt;
    }
    if (shift != 0 && value > (UINT64_MAX >> shift)) return std::nullopt;
    return value << shift;
}

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
    uint64_t value = 0;
    std::size_t i = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        if (value > (UINT64_MAX - 9) / 10) return std::nullopt;
        value = value * 10 + uint64_t(text[i] - '0');
    }
    if (i == 0) return std::nullopt;
    const std::string_view unit = text.substr(i);
    uint64_t scale = 0;
    if (unit == "ns") scale = 1;
    else if (unit == "us") scale = 1'000;
    else if (unit == "ms") scale = 1'000'000;
    else if (unit == "s" || (unit.empty() && value == 0)) scale = 1'000'000'000;
    else if (unit == "m") scale = 60'000'000'000;
    else if (unit == "h") scale = 3'600'000'000'000;
    else if (unit == "d") scale = 86'400'000'000'000;
    else return std::nullopt;
    if (value > uint64_t(INT64_MAX) / scale) return std::nullopt;
    return std::chrono::nanoseconds(int64_t(value * scale));
}

const char* to_string(OnFull policy) noexcept {
    switch (policy) {
        case OnFull::block: return "block";
        case OnFull::fail: return "fail";
        case OnFull::overwrite: return "overwrite";
        case OnFull::archive: return "archive";
    }
    return "unknown";
}

bool parse_on_full(std::string_view text, OnFull& out) noexcept {
    if (text == "block") out = OnFull::block;
    else if (text == "fail") out = OnFull::fail;
    else if (text == "overwrite") out = OnFull::overwrite;
    else if (text == "archive") out = OnFull::archive;
    else return false;
    return true;
}

Status validate_config(const TopicConfig& c) {
    auto bad = [](const std::string& why) { return make_error(Errc::invalid_argument, why); };
    if (c.capacity < kMinCapacity || c.capacity > kMaxCapacity)
        return bad("capacity " + std::to_string(c.capacity) + " is outside " + std::to_string(kMinCapacity) + " .. " +
                   std::to_string(kMaxCapacity) + " bytes");
    const uint64_t cap = round_capacity(c.capacity);
    if (c.max_message == 0 || c.max_message > max_message_for(cap))
        return bad("max message " + std::to_string(c.max_message) + " must be 1 .. " + std::to_string(max_message_for(cap)) +
                   " bytes for a " + std::to_string(cap) + "-byte ring (an eighth of it, minus a record header)");
    if (uint32_t(c.on_full) > uint32_t(OnFull::archive)) return bad("unknown on-full policy");
    const std::string slots = std::to_string(kMaxSlots);
    if (c.max_producers == 0 || c.max_producers > kMaxSlots) return bad("max producers must be 1 .. " + slots);
    if (c.max_consumers == 0 || c.max_consumers > kMaxSlots) return bad("max consumers must be 1 .. " + slots);
    if (c.unblock_timeout.count() < 0 || (c.unblock_timeout.count() > 0 && c.unblock_timeout < kMinUnblockTimeout))
        return bad("unblock timeout must be 0 (off) or at least " + std::to_string(kMinUnblockTimeout.count()) + " ms");
    if (c.expire_detached.count() < 0) return bad("expire-detached must be 0 (never) or positive");
    if (c.ttl.count() < 0) return bad("ttl must be 0 (messages do not expire) or positive");
    if (!c.timestamps && c.on_full == OnFull::archive)
        return bad("on-full archive needs timestamps: an archive is searched by time");
    return ok_status();
}

std::string short_duration(uint64_t ns) {
    char buf[32];
    if (ns < 1000) std::snprintf(buf, sizeof buf, "%llu ns", (unsigned long long)ns);
    else if (ns < 1'000'000) std::snprintf(buf, sizeof buf, "%.3g us", double(ns) / 1e3);
    else if (ns < 1'000'000'000) std::snprintf(buf, sizeof buf, "%.3g ms", double(ns) / 1e6);
    else std::snprintf(buf, sizeof buf, "%.3g s", double(ns) / 1e9);
    return buf;
}

TopicConfig with_defaults(TopicConfig c) noexcept {
    if (c.max_message == 0 && c.capacity >= kMinCapacity && c.capacity <= kMaxCapacity) {
        c.max_message = uint32_t(std::min<uint64_t>(kDefaultMaxMessage, max_message_for(round_capacity(c.capacity))));
    }
    return c;
}

const char* to_string(Errc code) noexcept {
    switch (code) {
        case Errc::ok: return "ok";
        case Errc::invalid_name: return "invalid_name";
        case Errc::invalid_argument: return "invalid_argument";
        case Errc::message_too_large: return "message_too_large";
        case Errc::topic_not_found: return "topic_not_found";
        case Errc::topic_exists: return "topic_exists";
        case Errc::bad_magic: return "bad_magic";
        case Errc::bad_version: return "bad_version";
        case Errc::corrupt_segment: return "corrupt_segment";
        case Errc::no_space: return "no_space";
        case Errc::io_error: return "io_error";
        case Errc::daemon_not_running: return "daemon_not_running";
        case Errc::daemon_running: return "daemon_running";
        case Errc::protocol_error: return "protocol_error";
        case Errc::permission_denied: return "permission_denied";
        case Errc::no_free_slot: return "no_free_slot";
        case Errc::busy: return "busy";
        case Errc::disconnected: return "disconnected";
        case Errc::timed_out: return "timed_out";
        case Errc::no_responder: return "no_responder";
        case Errc::responder_died: return "responder_died";
        case Errc::responder_error: return "responder_error";
    }
    return "unknown";
}

std::optional<Errc> errc_from_code(uint32_t code) noexcept {
    if (std::strcmp(to_string(Errc(code)), "unknown") == 0) return std::nullopt;
    return Errc(code);
}

namespace detail {
void bad_result_access(const Error& error) noexcept {
    // A bug in the caller, never a runtime condition: say so where a person will see it.
    std::fprintf(stderr, "shmbus: value of a failed Result used (%s: %s)\n", to_string(error.code), error.message.c_str());
    std::abort();
}
}  // namespace detail

}  // namespace shmbus
