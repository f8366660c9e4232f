// The files shmbusd keeps in its state directory for each archived topic (docs/archive.md):
// topic.toml (the topic's settings, in the configuration file's schema: topic_settings_toml.h)
// and cursors.toml (durable cursors and groups). Written atomically; read as untrusted input.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <toml++/toml.h>

#include "shmbus/archive.h"
#include "shmbus/result.h"
#include "shmbus/topic.h"

namespace shmbus::daemon {

// Writes `text` to `path` so that a crash leaves the old file or the new one, never a mix.
[[nodiscard]] Status write_atomically(const std::string& path, const std::string& text);
// A state file: ours, regular, bounded in size and shape before the parser sees it. nullopt with
// `why` if it is not.
[[nodiscard]] std::optional<toml::table> read_toml(const std::string& path, std::string& why);
// A non-negative integer at `key`, or `fallback`.
[[nodiscard]] uint64_t toml_u64(const toml::table& t, std::string_view key, uint64_t fallback = 0);

// What topic.toml records: the bus the topic belongs to, its settings and its archive's.
struct TopicState {
    std::string bus_dir;  // empty: not recorded
    TopicConfig config;
    ArchiveSettings archive;
};
[[nodiscard]] std::string topic_state_text(const std::string& topic, const std::string& bus_dir, const TopicConfig& c,
                                           const ArchiveSettings& a);
[[nodiscard]] Result<TopicState> read_topic_state(const std::string& path);

// The archive settings recorded in a topic's topic.toml.
[[nodiscard]] Result<ArchiveSettings> load_archive_settings(const std::string& path);
// The longest record body the topic recorded in topic.toml can produce (its max_message and the
// largest producer stamp and retry prefix); kMaxArchiveRecord when the file does not say.
[[nodiscard]] uint32_t load_archive_max_record(const std::string& path);

}  // namespace shmbus::daemon
