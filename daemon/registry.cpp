#include "registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "bus_files.h"
#include "shmbus/names.h"

namespace shmbus::daemon {

TopicEntry::~TopicEntry() {
    if (fd >= 0) close(fd);
}

std::string Registry::shm_name_for(const std::string& topic) const { return detail::shm_name(bus_id_, topic); }

TopicEntry* Registry::find(const std::string& name) noexcept {
    auto it = topics_.find(name);
    return it == topics_.end() ? nullptr : it->second.get();
}

Result<TopicEntry*> Registry::create(const std::string& name, const TopicConfig& config) noexcept {
    if (auto st = validate_topic_name(name); !st) return st.error();
    const TopicConfig c = with_defaults(config);
    if (auto st = validate_config(c); !st) return st.error();
    if (topics_.size() >= max_topics_)
        return make_error(Errc::no_space, "cannot create topic '" + name + "': this bus already has " +
                                              std::to_string(topics_.size()) + " topics, as many as shmbusd's descriptor "
                                              "limit lets it open again after a restart (raise RLIMIT_NOFILE, e.g. "
                                              "LimitNOFILE in its service)");
    const std::string shm = shm_name_for(name);
    // 0600: segments are never world-accessible; clients receive the fd from us.
    int fd = shm_open(shm.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {  // a leftover nobody adopted: replace it, if it is ours to replace
        struct stat st{};
        const int old = detail::open_shm_file(shm.substr(1), O_RDONLY, st);
        const std::string why = old < 0 ? std::string(strerror(errno)) : detail::not_made_by_us(st);
        if (old >= 0) close(old);
        if (!why.empty())
            return make_error(Errc::permission_denied, "cannot create topic '" + name + "': /dev/shm" + shm +
                                                           " already exists and is not shmbusd's (" + why + ")");
        shm_unlink(shm.c_str());
        fd = shm_open(shm.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0)
        return make_error(errno == EACCES ? Errc::permission_denied : Errc::io_error, "shm_open " + shm + ": " + strerror(errno));
    auto seg = detail::Segment::format(fd, name, c, bus_id_, bus_dir_);
    if (!seg) {
        close(fd);
        shm_unlink(shm.c_str());
        return seg.error();
    }
    auto entry = std::make_unique<TopicEntry>(shm, fd, TopicSupervisor(name, std::move(seg.value())));
    TopicEntry* raw = entry.get();
    topics_[name] = std::move(entry);
    return raw;
}

Status Registry::remove(const std::string& name) noexcept {
    auto it = topics_.find(name);
    if (it == topics_.end()) return make_error(Errc::topic_not_found, "no topic named '" + name + "'");
    shm_unlink(it->second->shm_name.c_str());
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
    DIR* dir = opendir(std::string(detail::kShmDir).c_str());
    if (dir == nullptr) return report;
    while (dirent* e = readdir(dir)) {
        const std::string file = e->d_name;
        if (file.rfind(prefix, 0) != 0) continue;
        const std::string topic = file.substr(prefix.size());
        const std::string shm = "/" + file;
        struct stat st{};
        const int fd = detail::open_shm_file(file, O_RDWR, st);
        if (fd < 0) {
            report.ignored.push_back(file + ": cannot open it: " + strerror(errno));
            continue;
        }
        // Someone else's file under our name is neither adopted nor removed (we could not remove
        // it from a sticky /dev/shm anyway, unless root): it is reported and left alone.
        if (const std::string why = detail::not_made_by_us(st); !why.empty()) {
            close(fd);
            report.ignored.push_back(file + ": " + why);
            continue;
        }
        auto drop = [&](const std::string& why) {
            close(fd);
            if (shm_unlink(shm.c_str()) == 0) report.removed.push_back(file + ": " + why);
            else report.ignored.push_back(file + ": " + why + "; cannot remove it: " + strerror(errno));
        };
        if (!validate_topic_name(topic)) {
            drop("invalid topic name");
            continue;
        }
        auto seg = detail::Segment::attach(fd);
        if (!seg) {
            drop(seg.error().message);
            continue;
        }
        if (seg->topic() != topic || seg->header().bus_id != bus_id_) {
            drop("header names another topic or bus");
            continue;
        }
        topics_[topic] = std::make_unique<TopicEntry>(shm, fd, TopicSupervisor(topic, std::move(seg.value())));
        report.adopted.push_back(topic);
    }
    closedir(dir);
    return report;
}

}  // namespace shmbus::daemon
