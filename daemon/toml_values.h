// Reading values out of a TOML file shmbusd was given (the configuration file, a state file),
// with errors that name the file and line: "FILE:LINE: what".
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <toml++/toml.h>

namespace shmbus::daemon {

// Thrown by fail() while a file is read; the reader catches it and returns its message.
struct ConfigError {
    std::string message;
};

[[noreturn]] void fail(const std::string& source, const toml::source_region& where, const std::string& what);
[[nodiscard]] const std::string& string_value(const std::string& source, const toml::node& n, const std::string& key);
// A size: a positive integer of bytes or a string with a suffix ("64K", "16M").
[[nodiscard]] uint64_t size_value(const std::string& source, const toml::node& n, const std::string& key);
// A duration string ("500ms", "30s", "2h", "250ns") or "off"/"never" (0).
[[nodiscard]] std::chrono::nanoseconds duration_value(const std::string& source, const toml::node& n, const std::string& key);

}  // namespace shmbus::daemon
