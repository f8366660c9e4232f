// shmbusd's topic registry: the segments of one bus directory, by topic name. Creates, adopts
// and removes POSIX shared-memory objects named /shmbus-<bus id>-<topic>.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "recovery.h"
#include "segment.h"
#include "shmbus/result.h"
#include "shmbus/topic.h"

namespace shmbus::daemon {

struct TopicEntry {
    std::string name;
    std::string shm_name;
    int fd = -1;  // kept open to hand to clients with SCM_RIGHTS
    detail::Segment segment;
    // Recovery state: the open claim seen in each producer slot and since when (unblock-timeout),
    // and the producer slots of dead owners kept until their claim is settled (a live producer
    // might still own what they announced).
    struct ClaimWatch {
        uint64_t tag = 0;
        uint64_t since_ns = 0;
    };
    std::vector<ClaimWatch> claim_watch;
    std::vector<uint32_t> dying;
    ~TopicEntry();
};

class Registry {
public:
    Registry(uint64_t bus_id, std::string bus_dir) : bus_id_(bus_id), bus_dir_(std::move(bus_dir)) {}

    [[nodiscard]] TopicEntry* find(const std::string& name) noexcept;
    [[nodiscard]] Result<TopicEntry*> create(const std::string& name, const TopicConfig& config) noexcept;
    [[nodiscard]] Status remove(const std::string& name) noexcept;
    [[nodiscard]] std::vector<std::string> names() const;
    [[nodiscard]] std::size_t size() const noexcept { return topics_.size(); }

    struct AdoptReport {
        std::vector<std::string> adopted;
        std::vector<std::string> removed;  // "name: why"
    };
    // Re-adopts every valid segment of this bus found in /dev/shm; unlinks invalid ones.
    AdoptReport adopt_existing();
    [[nodiscard]] std::string shm_name_for(const std::string& topic) const;
    [[nodiscard]] std::string shm_prefix() const;

    template <class F>
    void for_each(F&& f) {
        for (auto& [name, entry] : topics_) f(*entry);
    }

private:
    uint64_t bus_id_;
    std::string bus_dir_;  // recorded in each segment, so `gc` can tell when its bus is gone
    std::map<std::string, std::unique_ptr<TopicEntry>> topics_;
};

}  // namespace shmbus::daemon
