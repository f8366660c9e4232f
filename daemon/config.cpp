#include "config.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <fstream>
#include <sstream>
#include <vector>

#include "shmbus/names.h"
#include "core/untrusted_files.h"

#include <toml++/toml.h>

#include "toml_values.h"
#include "topic_settings_toml.h"

namespace shmbus::daemon {
namespace {

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    return true;
}

// A uid or gid written as a number: below (uid_t)-1, which means "no id" to the kernel.
std::optional<uint32_t> numeric_id(const std::string& text) {
    if (text.size() > 10) return std::nullopt;
    const uint64_t v = std::stoull(text);
    return v < UINT32_MAX ? std::optional<uint32_t>(uint32_t(v)) : std::nullopt;
}

// NAME or a number; resolved now, so a typo is an error at start and not a silent denial later.
// `lookup` is getpwnam_r or getgrnam_r, `id` the field of the entry it fills.
template <class Entry, class Lookup, class Id>
std::optional<uint32_t> resolve(const std::string& name, Lookup lookup, Id Entry::*id) {
    if (all_digits(name)) return numeric_id(name);
    Entry entry{}, *found = nullptr;
    // A group with many members has a long entry: the buffer grows while the lookup says ERANGE
    // (up to 64 MiB, far past any real /etc/group line), so a long entry is never "no such group".
    std::vector<char> buf(4096);
    int rc;
    while ((rc = lookup(name.c_str(), &entry, buf.data(), buf.size(), &found)) == ERANGE && buf.size() < (64u << 20))
        buf.resize(buf.size() * 4);
    if (rc != 0 || found == nullptr) return std::nullopt;
    return entry.*id;
}

std::optional<uint32_t> resolve_user(const std::string& name) { return resolve(name, getpwnam_r, &passwd::pw_uid); }
std::optional<uint32_t> resolve_group(const std::string& name) { return resolve(name, getgrnam_r, &group::gr_gid); }

Principal parse_principal(const std::string& source, const toml::node& n, const std::string& key) {
    const std::string& text = string_value(source, n, key);
    const auto colon = text.find(':');
    const std::string kind = text.substr(0, colon), name = colon == std::string::npos ? "" : text.substr(colon + 1);
    if (colon == std::string::npos || name.empty() || (kind != "user" && kind != "group"))
        fail(source, n.source(), "'" + text + "' in '" + key + "' is not user:NAME|UID or group:NAME|GID");
    const bool user = kind == "user";
    const auto id = user ? resolve_user(name) : resolve_group(name);
    if (!id) fail(source, n.source(), "'" + text + "' in '" + key + "': no such " + kind);
    return {user ? Principal::Kind::user : Principal::Kind::group, *id, text};
}

// A topic name or a glob over names: the characters of names plus * ? [ ] and ! inside brackets.
void check_pattern(const std::string& source, const toml::node& n, const std::string& pattern) {
    if (pattern.empty() || pattern.size() > 63) fail(source, n.source(), "topic pattern '" + pattern + "' must have 1 to 63 characters");
    for (char c : pattern)
        if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("._-*?[]!").find(c) == std::string_view::npos)
            fail(source, n.source(), "topic pattern '" + pattern + "' has a character no topic name has: '" + std::string(1, c) + "'");
    // Every '[' opens a set that a ']' closes (a ']' first in the set, or after '!', belongs to it):
    // an open one would match its '[' literally, which is never what was meant.
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        if (pattern[i] != '[') continue;
        std::size_t j = i + 1;
        if (j < pattern.size() && pattern[j] == '!') ++j;
        if (j < pattern.size() && pattern[j] == ']') ++j;
        j = pattern.find(']', j);
        if (j == std::string::npos)
            fail(source, n.source(), "topic pattern '" + pattern + "' has a '[' that no ']' closes");
        i = j;
    }
}

const toml::array& array_value(const std::string& source, const toml::node& n, const std::string& key) {
    const auto* a = n.as_array();
    if (a == nullptr) fail(source, n.source(), "'" + key + "' must be an array");
    return *a;
}

AclEntry parse_acl_entry(const std::string& source, const toml::table& t, std::size_t index) {
    AclEntry e;
    e.line = t.source().begin.line;
    e.index = index;
    bool has_topics = false;
    for (auto&& [k, v] : t) {
        const std::string key(k.str());
        if (key == "topics") {
            has_topics = true;
            for (const auto& item : array_value(source, v, key)) {
                const std::string& pattern = string_value(source, item, key);
                check_pattern(source, item, pattern);
                e.topics.push_back(pattern);
            }
            if (e.topics.empty()) fail(source, v.source(), "'topics' is empty: the entry would match nothing");
        } else if (key == "publish" || key == "subscribe" || key == "admin") {
            auto& list = key == "publish" ? e.publish : key == "subscribe" ? e.subscribe : e.admin;
            for (const auto& item : array_value(source, v, key)) list.push_back(parse_principal(source, item, key));
        } else {
            fail(source, v.source(), "unknown key '" + key + "' in [[acl]] (known: topics, publish, subscribe, admin)");
        }
    }
    if (!has_topics) fail(source, t.source(), "[[acl]] entry " + std::to_string(index) + " has no 'topics'");
    return e;
}

