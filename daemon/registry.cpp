#include "registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "shmbus/names.h"

namespace shmbus::daemon {

TopicEntry::~TopicEntry() {
    if (fd >= 0) close(fd);
}

std::string Registry::shm_prefix() const {
    char buf[48];
    std::snprintf(buf, sizeof buf, "shmbus-%016" PRIx64 "-", bus_id_);
    return buf;
}

std::string Registry::shm_name_for(const std::string& topic) const { return "/" + shm_prefix() + topic; }

TopicEntry* Registry::find(const std::string& name) noexcept {
    auto it = topics_.find(name);
    return it == topics_.end() ? nullptr : it->second.get();
}

Result<TopicEntry*> Registry::create(const std::string& name, const TopicConfig& config) noexcept {
    if (auto st = validate_topic_name(name); !st) return st.error();
    const TopicConfig c = with_defaults(config);
    if (auto st = validate_config(c); !st) return st.error();
    auto entry = std::make_unique<TopicEntry>();
    entry->name = name;
    entry->shm_name = shm_name_for(name);
    // 0600: segments are never world-accessible; clients receive the fd from us.
    entry->fd = shm_open(entry->shm_name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (entry->fd < 0 && errno == EEXIST) {  // a leftover nobody adopted (invalid): replace it
        shm_unlink(entry->shm_name.c_str());
        entry->fd = shm_open(entry->shm_name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (entry->fd < 0)
        return make_error(errno == EACCES ? Errc::permission_denied : Errc::io_error,
                          "shm_open " + entry->shm_name + ": " + strerror(errno));
    auto seg = detail::Segment::format(entry->fd, name, c, bus_id_, bus_dir_);
    if (!seg) {
        shm_unlink(entry->shm_name.c_str());
        return seg.error();
    }
    entry->segment = std::move(seg.value());
    entry->claim_watch.resize(entry->segment.max_producers());
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
    const std::string prefix = shm_prefix();
    DIR* dir = opendir("/dev/shm");
    if (dir == nullptr) return report;
    while (dirent* e = readdir(dir)) {
        const std::string file = e->d_name;
        if (file.rfind(prefix, 0) != 0) continue;
        const std::string topic = file.substr(prefix.size());
        const std::string shm = "/" + file;
        auto drop = [&](const std::string& why) {
            shm_unlink(shm.c_str());
            report.removed.push_back(file + ": " + why);
        };
        if (!validate_topic_name(topic)) {
            drop("invalid topic name");
            continue;
        }
        int fd = shm_open(shm.c_str(), O_RDWR | O_CLOEXEC, 0);
        if (fd < 0) continue;
        auto seg = detail::Segment::attach(fd);
        if (!seg) {
            close(fd);
            drop(seg.error().message);
            continue;
        }
        if (seg->topic() != topic || seg->header().bus_id != bus_id_) {
            close(fd);
            drop("header names another topic or bus");
            continue;
        }
        auto entry = std::make_unique<TopicEntry>();
        entry->name = topic;
        entry->shm_name = shm;
        entry->fd = fd;
        entry->segment = std::move(seg.value());
        entry->claim_watch.resize(entry->segment.max_producers());
        topics_[topic] = std::move(entry);
        report.adopted.push_back(topic);
    }
    closedir(dir);
    return report;
}

}  // namespace shmbus::daemon
