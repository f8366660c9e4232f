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
