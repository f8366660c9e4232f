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

std::string Registry::shm_name_for(const std::string& topic) const { return detail::shm_name(bus_id_, topic); }

TopicEntry* Registry::find(const std::string& name) noexcept {
    auto it = topics_.find(name);
    return it == topics_.end() ? nullptr : it->second.get();
}

Result<TopicEntry*> Registry::create(const std::string& name, const TopicConfig& config, uint64_t first_id) noexcept {
    if (pending_.count(name) != 0) return finish_reservation(name);
    if (auto st = validate_topic_name(name); !st) return st.error();
    const TopicConfig c = with_defaults(config);
    if (auto st = validate_config(c); !st) return st.error();
    if (topics_.size() + pending_.size() >= max_topics_)
        return make_error(Errc::no_space, "cannot create topic '" + name + "': this bus already has " +
                                              std::to_string(topics_.size()) + " topics, as many as shmbusd's descriptor "
                                              "limit lets it open again after a restart (raise RLIMIT_NOFILE, e.g. "
                                              "LimitNOFILE in its service)");
    const detail::Geometry g = detail::compute_geometry(c);
    if (done_fd_ >= 0 && g.total + g.cursor_object_size >= kReserveInBackgroundBytes) return start_reservation(name, c, first_id);
    const std::string shm = shm_name_for(name);
    auto fds = create_objects(name, shm);
    if (!fds) return fds.error();
    return finish(name, c, shm, fds->first, fds->second, detail::Segment::Pages::reserve, first_id);
}

Result<std::pair<int, int>> Registry::create_objects(const std::string& name, const std::string& shm) noexcept {
    auto fd = create_object(name, shm);
    if (!fd) return fd.error();
    auto cursor_fd = create_object(name, detail::cursor_object_name(shm));
    if (!cursor_fd) {
        discard(shm, *fd, -1);
        return cursor_fd.error();
    }
    return std::pair{*fd, *cursor_fd};
}

void Registry::discard(const std::string& shm, int fd, int cursor_fd) noexcept {
    if (fd >= 0) close(fd), shm_unlink(shm.c_str());
    if (cursor_fd >= 0) close(cursor_fd), shm_unlink(detail::cursor_object_name(shm).c_str());
}

Result<Registry::NewCompanions> Registry::create_companions(const std::string& name, const std::string& shm,
                                                            const detail::Geometry& g) noexcept {
    NewCompanions out;
    auto undo = [&] {
        for (int fd : out.fds) close(fd);
        for (const auto& n : out.owner_names) shm_unlink(n.c_str());
        for (const auto& n : out.group_names) shm_unlink(n.c_str());
    };
    try {
        for (uint32_t i = 0; i < g.owner_objects + g.max_groups; ++i) {
            const bool owner = i < g.owner_objects;
            const std::string n = owner ? detail::owner_object_name(shm, i) : detail::group_object_name(shm, i - g.owner_objects);
            auto fd = create_object(name, n);
            if (!fd) {
                undo();
                return fd.error();
            }
            out.fds.push_back(*fd);
            (owner ? out.owner_names : out.group_names).push_back(n);
        }
    } catch (...) {
        undo();
        return make_error(Errc::io_error, "cannot create topic '" + name + "': out of memory");
    }
    return out;
}

Result<TopicEntry*> Registry::finish(const std::string& name, const TopicConfig& c, const std::string& shm, int fd,
                                     int cursor_fd, detail::Segment::Pages pages, uint64_t first_id) noexcept {
    auto companions = create_companions(name, shm, detail::compute_geometry(c));
    if (!companions) {
        discard(shm, fd, cursor_fd);
        return companions.error();
    }
    auto seg = detail::Segment::format(fd, name, c, bus_id_, bus_dir_, cursor_fd, pages, first_id, companions->fds);
    for (int companion : companions->fds) close(companion);  // mapped; shmbusd opens them by name when it hands them out
    if (!seg) {
        discard(shm, fd, cursor_fd);
        for (const auto& n : companions->owner_names) shm_unlink(n.c_str());
        for (const auto& n : companions->group_names) shm_unlink(n.c_str());
        return seg.error();
    }
    auto entry = std::make_unique<TopicEntry>(shm, fd, cursor_fd, TopicSupervisor(name, std::move(seg.value())));
    entry->owner_names = std::move(companions->owner_names);
    entry->owner_of.assign(entry->owner_names.size(), std::string());
    entry->group_names = std::move(companions->group_names);
    TopicEntry* raw = entry.get();
    topics_[name] = std::move(entry);
    if (on_created_) on_created_(*raw);
    return raw;
}

