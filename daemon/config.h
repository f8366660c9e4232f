// shmbusd's configuration file (TOML, `shmbusd --config FILE`):
//
//   [bus]
//   dir = "/run/shmbus"            # bus directory; --dir overrides it
//   state_dir = "/var/lib/shmbus"  # archives and what must outlive a reboot; --state-dir overrides it
//   log_level = "info"             # --log-level overrides it
//   log = "journal"                # console, journal or a file; default: the journal under systemd
//   access_group = "shmbus"        # the directory and socket become reachable to this group
//   metrics = "127.0.0.1:9464"     # Prometheus endpoint; --metrics overrides it
//
//   [[acl]]                        # per-topic rules; the first entry whose topics match decides
//   topics = ["prices", "public.*"]
//   publish = ["user:catalog"]     # user:NAME|UID, group:NAME|GID
//   subscribe = ["group:shmbus"]
//   admin = []                     # create, delete, delete a subscription, gc
//
//   [defaults]                     # settings of a topic created without settings of its own
//   capacity = "16M"               # also max_message, on_full, unblock_timeout, expire_detached,
//                                  # max_publishers, max_subscribers, single_producer = true,
//                                  # timestamps = false, ttl = "30s"
//   [topics.prices]                # this topic's settings, whoever creates it; created at start
//   capacity = "64M"
//   on_full = "overwrite"
//   archive = true                 # also kept on disk (docs/archive.md); on_full = "archive" implies it
//   retain = "10G"                 # retain_time = "7d", fsync = "never|interval|always", archive_file_size = "64M"
//   compact = true                 # the latest message per key kept (implies archive); max_keys = 1000000
//
// Every key is checked: an unknown key or table, a value of the wrong type, an unknown user or
// group are errors that name the file and line. Users and groups are resolved when the file is read.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/archive.h"
#include "shmbus/result.h"
#include "shmbus/topic.h"

namespace shmbus::daemon {

// Who a rule names: one uid, or the members of one gid.
struct Principal {
    enum class Kind : uint8_t { user, group };
    Kind kind;
    uint32_t id;
    std::string text;  // as written, for logs: "user:catalog"
};

struct AclEntry {
    std::vector<std::string> topics;  // names or glob patterns (*, ?, [...])
    std::vector<Principal> publish, subscribe, admin;
    std::size_t line = 0;   // where the entry starts in the file
    std::size_t index = 0;  // 1-based position among the entries
};

struct Config {
    std::string source;  // the file it came from
    std::string dir;
    std::string state_dir;
    std::string log_level;
    std::string log;  // console, journal, a file path; empty: automatic
    std::string metrics;
    std::optional<gid_t> access_group;
    std::string access_group_name;
    std::vector<AclEntry> acl;
    std::optional<TopicConfig> defaults;         // [defaults], over the built-in defaults
    std::map<std::string, TopicConfig> topics;   // [topics.NAME], over [defaults]
    std::map<std::string, ArchiveSettings> archives;  // the [topics.NAME] that are archived
};

// Reads and checks a configuration file; the error names the file and line of the first problem.
[[nodiscard]] Result<Config> load_config(const std::string& path) noexcept;
// The same, from text (`source` names it in errors).
[[nodiscard]] Result<Config> parse_config(std::string_view text, const std::string& source) noexcept;

}  // namespace shmbus::daemon
