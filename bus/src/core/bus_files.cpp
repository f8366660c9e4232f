#include "core/bus_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <cstdio>

#include "shmbus/client.h"

namespace shmbus {
namespace detail {
namespace {
constexpr std::string_view kShmPrefix = "shmbus-";
constexpr std::size_t kIdDigits = 16;

// A bus id as written in bus.id and in segment names: exactly 16 lowercase hex digits.
bool parse_bus_id(std::string_view text, uint64_t& id) noexcept {
    if (text.size() != kIdDigits) return false;
    id = 0;
    for (const char c : text) {
        const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0) return false;
        id = id << 4 | uint64_t(v);
    }
    return true;
}
}  // namespace

std::string mode_text(mode_t mode) {
    char text[8];
    std::snprintf(text, sizeof text, "%04o", unsigned(mode & 07777));
    return text;
}

std::string bus_file(std::string_view dir, std::string_view file) {
    std::string path(dir);
    path += '/';
    path += file;
    return path;
}

BusIdFile read_bus_id_file(const std::string& dir, uint64_t& id, std::string& why) {
    const std::string path = bus_file(dir, kBusIdFile);
    const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return BusIdFile::missing;
        why = std::string("cannot open it: ") + strerror(errno);
        return BusIdFile::damaged;
    }
    struct stat st{};
    char text[kIdDigits + 2] = {};
    const bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    const ssize_t n = regular ? read(fd, text, sizeof text) : -1;
    close(fd);
    id = 0;
    const bool digits = n == ssize_t(kIdDigits + 1) && text[kIdDigits] == '\n' &&
                        parse_bus_id(std::string_view(text, kIdDigits), id);
    if (!regular) why = "not a regular file";
    else if (!digits || id == 0) why = "it does not hold 16 hex digits and a newline";
    return why.empty() ? BusIdFile::valid : BusIdFile::damaged;
}

int open_shm_file(std::string_view file, int flags, struct stat& st) noexcept {
    const std::string path = bus_file(kShmDir, file);
    const int fd = open(path.c_str(), flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    if (fstat(fd, &st) != 0) {
        const int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

std::string not_made_by_us(const struct stat& st) {
    if (!S_ISREG(st.st_mode)) return "not a regular file";
    if (st.st_uid != geteuid()) return "owned by uid " + std::to_string(st.st_uid) + ", not by shmbusd's uid " + std::to_string(geteuid());
    if ((st.st_mode & 077) != 0) return "mode " + mode_text(st.st_mode) + " lets others in (shmbusd makes 0600)";
    return {};
}

std::string why_not_ours(std::string_view file) {
    struct stat st{};
    const int fd = open_shm_file(file, O_RDONLY, st);
    if (fd < 0) return strerror(errno);
    close(fd);
    return not_made_by_us(st);
}

std::string shm_prefix(uint64_t bus_id) {
    char id[kIdDigits + 1];
    std::snprintf(id, sizeof id, "%016" PRIx64, bus_id);
    return std::string(kShmPrefix) + id + "-";
}

std::string shm_name(uint64_t bus_id, std::string_view topic) { return "/" + shm_prefix(bus_id) + std::string(topic); }

std::string cursor_object_name(std::string_view segment_name) { return std::string(segment_name) + std::string(kCursorSuffix); }

std::string owner_object_name(std::string_view segment_name, uint32_t k) {
    return std::string(segment_name) + "@o" + std::to_string(k);
}
std::string group_object_name(std::string_view segment_name, uint32_t g) {
    return std::string(segment_name) + "@g" + std::to_string(g);
}

std::string_view segment_of_companion(std::string_view file) noexcept {
    const std::size_t at = file.find('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == file.size()) return {};
    return file.substr(0, at);
}

uint64_t bus_id_of_shm(std::string_view file) noexcept {
    const std::size_t dash = kShmPrefix.size() + kIdDigits;
    if (file.size() <= dash + 1 || file.substr(0, kShmPrefix.size()) != kShmPrefix || file[dash] != '-') return 0;
    uint64_t id = 0;
    return parse_bus_id(file.substr(kShmPrefix.size(), kIdDigits), id) ? id : 0;
}

}  // namespace detail

std::string socket_path(const std::string& dir) { return detail::bus_file(dir, detail::kSocketFile); }

}  // namespace shmbus
