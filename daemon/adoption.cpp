// Adopting the segments an earlier shmbusd of this bus left in /dev/shm (at start): each checked,
// its owner and group objects found, the damaged removed only when proven damaged (registry.h).
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
    // An inbox belonged to a connection of the shmbusd that ran before: its requester opens another.
    if (is_inbox_name(topic)) return drop("the reply inbox of a connection to an earlier shmbusd");
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