bool Registry::reserve_in_background() noexcept {
    if (done_fd_ < 0) done_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return done_fd_ >= 0;
}

Result<TopicEntry*> Registry::start_reservation(const std::string& name, const TopicConfig& c, uint64_t first_id) noexcept {
    auto p = std::make_unique<Pending>();
    p->config = c;
    p->first_id = first_id;
    p->shm = shm_name_for(name);
    auto fds = create_objects(name, p->shm);
    if (!fds) return fds.error();
    std::tie(p->fd, p->cursor_fd) = *fds;
    Pending* raw = p.get();
    try {
        raw->worker = std::thread([raw, name, done_fd = done_fd_] {
            raw->result = detail::Segment::reserve_pages(raw->fd, raw->cursor_fd, name, raw->config);
            raw->done.store(true, std::memory_order_release);  // pairs with the acquire in finish_reservation
            const uint64_t one = 1;
            (void)!write(done_fd, &one, sizeof one);
        });
    } catch (...) {  // no thread to be had: reserve here instead
        raw->result = detail::Segment::reserve_pages(raw->fd, raw->cursor_fd, name, raw->config);
        raw->done.store(true, std::memory_order_relaxed);  // this thread alone reads it
    }
    pending_[name] = std::move(p);
    if (raw->done.load(std::memory_order_relaxed)) return finish_reservation(name);
    return static_cast<TopicEntry*>(nullptr);
}

Result<TopicEntry*> Registry::finish_reservation(const std::string& name) noexcept {
    auto it = pending_.find(name);
    Pending& p = *it->second;
    // acquire: pairs with the worker's release store of `done`, after it wrote `result`.
    if (!p.done.load(std::memory_order_acquire)) return static_cast<TopicEntry*>(nullptr);
    if (p.worker.joinable()) p.worker.join();
    std::unique_ptr<Pending> owned = std::move(it->second);
    pending_.erase(it);
    if (!owned->result) {
        discard(owned->shm, owned->fd, owned->cursor_fd);
        return owned->result.error();
    }
    return finish(name, owned->config, owned->shm, owned->fd, owned->cursor_fd, detail::Segment::Pages::reserved,
                  owned->first_id);
}

std::vector<Registry::Finished> Registry::finish_ended_reservations() noexcept {
    std::vector<std::string> ended;
    for (const auto& [name, p] : pending_)
        if (p->done.load(std::memory_order_relaxed)) ended.push_back(name);  // finish_reservation acquires
    std::vector<Finished> out;
    for (const auto& name : ended) {
        auto t = finish_reservation(name);
        out.push_back({name, t ? std::nullopt : std::optional<Error>(t.error())});
    }
    return out;
}

Registry::~Registry() {
    for (auto& [name, p] : pending_) {
        if (p->worker.joinable()) p->worker.join();
        discard(p->shm, p->fd, p->cursor_fd);
    }
    if (done_fd_ >= 0) close(done_fd_);
}

