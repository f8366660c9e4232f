// Opening and reading files in directories whose contents shmbus did not necessarily write: the
// state directory, an archive directory, a configuration file. Nothing here follows a symbolic
// link, blocks on a FIFO or a device, or reads more than a stated bound, so what someone planted
// there can make an open fail with a clear reason, and nothing worse.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "shmbus/result.h"

namespace shmbus::detail {

// Opens `name` in the directory `dir_fd` (AT_FDCWD: `name` is a path) with O_NOFOLLOW | O_NONBLOCK |
// O_CLOEXEC added to `flags`, and checks it is a regular file (a directory with O_DIRECTORY).
// With `own`, it must also belong to this process's effective uid. The error names `name` and why:
// "is a symbolic link", "is not a regular file (a FIFO)", "belongs to uid N", or the errno text.
[[nodiscard]] Result<int> open_checked_at(int dir_fd, const std::string& name, int flags, mode_t mode = 0,
                                          bool own = false) noexcept;

// A directory only this process's uid (shmbusd's: the bus directory, the state directory) may change: it exists (made 0700 with `create`), is no link,
// belongs to the effective uid and is writable by nobody else. `what` names it in the error
// ("state directory /var/lib/shmbus belongs to uid 1001 ...").
[[nodiscard]] Status check_private_dir(const std::string& path, std::string_view what, bool create) noexcept;

// The whole of a small regular file, read through open_checked_at; a file over `max_bytes` is an
// error that says so rather than a large allocation.
[[nodiscard]] Result<std::string> read_bounded_file(int dir_fd, const std::string& name, std::size_t max_bytes,
                                                    bool own = false) noexcept;

// TOML text a parser may be handed: at most kMaxTomlBytes, no key or table name of more than
// kMaxTomlKeyParts dotted parts, arrays and inline tables nested at most kMaxTomlNesting deep
// (toml++ recurses on each, and a hostile file could exhaust the stack). Why not, or nothing.
inline constexpr std::size_t kMaxTomlBytes = 1 << 20;
inline constexpr std::size_t kMaxTomlKeyParts = 32;
inline constexpr std::size_t kMaxTomlNesting = 32;
[[nodiscard]] std::optional<std::string> toml_shape_error(std::string_view text);

}  // namespace shmbus::detail
