#include "toml_values.h"

#include "shmbus/names.h"
#include "shmbus/topic.h"

namespace shmbus::daemon {

[[noreturn]] void fail(const std::string& source, const toml::source_region& where, const std::string& what) {
    throw ConfigError{source + ":" + std::to_string(where.begin.line) + ": " + what};
}

const std::string& string_value(const std::string& source, const toml::node& n, const std::string& key) {
    const auto* s = n.as_string();
    if (s == nullptr) fail(source, n.source(), "'" + key + "' must be a string");
    return s->get();
}

uint64_t size_value(const std::string& source, const toml::node& n, const std::string& key) {
    if (const auto* i = n.as_integer()) {
        if (i->get() <= 0) fail(source, n.source(), "'" + key + "' must be positive");
        return uint64_t(i->get());
    }
    const auto v = parse_size(string_value(source, n, key));
    if (!v) fail(source, n.source(), "'" + key + "' is not a size (use bytes or a suffix: 64K, 16M, 1G)");
    return *v;
}

std::chrono::nanoseconds duration_value(const std::string& source, const toml::node& n, const std::string& key) {
    const std::string& text = string_value(source, n, key);
    if (text == "off" || text == "never") return std::chrono::nanoseconds(0);
    const auto v = parse_duration(text);
    if (!v) fail(source, n.source(), "'" + key + "' is not a duration (500ms, 30s, 15m, 2h, 7d, or off)");
    return *v;
}

}  // namespace shmbus::daemon
