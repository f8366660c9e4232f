// A topic's settings in TOML: one schema wherever they are written or read. The configuration
// file's [defaults] and [topics.NAME] tables and the [topic] table of an archived topic's state
// file (topic.toml) use the same keys, those of `shmbus topic create` in snake_case; the wire
// (protocol::WireConfig) and the segment header carry the same TopicConfig.
#pragma once

#include <optional>
#include <string>

#include <toml++/toml.h>

#include "shmbus/archive.h"
#include "shmbus/topic.h"

namespace shmbus::daemon {

// Topic settings over `base`: the keys of `topic create`, in snake_case. `archive` (a
// [topics.NAME] table only; nullptr for [defaults]) receives its archive settings, if any.
// Throws ConfigError (toml_values.h) naming `source`, the line and `where`.
[[nodiscard]] TopicConfig parse_topic_settings(const std::string& source, const toml::table& t, TopicConfig base,
                                               const std::string& where, std::optional<ArchiveSettings>* archive = nullptr);
// `c` (and, for an archived topic, its archive settings) in the same schema: what
// parse_topic_settings reads back as `c`.
[[nodiscard]] toml::table topic_settings_table(const TopicConfig& c, const std::optional<ArchiveSettings>& archive);

}  // namespace shmbus::daemon
