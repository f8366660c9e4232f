// Message headers: small key-value pairs a message carries beside its payload, as Kafka headers
// and AMQP properties do. Dead letters carry their origin in them (kDeadLetter* below).
//
//   const shmbus::Header h[] = {{"trace-id", "4bf92f35"}, {"tenant", "acme"}};
//   pub->publish(payload, h);
//   ...
//   if (auto tenant = m.headers.get("tenant")) route(*tenant);
//
// Headers travel inside the record, before the payload (layout/record.h, kRecordHasHeaders), so
// the topic's max_message bounds headers and payload together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "shmbus/result.h"

namespace shmbus {

struct Header {
    std::string_view key;
    std::string_view value;
};

inline constexpr std::size_t kMaxHeaderKey = 64;      // bytes; letters, digits, '-', '_' and '.'
inline constexpr std::size_t kMaxHeaderValue = 4096;  // bytes, any
inline constexpr std::size_t kMaxHeaders = 64;

// A key is 1..kMaxHeaderKey of [A-Za-z0-9._-]: the same on every command line and in every
// environment variable name (`sub --exec` exports SHMBUS_HEADER_<KEY>).
[[nodiscard]] Status validate_header_key(std::string_view key);
// Every key valid, every value at most kMaxHeaderValue bytes, at most kMaxHeaders of them.
[[nodiscard]] Status validate_headers(std::span<const Header> headers);
namespace detail {
// validate_headers() as a yes or no, without building a message: the publish path's check.
[[nodiscard]] bool headers_ok(std::span<const Header> headers) noexcept;
}  // namespace detail
// Bytes the header block of `headers` takes in a record (0 for none).
[[nodiscard]] std::size_t encoded_headers_size(std::span<const Header> headers) noexcept;
// Writes the block into `out`, which holds encoded_headers_size(headers) bytes.
void encode_headers(std::span<const Header> headers, std::byte* out) noexcept;

// The headers of a received message: a read-only view, valid while its Message is. Iterating
// checks every length against the block, so a damaged block only ends the headers early.
class Headers {
public:
    Headers() noexcept = default;
    // `entries`: a block's entries, without its length prefix.
    explicit Headers(std::span<const std::byte> entries) noexcept : entries_(entries) {}

    class iterator {
    public:
        using value_type = Header;
        using difference_type = std::ptrdiff_t;
        iterator() noexcept = default;
        iterator(std::span<const std::byte> rest) noexcept : rest_(rest) { parse(); }
        [[nodiscard]] const Header& operator*() const noexcept { return current_; }
        [[nodiscard]] const Header* operator->() const noexcept { return &current_; }
        iterator& operator++() noexcept {
            rest_ = rest_.subspan(step_);
            parse();
            return *this;
        }
        iterator operator++(int) noexcept {
            iterator old = *this;
            ++*this;
            return old;
        }
        [[nodiscard]] bool operator==(const iterator& o) const noexcept {
            return rest_.data() == o.rest_.data() && rest_.size() == o.rest_.size();
        }

    private:
        void parse() noexcept {
            uint16_t lengths[2];
            if (rest_.size() < sizeof lengths) return end_here();
            std::memcpy(lengths, rest_.data(), sizeof lengths);
            step_ = sizeof lengths + std::size_t(lengths[0]) + lengths[1];
            if (step_ > rest_.size()) return end_here();
            const char* text = reinterpret_cast<const char*>(rest_.data()) + sizeof lengths;
            current_ = {{text, lengths[0]}, {text + lengths[0], lengths[1]}};
        }
        void end_here() noexcept { rest_ = rest_.subspan(rest_.size()); }
        std::span<const std::byte> rest_{};
        std::size_t step_ = 0;
        Header current_{};
    };

    [[nodiscard]] iterator begin() const noexcept { return iterator(entries_); }
    [[nodiscard]] iterator end() const noexcept { return iterator(entries_.subspan(entries_.size())); }
    [[nodiscard]] bool empty() const noexcept { return begin() == end(); }
    [[nodiscard]] std::size_t size() const noexcept {
        std::size_t n = 0;
        for (auto it = begin(); it != end(); ++it) ++n;
        return n;
    }
    // The value of the first header named `key`.
    [[nodiscard]] std::optional<std::string_view> get(std::string_view key) const noexcept {
        for (const Header& h : *this)
            if (h.key == key) return h.value;
        return std::nullopt;
    }

private:
    std::span<const std::byte> entries_{};
};

// CLOCK_REALTIME nanoseconds as RFC 3339 in UTC with nanoseconds: 2026-11-28T14:20:01.123456789Z.
[[nodiscard]] std::string rfc3339_utc(uint64_t realtime_ns);
// An RFC 3339 date and time (2026-11-28T20:00:00Z, 2026-11-28T21:00:00.5+01:00) as CLOCK_REALTIME
// nanoseconds; nullopt for anything else, and for times before 1970.
[[nodiscard]] std::optional<uint64_t> parse_rfc3339(std::string_view text) noexcept;

// The headers a dead letter carries beside its original ones: where it came from and why.
inline constexpr std::string_view kDeadLetterTopic = "shmbus-origin-topic";
inline constexpr std::string_view kDeadLetterId = "shmbus-origin-id";
inline constexpr std::string_view kDeadLetterAttempts = "shmbus-attempts";
inline constexpr std::string_view kDeadLetterReason = "shmbus-reason";
inline constexpr std::string_view kDeadLetterFirstDelivery = "shmbus-first-delivery";  // RFC 3339, UTC
inline constexpr std::string_view kDeadLetterLastDelivery = "shmbus-last-delivery";    // RFC 3339, UTC
inline constexpr std::string_view kReservedHeaderPrefix = "shmbus-";
// Keys that start with "shmbus-" belong to shmbus: replaying a dead letter drops them.
[[nodiscard]] inline bool is_shmbus_header(std::string_view key) noexcept {
    return key.substr(0, kReservedHeaderPrefix.size()) == kReservedHeaderPrefix;
}

}  // namespace shmbus
