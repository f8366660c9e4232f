// Naming rules and size parsing shared by the library, the daemon and the CLI.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shmbus/result.h"

namespace shmbus {

// Topic names: 1..63 characters of [A-Za-z0-9._-], starting with a letter or digit, no "..".
// The dot allows hierarchies ("orders.eu") and the reserved dead-letter suffix ".dlq".
[[nodiscard]] Status validate_topic_name(std::string_view name);
// A requester's reply inbox (shmbus/request.h): "_inbox." and 32 lowercase hex digits, a random
// 128-bit name no topic name can take (topic names start with a letter or digit). shmbusd makes one
// for the client that subscribes to it first, serves its subscription to that connection alone, lets
// anyone who knows the name publish to it (the name is the capability), hides it from listings and
// removes it when that connection closes.
inline constexpr std::string_view kInboxPrefix = "_inbox.";
inline constexpr std::size_t kInboxNameSize = 7 + 32;
[[nodiscard]] bool is_inbox_name(std::string_view name) noexcept;
// A topic name, or an inbox's.
[[nodiscard]] Status validate_topic_or_inbox_name(std::string_view name);
// Durable subscription names: 1..47 characters of the same alphabet.
[[nodiscard]] Status validate_subscription_name(std::string_view name);
// Producer names (PublisherOptions::producer): 1..47 characters of the same alphabet.
[[nodiscard]] Status validate_producer_name(std::string_view name);
// "4096", "64K", "16M", "1G" (binary multiples; an optional trailing "B" or "iB").
[[nodiscard]] std::optional<uint64_t> parse_size(std::string_view text);
// "250ms", "30s", "15m", "2h", "7d" (also "ns", "us"); "0" alone means zero.
[[nodiscard]] std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);
// A duration for people, three significant figures: "850 ns", "16.4 us", "3.20 ms", "1.25 s".
[[nodiscard]] std::string short_duration(uint64_t ns);

}  // namespace shmbus
