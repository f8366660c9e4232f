// Archived topics: a topic whose messages are also kept on disk, in append-only files under
// shmbusd's state directory, so that replay reaches back past the ring (docs/archive.md).
//
//   shmbus::ArchiveSettings a;
//   a.retain_bytes = 10ull << 30;                 // keep about 10 GiB (whole files are deleted)
//   a.fsync = shmbus::ArchiveFsync::interval;
//   client.set_archive("orders", a);              // shmbusd starts the topic's archiver
//   auto info = client.archive_info("orders");    // files, bytes, first/last id and time
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shmbus {

// When the archiver forces what it wrote to the disk before acknowledging it in the ring:
// never (the kernel writes it back in its own time; a power cut may lose the last seconds),
// interval (at least once a second), always (before every acknowledgement: every message the
// ring lets go of is on the disk).
enum class ArchiveFsync : uint8_t { never = 0, interval = 1, always = 2 };
[[nodiscard]] const char* to_string(ArchiveFsync fsync) noexcept;
[[nodiscard]] bool parse_fsync(std::string_view text, ArchiveFsync& out) noexcept;

struct ArchiveSettings {
    uint64_t retain_bytes = 0;                 // 0: no size limit
    std::chrono::nanoseconds retain_time{0};   // 0: no age limit
    ArchiveFsync fsync = ArchiveFsync::never;
    uint64_t file_bytes = 64ull << 20;         // a file is closed and a new one begun past this size
    // A compacted archive (docs/archive.md, "Compacted topics") keeps the latest message of each
    // key: the archiver drops superseded records from closed files, an empty payload deletes its
    // key, and a subscriber may start from the latest message of every key
    // (StartFrom::latest_per_key). At most max_keys keys are kept: past that, the key updated
    // longest ago is dropped. Retention does not apply to a compacted archive.
    bool compact = false;
    uint32_t max_keys = 0;                     // with compact; 0: kDefaultMaxKeys
    bool operator==(const ArchiveSettings&) const = default;
};
inline constexpr uint64_t kMinArchiveFileBytes = 4096;
inline constexpr uint32_t kDefaultMaxKeys = 1'000'000;
// The number of keys a compacted archive keeps (max_keys, or its default).
[[nodiscard]] inline uint32_t kept_keys(const ArchiveSettings& s) noexcept { return s.max_keys != 0 ? s.max_keys : kDefaultMaxKeys; }
// A compacted archive keeps every live key: asking it for retention (by size or age) is refused.
[[nodiscard]] inline bool retention_on_compacted(const ArchiveSettings& s) noexcept {
    return s.compact && (s.retain_bytes != 0 || s.retain_time.count() != 0);
}
inline constexpr const char* kRetentionOnCompacted = "a compacted archive keeps every live key: retention does not apply to it";

struct ArchiveFileInfo {
    std::string name;            // e.g. 00000000000000001000.log
    uint64_t bytes = 0;
    uint64_t records = 0;
    std::optional<uint64_t> first_id, last_id;
    std::optional<uint64_t> first_time_ns, last_time_ns;  // publishers' CLOCK_REALTIME
};

struct ArchiveInfo {
    std::string topic;
    ArchiveSettings settings;
    std::vector<ArchiveFileInfo> files;  // oldest first
    uint64_t bytes = 0;
    uint64_t records = 0;
    std::optional<uint64_t> first_id, last_id;
    std::optional<uint64_t> first_time_ns, last_time_ns;
};

// `archive verify`: every record's checksum, and the order of ids. `damage` names each problem
// (file and byte offset); a file still being written may end in a record the archiver has not
// finished: that is reported as `partial_tail_bytes`, not as damage.
struct ArchiveVerifyReport {
    uint64_t files = 0;
    uint64_t records = 0;
    uint64_t bytes = 0;
    uint64_t partial_tail_bytes = 0;
    std::vector<std::string> damage;
    [[nodiscard]] bool ok() const noexcept { return damage.empty(); }
};

}  // namespace shmbus
