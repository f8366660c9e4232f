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

std::string Registry::shm_name_for(const std::string& topic) const { return detail::shm_name(bus_id_, topic); }

TopicEntry* Registry::find(const std::string& name) noexcept {
    auto it = topics_.find(name);
    return it == topics_.end() ? nullptr : it->second.get();
}

Result<TopicEntry*> Registry::create(const std::string& name, const TopicConfig& config, uint64_t first_id) noexcept {
    if (pending_.count(name) != 0) return finish_reservation(name);
    if (auto st = validate_topic_or_inbox_name(name); !st) return st.error();
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

}  // namespace shmbus::daemon
