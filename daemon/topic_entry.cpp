// A topic as shmbusd holds it: its objects, who owns which owner object, and the descriptors
// each role is handed (registry.h).
#include "registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <tuple>

#include "core/bus_files.h"
#include "shmbus/names.h"

namespace shmbus::daemon {

TopicEntry::~TopicEntry() {
    if (fd >= 0) close(fd);
    if (cursor_fd >= 0) close(cursor_fd);
}

const char* role_name(Role role) noexcept {
    switch (role) {
        case Role::publish: return "publish";
        case Role::subscribe: return "subscribe";
        case Role::observe: return "observe";
    }
    return "?";
}

namespace {

// A descriptor for the object `rw` refers to: a duplicate if writing is allowed, else a new
// read-only open of the same file (its permission is checked again, against shmbusd's own uid).
int descriptor_for(int rw, bool writable) noexcept {
    if (rw < 0) return -1;
    if (writable) return fcntl(rw, F_DUPFD_CLOEXEC, 0);
    const std::string path = "/proc/self/fd/" + std::to_string(rw);
    return open(path.c_str(), O_RDONLY | O_CLOEXEC);
}

// A descriptor for the companion named `shm` (shmbusd made it, mode 0600), read-only unless `writable`.
int companion_descriptor(const std::string& shm, bool writable) noexcept {
    return shm_open(shm.c_str(), (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC, 0);
}

}  // namespace

std::string user_principal(uid_t uid) { return "u" + std::to_string(uid); }
std::string group_principal(uint32_t block) { return "g" + std::to_string(block); }

detail::OwnerMask TopicEntry::scope_of(std::string_view principal) const noexcept {
    if (owner_names.empty()) return detail::kAnyOwner;
    detail::OwnerMask mask = 0;
    for (std::size_t k = 0; k < owner_of.size(); ++k)
        if (!principal.empty() && owner_of[k] == principal) mask |= detail::OwnerMask{1} << k;
    return mask;
}

Result<detail::OwnerMask> TopicEntry::scope_with_room(const std::string& principal) noexcept {
    detail::OwnerMask mask = scope_of(principal);
    if (owner_names.empty()) return mask;
    const auto& seg = segment();
    for (uint32_t i = 0; i < seg.max_consumers(); ++i)
        // relaxed: only shmbusd reserves slots, on this thread; a stale free one fails its CAS later.
        if (detail::in_scope(seg, i, mask) && detail::state_of(seg.consumer_slot(i), std::memory_order_relaxed) == detail::SlotState::free)
            return mask;
    // Full (or none yet): the next unassigned object becomes the principal's, for the topic's life.
    // Renamed first: its name is the record of who may write it, kept across shmbusd's restarts.
    for (std::size_t k = 0; k < owner_of.size(); ++k) {
        if (!owner_of[k].empty()) continue;
        const std::string renamed = detail::owner_object_name(shm_name, uint32_t(k)) + "." + principal;
        const std::string dir(detail::kShmDir);
        if (::rename((dir + owner_names[k]).c_str(), (dir + renamed).c_str()) != 0)
            return make_error(Errc::io_error, "cannot give an owner object of topic '" + name() + "' to " + principal + ": " +
                                                  strerror(errno));
        owner_names[k] = renamed;
        owner_of[k] = principal;
        return mask | detail::OwnerMask{1} << k;
    }
    return make_error(Errc::no_free_slot, "topic '" + name() + "' has no subscription slot left for " + principal +
                                              ": its " + std::to_string(owner_of.size()) + " owner objects of " +
                                              std::to_string(seg.owner_slots()) + " slots each are all given to other "
                                              "users and groups (make the topic with more subscriptions: max_subscribers in the configuration, "
                                              "TopicConfig::max_consumers)");
}

Result<HandedFds> TopicEntry::hand_out(Role role, const Writer& writer) const noexcept {
    // A segment without a cursor object holds the cursors too: a subscriber must write it.
    const bool legacy = cursor_fd < 0;
    const bool segment_rw = role == Role::publish || (legacy && role == Role::subscribe);
    const bool cursors_rw = role == Role::subscribe;
    HandedFds out;
    out.fds.segment = descriptor_for(fd, segment_rw);
    out.fds.cursors = descriptor_for(cursor_fd, cursors_rw);
    if (out.fds.segment < 0 || (!legacy && out.fds.cursors < 0))
        return make_error(Errc::io_error, "cannot open a descriptor for topic '" + name() + "': " + strerror(errno));
    const bool subscriber = role == Role::subscribe;
    for (std::size_t k = 0; k < owner_names.size(); ++k) {
        const bool rw = subscriber && !writer.principal.empty() && owner_of[k] == writer.principal;
        const int companion = companion_descriptor(owner_names[k], rw);
        if (companion < 0 || !out.fds.add_companion(companion)) {
            if (companion >= 0) close(companion);
            return make_error(Errc::io_error, "cannot open a descriptor for topic '" + name() + "': " + strerror(errno));
        }
    }
    for (std::size_t g = 0; g < group_names.size(); ++g) {
        const bool rw = subscriber && writer.group == g;
        const int companion = companion_descriptor(group_names[g], rw);
        if (companion < 0 || !out.fds.add_companion(companion)) {
            if (companion >= 0) close(companion);
            return make_error(Errc::io_error, "cannot open a descriptor for topic '" + name() + "': " + strerror(errno));
        }
    }
    return out;
}

}  // namespace shmbus::daemon