// Creates the shared-memory object `shm` for topic `name`, mode 0600: objects are never
// world-accessible; clients receive descriptors from us.
Result<int> Registry::create_object(const std::string& name, const std::string& shm) noexcept {
    int fd = shm_open(shm.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {  // a leftover nobody adopted: replace it, if it is ours to replace
        if (const std::string why = detail::why_not_ours(shm.substr(1)); !why.empty())
            return make_error(Errc::permission_denied, "cannot create topic '" + name + "': /dev/shm" + shm +
                                                           " already exists and is not shmbusd's (" + why + ")");
        shm_unlink(shm.c_str());
        fd = shm_open(shm.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0)
        return make_error(errno == EACCES ? Errc::permission_denied : Errc::io_error, "shm_open " + shm + ": " + strerror(errno));
    return fd;
}

Status Registry::remove(const std::string& name) noexcept {
    auto it = topics_.find(name);
    if (it == topics_.end()) return make_error(Errc::topic_not_found, "no topic named '" + name + "'");
    shm_unlink(it->second->shm_name.c_str());
    shm_unlink(detail::cursor_object_name(it->second->shm_name).c_str());
    for (const auto& companion : it->second->owner_names) shm_unlink(companion.c_str());
    for (const auto& companion : it->second->group_names) shm_unlink(companion.c_str());
    topics_.erase(it);
    return ok_status();
}

std::vector<std::string> Registry::names() const {
    std::vector<std::string> out;
    out.reserve(topics_.size());
    for (const auto& [name, entry] : topics_) out.push_back(name);
    return out;
}

Registry::AdoptReport Registry::adopt_existing() {
    AdoptReport report;
    const std::string prefix = detail::shm_prefix(bus_id_);
    std::vector<std::string> files;
    if (DIR* dir = opendir(std::string(detail::kShmDir).c_str())) {
        while (dirent* e = readdir(dir))
            if (std::string_view(e->d_name).rfind(prefix, 0) == 0) files.emplace_back(e->d_name);
        closedir(dir);
    }
    for (const auto& file : files) {
        if (!detail::segment_of_companion(file).empty()) continue;
        adopt(file, file.substr(prefix.size()), files, report);
        if (report.stopped) return report;  // out of a resource: nothing more is judged, nothing removed
    }
    // Companions are adopted with their segment; one whose segment is not adopted is left over
    // from a topic that is gone.
    for (const auto& file : files) {
        const std::string_view segment = detail::segment_of_companion(file);
        if (segment.empty() || topics_.count(std::string(segment.substr(prefix.size()))) != 0) continue;
        struct stat st{};
        if (::lstat((std::string(detail::kShmDir) + "/" + file).c_str(), &st) != 0 && errno == ENOENT)
            continue;  // removed with its segment above (a damaged or half-made topic)
        if (const std::string why = detail::why_not_ours(file); !why.empty()) report.ignored.push_back(file + ": " + why);
        else if (shm_unlink(("/" + file).c_str()) == 0) report.removed.push_back(file + ": its topic is gone");
    }
    return report;
}

namespace {

// Errors that say this process lacks a resource (descriptors, memory), not that the file is bad.
bool out_of_resources(int err) noexcept { return err == EMFILE || err == ENFILE || err == ENOMEM; }

}  // namespace

Registry::FoundCompanions Registry::find_companions(const std::string& file, const layout::SegmentHeader& h,
                                                    const std::vector<std::string>& files) {
    FoundCompanions out;
    if (h.version_minor < layout::kOwnerObjectsSinceMinor || h.owner_objects == 0) return out;
    if (h.owner_objects > layout::kMaxOwnerObjects || h.max_groups > layout::kMaxGroupObjects) {
        out.missing = "its header names more owner or group objects than a topic has";
        return out;
    }
    auto take = [&](const std::string& name) {
        struct stat st{};
        const int fd = detail::open_shm_file(name, O_RDWR, st);
        if (fd < 0) {
            if (errno != ENOENT) out.error = errno;
            else out.missing = name + " is missing";
            return false;
        }
        if (const std::string why = detail::not_made_by_us(st); !why.empty()) {  // never mapped, never removed
            close(fd);
            out.missing = name + " is not shmbusd's (" + why + ")";
            return false;
        }
        out.fds.push_back(fd);
        return true;
    };
    for (uint32_t k = 0; k < h.owner_objects; ++k) {
        // "@o<k>", or "@o<k>.<principal>" once given: exactly one of them.
        const std::string base = detail::owner_object_name(file, k);
        std::vector<std::string> found;
        for (const auto& f : files)
            if (f == base || (f.size() > base.size() + 1 && f.compare(0, base.size() + 1, base + ".") == 0)) found.push_back(f);
        if (found.size() != 1) {
            out.missing = base + (found.empty() ? " is missing" : " exists under more than one name");
            return out;
        }
        if (!take(found[0])) return out;
        out.owner_names.push_back("/" + found[0]);
        out.owner_of.push_back(found[0].size() > base.size() ? found[0].substr(base.size() + 1) : std::string());
    }
    for (uint32_t g = 0; g < h.max_groups; ++g) {
        const std::string name = detail::group_object_name(file, g);
        if (!take(name)) return out;
        out.group_names.push_back("/" + name);
    }
    return out;
}

void Registry::adopt(const std::string& file, const std::string& topic, const std::vector<std::string>& files,
                     AdoptReport& report) {
    const std::string shm = "/" + file;
    const std::string cursors = detail::cursor_object_name(shm);
    // Only proven damage removes a topic: running out of descriptors or memory here says nothing
    // about the files, so adoption stops (and shmbusd with it) and everything stays as it was.
    auto stop = [&](const std::string& what, int err) {
        report.stopped = make_error(Errc::io_error, "cannot adopt topic '" + topic + "': " + what + ": " + strerror(err) +
                                                        " (" + std::to_string(report.adopted.size()) +
                                                        " topics adopted so far); nothing was removed. Raise the "
                                                        "descriptor limit (ulimit -n, LimitNOFILE=) and start shmbusd again");
    };
    struct stat st{};
    const int fd = detail::open_shm_file(file, O_RDWR, st);
    if (fd < 0) {
        if (out_of_resources(errno)) return stop("cannot open its segment", errno);
        report.ignored.push_back(file + ": cannot open it: " + strerror(errno));
        return;
    }
    // Someone else's file under our name is neither adopted nor removed (we could not remove
    // it from a sticky /dev/shm anyway, unless root): it is reported and left alone.
    if (const std::string why = detail::not_made_by_us(st); !why.empty()) {
        close(fd);
        report.ignored.push_back(file + ": " + why);
        return;
    }
    struct stat cst{};
    int cursor_fd = detail::open_shm_file(cursors.substr(1), O_RDWR, cst);
    if (cursor_fd < 0 && errno != ENOENT) {  // there, but not openable now: nothing is proven about it
        const int err = errno;
        close(fd);
        if (out_of_resources(err)) return stop("cannot open its cursor object", err);
        report.ignored.push_back(file + ": cannot open its cursor object: " + strerror(err));
        return;
    }
    if (cursor_fd >= 0 && !detail::not_made_by_us(cst).empty()) {  // not ours: never mapped, never removed
        close(cursor_fd);
        cursor_fd = -1;
    }
    auto drop = [&](const std::string& why) {
        close(fd);
        if (cursor_fd >= 0) close(cursor_fd), shm_unlink(cursors.c_str());
        if (shm_unlink(shm.c_str()) == 0) report.removed.push_back(file + ": " + why);
        else report.ignored.push_back(file + ": " + why + "; cannot remove it: " + strerror(errno));
    };
    if (!validate_topic_name(topic)) return drop("invalid topic name");
    // 1.9: the owner and group objects, found by name (an owner object's name says whose it is).
    layout::SegmentHeader header{};
    if (::pread(fd, &header, sizeof header, 0) != ssize_t(sizeof header)) std::memset(static_cast<void*>(&header), 0, sizeof header);
    FoundCompanions companions = find_companions(file, header, files);
    auto close_companions = [&] {
        for (int companion : companions.fds) close(companion);
        companions.fds.clear();
    };
    if (companions.error != 0) {
        close_companions();
        close(fd);
        if (cursor_fd >= 0) close(cursor_fd);
        if (out_of_resources(companions.error)) return stop("cannot open its owner or group objects", companions.error);
        report.ignored.push_back(file + ": cannot open its owner or group objects: " + strerror(companions.error));
        return;
    }
    if (!companions.missing.empty()) {
        close_companions();
        return drop(companions.missing);
    }
    errno = 0;
    auto seg = detail::Segment::attach(fd, cursor_fd, detail::Segment::Populate::no, companions.fds);  // shmbusd reads few pages
    close_companions();  // mapped (or not): shmbusd opens them by name when it hands them out
    if (!seg) {
        // Damage is what the checks prove (not a segment, a corrupt one); a layout version this
        // build does not read, or a failure to map, is left for a shmbusd that can.
        const Errc code = seg.error().code;
        if (code == Errc::corrupt_segment || code == Errc::bad_magic) return drop(seg.error().message);
        const int err = errno;
        close(fd);
        if (cursor_fd >= 0) close(cursor_fd);
        if (out_of_resources(err)) return stop(seg.error().message, err);
        report.ignored.push_back(file + ": " + seg.error().message);
        return;
    }
    if (seg->topic() != topic || seg->header().bus_id != bus_id_) return drop("header names another topic or bus");
    if (!seg->has_cursor_object() && cursor_fd >= 0) close(cursor_fd), cursor_fd = -1;
    auto entry = std::make_unique<TopicEntry>(shm, fd, cursor_fd, TopicSupervisor(topic, std::move(seg.value())));
    entry->owner_names = std::move(companions.owner_names);
    entry->owner_of = std::move(companions.owner_of);
    entry->group_names = std::move(companions.group_names);
    topics_[topic] = std::move(entry);
    report.adopted.push_back(topic);
}

}  // namespace shmbus::daemon
