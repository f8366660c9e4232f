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

namespace {

// Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) noexcept {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = unsigned(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + int64_t(doe) - 719468;
}

}  // namespace

std::optional<uint64_t> parse_rfc3339(std::string_view t) noexcept {
    std::size_t i = 0;
    auto digits = [&](std::size_t n, int& out) {
        if (i + n > t.size()) return false;
        out = 0;
        for (std::size_t k = 0; k < n; ++k, ++i) {
            if (t[i] < '0' || t[i] > '9') return false;
            out = out * 10 + (t[i] - '0');
        }
        return true;
    };
    auto expect = [&](auto pred) {
        if (i >= t.size() || !pred(t[i])) return false;
        ++i;
        return true;
    };
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (!digits(4, year) || !expect([](char c) { return c == '-'; }) || !digits(2, month) ||
        !expect([](char c) { return c == '-'; }) || !digits(2, day) ||
        !expect([](char c) { return c == 'T' || c == 't' || c == ' '; }) || !digits(2, hour) ||
        !expect([](char c) { return c == ':'; }) || !digits(2, minute) || !expect([](char c) { return c == ':'; }) ||
        !digits(2, second))
        return std::nullopt;
    static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1] || hour > 23 || minute > 59 || second > 60) return std::nullopt;
    uint64_t frac_ns = 0;
    if (i < t.size() && t[i] == '.') {
        ++i;
        uint64_t scale = 100'000'000;
        const std::size_t start = i;
        for (; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i) {
            frac_ns += uint64_t(t[i] - '0') * scale;
            scale /= 10;
        }
        if (i == start) return std::nullopt;
    }
    int64_t offset_s = 0;
    if (i < t.size() && (t[i] == 'Z' || t[i] == 'z')) {
        ++i;
    } else if (i < t.size() && (t[i] == '+' || t[i] == '-')) {
        const int sign = t[i] == '-' ? -1 : 1;
        ++i;
        int oh = 0, om = 0;
        if (!digits(2, oh) || !expect([](char c) { return c == ':'; }) || !digits(2, om) || oh > 23 || om > 59) return std::nullopt;
        offset_s = sign * (oh * 3600 + om * 60);
    } else {
        return std::nullopt;
    }
    if (i != t.size()) return std::nullopt;
    const int64_t secs = days_from_civil(year, unsigned(month), unsigned(day)) * 86400 + hour * 3600 + minute * 60 + second - offset_s;
    if (secs < 0) return std::nullopt;
    return uint64_t(secs) * 1'000'000'000 + frac_ns;
}

}  // namespace shmbus