void parse_bus(const std::string& source, const toml::table& t, Config& out) {
    for (auto&& [k, v] : t) {
        const std::string key(k.str());
        if (key == "dir") {
            out.dir = string_value(source, v, key);
            if (out.dir.empty() || out.dir.front() != '/') fail(source, v.source(), "'dir' must be an absolute path");
        } else if (key == "log_level") {
            out.log_level = string_value(source, v, key);
            static const char* const levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
            if (std::find(std::begin(levels), std::end(levels), out.log_level) == std::end(levels))
                fail(source, v.source(), "'log_level' must be one of trace, debug, info, warn, error, critical, off");
        } else if (key == "log") {
            out.log = string_value(source, v, key);
            if (out.log != "console" && out.log != "journal" && (out.log.empty() || out.log.front() != '/'))
                fail(source, v.source(), "'log' must be console, journal or an absolute file path");
        } else if (key == "metrics") {
            out.metrics = string_value(source, v, key);
            if (out.metrics.empty()) fail(source, v.source(), "'metrics' must be [HOST:]PORT");
        } else if (key == "state_dir") {
            out.state_dir = string_value(source, v, key);
            if (out.state_dir.empty() || out.state_dir.front() != '/') fail(source, v.source(), "'state_dir' must be an absolute path");
        } else if (key == "access_group") {
            out.access_group_name = string_value(source, v, key);
            out.access_group = resolve_group(out.access_group_name);
            if (!out.access_group) fail(source, v.source(), "access_group '" + out.access_group_name + "': no such group");
        } else {
            fail(source, v.source(), "unknown key '" + key + "' in [bus] (known: dir, state_dir, log_level, log, access_group, metrics)");
        }
    }
}

}  // namespace

Result<Config> parse_config(std::string_view text, const std::string& source) noexcept {
    try {
        if (auto why = detail::toml_shape_error(text)) return make_error(Errc::invalid_argument, source + ": " + *why);
        const toml::table root = toml::parse(text, source);
        Config out;
        out.source = source;
        std::vector<const toml::table*> topic_tables;  // read after [defaults], wherever it stands
        for (auto&& [k, v] : root) {
            const std::string key(k.str());
            if (key == "bus") {
                const auto* t = v.as_table();
                if (t == nullptr) fail(source, v.source(), "'bus' must be a table: [bus]");
                parse_bus(source, *t, out);
            } else if (key == "defaults") {
                const auto* t = v.as_table();
                if (t == nullptr) fail(source, v.source(), "'defaults' must be a table: [defaults]");
                out.defaults = parse_topic_settings(source, *t, TopicConfig{}, "[defaults]");
            } else if (key == "topics") {
                const auto* t = v.as_table();
                if (t == nullptr) fail(source, v.source(), "'topics' must hold tables: [topics.NAME]");
                topic_tables.push_back(t);
            } else if (key == "acl") {
                const auto* a = v.as_array();
                if (a == nullptr || !a->is_array_of_tables()) fail(source, v.source(), "'acl' must be an array of tables: [[acl]]");
                for (const auto& entry : *a) out.acl.push_back(parse_acl_entry(source, *entry.as_table(), out.acl.size() + 1));
            } else if (key == "bridge") {
                // `shmbus bridge --config` reads it (and checks every key there); shmbusd does not.
                if (v.as_table() == nullptr) fail(source, v.source(), "'bridge' must be a table: [bridge]");
            } else {
                fail(source, v.source(), "unknown table or key '" + key + "' (known: [bus], [defaults], [topics.NAME], [[acl]], [bridge])");
            }
        }
        for (const toml::table* topics : topic_tables)
            for (auto&& [k, v] : *topics) {
                const std::string name(k.str());
                if (auto st = validate_topic_name(name); !st) fail(source, v.source(), st.error().message);
                const auto* t = v.as_table();
                if (t == nullptr) fail(source, v.source(), "[topics." + name + "] must be a table");
                std::optional<ArchiveSettings> archive;
                out.topics[name] = parse_topic_settings(source, *t, out.defaults.value_or(TopicConfig{}), "[topics." + name + "]",
                                                        &archive);
                if (archive) out.archives[name] = *archive;
            }
        return out;
    } catch (const toml::parse_error& e) {
        return make_error(Errc::invalid_argument, source + ":" + std::to_string(e.source().begin.line) + ": " +
                                                      std::string(e.description()));
    } catch (const ConfigError& e) {
        return make_error(Errc::invalid_argument, e.message);
    } catch (const std::exception& e) {
        return make_error(Errc::invalid_argument, source + ": " + e.what());
    }
}

Result<Config> load_config(const std::string& path) noexcept {
    auto text = detail::read_bounded_file(AT_FDCWD, path, detail::kMaxTomlBytes);
    if (!text) {
        if (text.error().code == Errc::topic_not_found) return make_error(Errc::invalid_argument, "cannot read configuration file " + path);
        return make_error(Errc::invalid_argument, "cannot read configuration file " + path + ": " + text.error().message);
    }
    return parse_config(*text, path);
}

}  // namespace shmbus::daemon
