// A mapped topic segment: geometry, formatting (daemon) and validated attachment (everyone).
// Every region pointer handed out here has been bounds-checked against the mapping size once,
// at attach time; the ring code then only checks record-level fields.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "shmbus/layout/consumer_region.h"
#include "shmbus/layout/producer_region.h"
#include "shmbus/layout/record.h"
#include "shmbus/layout/recovery_counters.h"
#include "shmbus/layout/segment_header.h"
#include "shmbus/result.h"
#include "shmbus/topic.h"

namespace shmbus::detail {

// A duration kept as unsigned nanoseconds (in a header or a frame), as std::chrono; what does not
// fit saturates rather than turning negative.
[[nodiscard]] inline std::chrono::nanoseconds duration_from_ns(uint64_t ns) noexcept {
    return std::chrono::nanoseconds(int64_t(std::min<uint64_t>(ns, INT64_MAX)));
}

struct Geometry {
    uint64_t producer_offset, producer_size;
    uint64_t consumer_offset, consumer_size;
    uint64_t ring_offset, ring_capacity;
    uint32_t index_entries;
    uint64_t total;
};
[[nodiscard]] Geometry compute_geometry(const TopicConfig& config) noexcept;
[[nodiscard]] uint64_t round_capacity(uint64_t capacity) noexcept;

class Segment {
public:
    Segment() noexcept = default;
    Segment(Segment&& other) noexcept;
    Segment& operator=(Segment&& other) noexcept;
    Segment(const Segment&) = delete;
    Segment& operator=(const Segment&) = delete;
    ~Segment();

    // Sizes the fd (posix_fallocate, so a full /dev/shm fails here and never with SIGBUS later),
    // maps it and writes a fresh layout; `ready` is stored last.
    [[nodiscard]] static Result<Segment> format(int fd, std::string_view topic, const TopicConfig& config,
                                                uint64_t bus_id, std::string_view bus_dir = {}) noexcept;
    // Maps an existing segment and validates its header and every region bound.
    // Takes ownership of nothing: the caller keeps `fd`.
    [[nodiscard]] static Result<Segment> attach(int fd) noexcept;

    [[nodiscard]] bool valid() const noexcept { return base_ != nullptr; }
    [[nodiscard]] const layout::SegmentHeader& header() const noexcept { return *header_; }
    [[nodiscard]] layout::ProducerRegionHead& producers() const noexcept { return *producers_; }
    [[nodiscard]] layout::ProducerSlot& producer_slot(uint32_t i) const noexcept { return producer_slots_[i]; }
    [[nodiscard]] layout::IndexEntry& index_entry(uint32_t i) const noexcept { return index_[i]; }
    [[nodiscard]] layout::ConsumerRegionHead& consumers() const noexcept { return *consumers_; }
    [[nodiscard]] layout::ConsumerSlot& consumer_slot(uint32_t i) const noexcept { return consumer_slots_[i]; }
    [[nodiscard]] layout::RecoveryCounters& recovery() const noexcept { return *recovery_; }
    [[nodiscard]] std::byte* ring() const noexcept { return ring_; }
    [[nodiscard]] uint64_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] uint64_t mask() const noexcept { return capacity_ - 1; }
    [[nodiscard]] uint32_t max_message() const noexcept { return max_message_; }
    [[nodiscard]] uint32_t max_producers() const noexcept { return max_producers_; }
    [[nodiscard]] uint32_t max_consumers() const noexcept { return max_consumers_; }
    [[nodiscard]] uint32_t index_entries() const noexcept { return index_entries_; }
    [[nodiscard]] uint64_t index_block() const noexcept { return capacity_ / index_entries_; }
    [[nodiscard]] OnFull on_full() const noexcept { return on_full_; }
    [[nodiscard]] uint64_t unblock_timeout_ns() const noexcept { return unblock_timeout_ns_; }
    [[nodiscard]] uint64_t expire_detached_ns() const noexcept { return expire_detached_ns_; }
    [[nodiscard]] std::string bus_dir() const;
    [[nodiscard]] std::string topic() const;
    [[nodiscard]] uint64_t size() const noexcept { return size_; }
    [[nodiscard]] TopicConfig config() const noexcept;

private:
    [[nodiscard]] Status bind_regions() noexcept;
    void unmap() noexcept;

    std::byte* base_ = nullptr;
    uint64_t size_ = 0;
    layout::SegmentHeader* header_ = nullptr;
    layout::ProducerRegionHead* producers_ = nullptr;
    layout::ProducerSlot* producer_slots_ = nullptr;
    layout::IndexEntry* index_ = nullptr;
    layout::ConsumerRegionHead* consumers_ = nullptr;
    layout::ConsumerSlot* consumer_slots_ = nullptr;
    std::byte* ring_ = nullptr;
    // Copies of header fields, taken once after validation: a hostile peer rewriting the
    // header later cannot change the bounds this process checks against.
    uint64_t capacity_ = 0;
    uint32_t max_message_ = 0, max_producers_ = 0, max_consumers_ = 0, index_entries_ = 0;
    OnFull on_full_ = OnFull::block;
    uint64_t unblock_timeout_ns_ = 0, expire_detached_ns_ = 0;
    layout::RecoveryCounters* recovery_ = nullptr;
};

}  // namespace shmbus::detail
