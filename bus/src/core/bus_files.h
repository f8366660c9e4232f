// The names shmbus gives things on disk and in /dev/shm: the files of a bus directory and the
// POSIX shared-memory objects of its topics. shmbusd, `gc` and the client library all use these.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace shmbus::detail {

// Files in a bus directory.
inline constexpr std::string_view kSocketFile = "shmbusd.sock";  // the control socket
inline constexpr std::string_view kLockFile = "shmbusd.lock";    // flocked by the serving shmbusd, holds its pid
inline constexpr std::string_view kBusIdFile = "bus.id";         // the bus id, 16 hex digits

[[nodiscard]] std::string bus_file(std::string_view dir, std::string_view file);

// DIR/bus.id, strictly: missing, or exactly 16 hex digits (not all zero) and a newline in a
// regular file, or damaged (`why` says how).
enum class BusIdFile : uint8_t { missing, valid, damaged };
[[nodiscard]] BusIdFile read_bus_id_file(const std::string& dir, uint64_t& id, std::string& why);

// Segments are /dev/shm/shmbus-<bus id as 16 hex digits>-<topic>, and their companions the same
// name with a suffix after '@' (never part of a topic name, so they cannot clash): the cursor
// object "@cursors", owner objects "@o<k>" (renamed "@o<k>.<principal>" once given), group
// objects "@g<g>" (layout/owner_object.h).
inline constexpr std::string_view kShmDir = "/dev/shm";
inline constexpr std::string_view kCursorSuffix = "@cursors";
[[nodiscard]] std::string shm_prefix(uint64_t bus_id);                       // "shmbus-<id>-"
[[nodiscard]] std::string shm_name(uint64_t bus_id, std::string_view topic);  // "/shmbus-<id>-<topic>", for shm_open
[[nodiscard]] std::string cursor_object_name(std::string_view segment_name);  // segment name + kCursorSuffix
[[nodiscard]] std::string owner_object_name(std::string_view segment_name, uint32_t k);  // + "@o<k>"
[[nodiscard]] std::string group_object_name(std::string_view segment_name, uint32_t g);  // + "@g<g>"
// The segment a companion's name (cursor, owner or group object) belongs to, or empty if `file`
// does not name one.
[[nodiscard]] std::string_view segment_of_companion(std::string_view file) noexcept;
// The bus id in a /dev/shm file name of that shape; 0 for any other name.
[[nodiscard]] uint64_t bus_id_of_shm(std::string_view file) noexcept;

// Opens /dev/shm/<file> without following a link and without blocking (a FIFO planted under a
// segment's name must not hang anyone). -1 with errno on failure; `st` gets its fstat.
[[nodiscard]] int open_shm_file(std::string_view file, int flags, struct stat& st) noexcept;
// Why a file found under a segment's name is not one shmbusd would have made (a regular file of
// our own uid that nobody else may read or write), or empty if it is. Such a file is neither
// adopted nor removed: another user may have planted it.
[[nodiscard]] std::string not_made_by_us(const struct stat& st);
// The same judgment by name: why /dev/shm/<file> is not shmbusd's to adopt or remove (including
// that it cannot be opened: the errno text), or empty if it is.
[[nodiscard]] std::string why_not_ours(std::string_view file);
// Permission bits as chmod takes them: "0600".
[[nodiscard]] std::string mode_text(mode_t mode);

}  // namespace shmbus::detail
