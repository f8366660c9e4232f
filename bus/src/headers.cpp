#include "shmbus/headers.h"

#include <cstdio>
#include <ctime>
#include <string>

#include "shmbus/layout/record.h"

namespace shmbus {

namespace {
bool key_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}
}  // namespace

namespace detail {
bool headers_ok(std::span<const Header> headers) noexcept {
    if (headers.size() > kMaxHeaders) return false;
    for (const Header& h : headers) {
        if (h.key.empty() || h.key.size() > kMaxHeaderKey || h.value.size() > kMaxHeaderValue) return false;
        for (char c : h.key)
            if (!key_char(c)) return false;
    }
    return true;
}
}  // namespace detail

Status validate_header_key(std::string_view key) {
    if (key.empty() || key.size() > kMaxHeaderKey)
        return make_error(Errc::invalid_argument, "header key '" + std::string(key) + "' must be 1.." +
                                                      std::to_string(kMaxHeaderKey) + " bytes long");
    for (char c : key)
        if (!key_char(c))
            return make_error(Errc::invalid_argument, "header key '" + std::string(key) +
                                                          "' may hold only letters, digits, '-', '_' and '.'");
    return ok_status();
}

Status validate_headers(std::span<const Header> headers) {
    if (headers.size() > kMaxHeaders)
        return make_error(Errc::invalid_argument, "a message carries at most " + std::to_string(kMaxHeaders) + " headers");
    for (const Header& h : headers) {
        if (auto st = validate_header_key(h.key); !st) return st;
        if (h.value.size() > kMaxHeaderValue)
            return make_error(Errc::invalid_argument, "header '" + std::string(h.key) + "' has a value above " +
                                                          std::to_string(kMaxHeaderValue) + " bytes");
    }
    return ok_status();
}

std::size_t encoded_headers_size(std::span<const Header> headers) noexcept {
    if (headers.empty()) return 0;
    std::size_t n = layout::kHeaderBlockPrefix;
    for (const Header& h : headers) n += layout::kHeaderEntryPrefix + h.key.size() + h.value.size();
    return n;
}

void encode_headers(std::span<const Header> headers, std::byte* out) noexcept {
    if (headers.empty()) return;
    const auto total = uint32_t(encoded_headers_size(headers));
    std::memcpy(out, &total, sizeof total);
    std::byte* p = out + sizeof total;
    for (const Header& h : headers) {
        const uint16_t lengths[2] = {uint16_t(h.key.size()), uint16_t(h.value.size())};
        std::memcpy(p, lengths, sizeof lengths);
        p += sizeof lengths;
        std::memcpy(p, h.key.data(), h.key.size());
        p += h.key.size();
        std::memcpy(p, h.value.data(), h.value.size());
        p += h.value.size();
    }
}

std::string rfc3339_utc(uint64_t realtime_ns) {
    const std::time_t seconds = std::time_t(realtime_ns / 1'000'000'000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[48];
    std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                  utc.tm_hour, utc.tm_min, utc.tm_sec, unsigned(realtime_ns % 1'000'000'000));
    return text;
}

}  // namespace shmbus
