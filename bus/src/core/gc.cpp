#include "core/gc.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <set>

#include "core/bus_files.h"
#include "shmbus/client.h"
#include "core/segment.h"
#include "shmbus/layout/segment_header.h"

namespace shmbus::detail {

namespace {

using layout::SegmentHeader;

enum class HeaderState { valid, bad, not_ours };

// Reads page 0 without mapping the segment: a hostile or truncated object cannot fault us, and a
// FIFO or a link under a segment's name cannot block or redirect us. Only files shmbusd itself
// would have made are judged at all: another user's file is theirs to keep.
HeaderState read_header(const std::string& file, SegmentHeader& out, std::time_t& changed) {
    struct stat st{};
    const int fd = open_shm_file(file, O_RDONLY, st);
    if (fd < 0) return HeaderState::not_ours;  // another user's bus, or gone meanwhile
    if (!not_made_by_us(st).empty()) {
        close(fd);
        return HeaderState::not_ours;
    }
    changed = st.st_ctime;
    const ssize_t n = pread(fd, &out, sizeof out, 0);
    close(fd);
    if (n != ssize_t(sizeof out) || !check_header(out, uint64_t(st.st_size))) return HeaderState::bad;
    return HeaderState::valid;
}

// Why the bus that created a segment no longer runs, or empty if it may still run.
std::string bus_gone(const std::string& dir, uint64_t id) {
    if (dir.empty()) return {};  // a 1.0 segment names no directory: we cannot tell, keep it
    struct stat st{};
    if (stat(dir.c_str(), &st) != 0) return "its bus directory " + dir + " no longer exists";
    // A missing or damaged bus.id may be that bus's own lost id: its shmbusd recovers the id
    // from these very segments (or refuses to start), so they are kept.
    uint64_t now = 0;
    std::string why;
    if (read_bus_id_file(dir, now, why) != BusIdFile::valid) return {};
    if (now != id) return "its bus directory " + dir + " now holds another bus";
    return {};
}

// The socket of a bus whose daemon is not running (nobody holds its lock).
void collect_stopped_socket(const std::string& dir, std::vector<RemovedItem>& out) {
    const std::string sock = socket_path(dir);
    struct stat st{};
    if (lstat(sock.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;
    const int lock = open(bus_file(dir, kLockFile).c_str(), O_RDONLY | O_CLOEXEC);
    if (lock < 0) return;
    // Held while the socket is removed: a shmbusd of that bus starting meanwhile takes the lock
    // (exclusively) before it makes its socket, so it waits for us and we never remove its new one.
    if (flock(lock, LOCK_SH | LOCK_NB) == 0 && lstat(sock.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
        unlink(sock.c_str()) == 0)
        out.push_back({"socket " + sock, "no shmbusd serves " + dir});
    close(lock);  // releases the lock
}

// The companions (cursor, owner and group objects) of a segment just removed, those shmbusd made.
void remove_companions_of(const std::string& segment_file, const std::vector<std::string>& companions) {
    for (const auto& file : companions)
        if (segment_of_companion(file) == segment_file && why_not_ours(file).empty()) shm_unlink(("/" + file).c_str());
}

// A companion whose segment is gone (removed above, or long ago) belongs to no topic. shmbusd
// creates a topic's segment before its companions, so a live topic never looks like this.
void collect_orphan_companion(const std::string& file, std::vector<RemovedItem>& out) {
    const std::string segment(segment_of_companion(file));
    struct stat st{};
    if (lstat((std::string(kShmDir) + "/" + segment).c_str(), &st) == 0 || errno != ENOENT) return;
    if (lstat((std::string(kShmDir) + "/" + file).c_str(), &st) != 0) return;  // removed with its segment above
    if (why_not_ours(file).empty() && shm_unlink(("/" + file).c_str()) == 0)
        out.push_back({(file.find("@cursors") != std::string::npos ? "cursor object /dev/shm/" : "companion /dev/shm/") + file,
                       "its segment is gone"});
}

}  // namespace

std::vector<uint64_t> bus_ids_naming(const std::string& dir) {
    std::set<uint64_t> ids;
    DIR* shm_dir = opendir(std::string(kShmDir).c_str());
    if (shm_dir == nullptr) return {};
    while (dirent* e = readdir(shm_dir)) {
        const std::string file = e->d_name;
        const uint64_t id = bus_id_of_shm(file);
        SegmentHeader h{};
        std::time_t changed = 0;
        if (id != 0 && read_header(file, h, changed) == HeaderState::valid && h.bus_id == id && dir == h.bus_dir)
            ids.insert(id);
    }
    closedir(shm_dir);
    return {ids.begin(), ids.end()};
}

std::vector<RemovedItem> collect_stale(uint64_t own_bus_id, unsigned min_age_s) {
    std::vector<RemovedItem> out;
    std::set<std::string> live_dirs;  // directories of buses that may still run
    DIR* shm_dir = opendir(std::string(kShmDir).c_str());
    if (shm_dir == nullptr) return out;
    const std::time_t now = std::time(nullptr);
    std::vector<std::string> companions;
    std::vector<std::string> removed;  // segments removed, whose companions go with them
    while (dirent* e = readdir(shm_dir)) {
        const std::string file = e->d_name;
        const uint64_t id = bus_id_of_shm(file);
        if (id == 0 || id == own_bus_id) continue;
        if (!segment_of_companion(file).empty()) {  // goes with its segment, below
            companions.push_back(file);
            continue;
        }
        const std::string shm = "/" + file;
        SegmentHeader h{};
        std::time_t changed = now;
        const HeaderState state = read_header(file, h, changed);
        std::string why;
        if (state == HeaderState::bad && now - changed >= std::time_t(min_age_s)) {
            why = "not a valid shmbus segment";
        } else if (state == HeaderState::valid) {
            const std::string dir(h.bus_dir);
            why = h.bus_id == id ? bus_gone(dir, id) : "its header names another bus";
            if (why.empty() && !dir.empty()) live_dirs.insert(dir);
        }
        if (!why.empty() && shm_unlink(shm.c_str()) == 0) {
            out.push_back({"segment /dev/shm/" + file, why});
            removed.push_back(file);  // one topic, one item: its companions go with it
        }
    }
    closedir(shm_dir);
    for (const auto& file : removed) remove_companions_of(file, companions);
    for (const auto& file : companions) collect_orphan_companion(file, out);
    for (const auto& dir : live_dirs) collect_stopped_socket(dir, out);
    return out;
}

}  // namespace shmbus::detail
