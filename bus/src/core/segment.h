// A mapped topic segment: geometry, formatting (daemon) and validated attachment (everyone).
// Every region pointer handed out here has been bounds-checked against the mapping size once,
// at attach time; the ring code then only checks record-level fields.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "shmbus/layout/consumer_region.h"
#include "shmbus/layout/group_region.h"
#include "shmbus/layout/owner_object.h"
#include "shmbus/layout/producer_region.h"
#include "shmbus/layout/record.h"
#include "shmbus/layout/recovery_counters.h"
#include "shmbus/layout/segment_header.h"
#include "shmbus/layout/sequence_table.h"
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
    uint64_t consumer_offset, consumer_size;  // in the cursor object when it has one
    uint64_t ring_offset, ring_capacity;
    uint32_t index_entries;
    uint64_t total;               // bytes of the segment
    uint64_t cursor_object_size;  // bytes of the cursor object; 0: the consumer region is in the segment
    uint64_t group_offset;        // in the cursor object (1.4); 0 with max_groups 0
    uint32_t max_groups;
    uint64_t sequence_offset;     // in the segment, inside the producer region (1.6)
    uint32_t sequence_entries;
    uint32_t owner_objects;       // 1.9: objects holding the consumer slots; 0: in the cursor object
    uint32_t owner_slots;         // consumer slots in each (a power of two)
    uint64_t owner_object_size;   // bytes of each
    uint64_t group_object_size;   // bytes of each of the max_groups group objects (1.9)
};
// `cursor_object`: place the consumer region in a cursor object of its own; `owner_objects`
// (with it): the consumer slots and group blocks in owner and group objects (layout 1.9), what
// shmbusd does.
// Maps `size` bytes of `fd` with the access its descriptor allows (writable: whether it did
// RW); `populate` fills the page tables now. Used by attach and by the supervisor's format.
[[nodiscard]] Result<std::byte*> map_object(int fd, uint64_t size, bool& writable, bool populate) noexcept;

[[nodiscard]] Geometry compute_geometry(const TopicConfig& config, bool cursor_object = true, bool owner_objects = true) noexcept;

// The descriptors of a topic's owner objects then its group objects (layout/owner_object.h), each
// in index order; empty for a topic without them.
using Companions = std::span<const int>;
inline constexpr std::size_t kMaxCompanions = layout::kMaxOwnerObjects + layout::kMaxGroupObjects;

// What a reader takes from a header once it has checked it: the bounds it keeps its own copy of.
struct HeaderFacts {
    uint64_t capacity;
    uint32_t max_message, max_producers, max_consumers, index_entries;
    uint32_t producer_stride, consumer_stride;  // 1.1 segments: the 1.1 slot sizes
    OnFull on_full;
    uint64_t unblock_timeout_ns, expire_detached_ns;
    uint32_t max_groups;  // 0: a segment without a group region
    uint32_t sequence_entries;  // 0: a segment without a sequence table (named producers refused)
    uint32_t owner_objects;     // 1.9: 0, or the objects holding the consumer slots
    uint32_t owner_slots;       // consumer slots in each (a power of two; 0 without them)
    uint64_t owner_object_size, group_object_size;
    bool single_producer;       // 1.8: one publisher at a time, claiming by plain stores
    bool untimed;               // 1.10: records carry no timestamp
    uint64_t default_ttl_ns;    // 1.11: the TTL of a message that names none; 0: none
    bool in_place_reads;        // 1.8: producers honour ephemeral readers' holds (ConsumerSlot::hold)
};
// Checks a header against the size of the file or mapping it came from: magic, major version,
// `ready`, every region inside `size`, capacity, slot counts and strides. The one validation
// shared by attach() and by `gc`, which reads page 0 without mapping.
[[nodiscard]] Result<HeaderFacts> check_header(const layout::SegmentHeader& h, uint64_t size) noexcept;

class Segment {
public:
    Segment() noexcept = default;
    Segment(Segment&& other) noexcept;
    Segment& operator=(Segment&& other) noexcept;
    Segment(const Segment&) = delete;
    Segment& operator=(const Segment&) = delete;
    ~Segment();

    // Sizes the fds (posix_fallocate, so a full /dev/shm fails here and never with SIGBUS later),
    // maps them and writes a fresh layout; the segment's `ready` is stored last. With
    // `cursor_fd` >= 0 the consumer region goes into that cursor object (layout/cursor_object.h);
    // with -1 it stays inside the segment. Pages::reserved: reserve_pages() already sized both
    // objects for this config (shmbusd does that on a worker thread for large topics).
    enum class Pages : bool { reserve, reserved };
    // With `companions` (as many owner and group objects as compute_geometry says), the consumer
    // slots and group blocks go into those (layout 1.9); without, into the cursor object (1.8).
    [[nodiscard]] static Result<Segment> format(int fd, std::string_view topic, const TopicConfig& config,
                                                uint64_t bus_id, std::string_view bus_dir = {},
                                                int cursor_fd = -1, Pages pages = Pages::reserve,
                                                uint64_t first_id = 0, Companions companions = {}) noexcept;
    // Sizes the objects of a topic with `config` (segment `fd`, cursor object `cursor_fd`) and
    // reserves their pages: the slow part of format() for a large topic (tmpfs zeroes and
    // accounts every page; about 80 ms per GiB), and the part that may run on any thread.
    // `owner_objects`: the consumer slots will lie in owner objects (1.9), not in the cursor object.
    [[nodiscard]] static Status reserve_pages(int fd, int cursor_fd, std::string_view topic, const TopicConfig& config,
                                              bool owner_objects = true) noexcept;
    // Maps an existing segment (and its cursor object, which a 1.3 segment made with one
    // requires) and validates both headers and every region bound. Each object is mapped with
    // the access its descriptor was opened with: a read-only descriptor gives a read-only
    // mapping, which the kernel enforces. Takes ownership of nothing: the caller keeps the fds.
    // Populate::yes fills the page tables now (MAP_POPULATE), for publishers and subscribers: no
    // page fault on the data path. Readers of a few fields (shmbusd, statistics) pass no.
    enum class Populate : bool { no, yes };
    // A 1.9 segment needs its companions too, each checked (size, header naming this topic and
    // index) and mapped with its descriptor's access.
    [[nodiscard]] static Result<Segment> attach(int fd, int cursor_fd = -1, Populate populate = Populate::yes,
                                                Companions companions = {}) noexcept;

    [[nodiscard]] bool valid() const noexcept { return m_.base != nullptr; }
    // True if the consumer region lives in a cursor object of its own (layout 1.3).
    [[nodiscard]] bool has_cursor_object() const noexcept { return m_.cursor_base != nullptr; }
    // shmbusd, deleting the topic under live clients: they see deleted() from now on.
    void mark_deleted() const noexcept {
        // relaxed: a one-way flag, ordered for sleepers by the futex bumps that follow it.
        m_.header->deleted.store(1, std::memory_order_relaxed);
    }
    // True once shmbusd deleted the topic while this process still held it (`topic delete --force`).
    [[nodiscard]] bool deleted() const noexcept {
        // relaxed: a one-way flag; what a client does on seeing it depends on nothing else it wrote.
        return m_.header->deleted.load(std::memory_order_relaxed) != 0;
    }
    // Archived topics (1.7): whether the topic is kept on disk, and the consumer slot of the
    // archiver's durable cursor (the one durable cursor that holds publishers back on an
    // `archive` topic). Written by shmbusd; a 1.6 segment has neither.
    [[nodiscard]] bool archived() const noexcept {
        // acquire: pairs with the release store in mark_archived(): archiver_slot is set before it.
        return has_archive_fields() && m_.header->archived.load(std::memory_order_acquire) != 0;
    }
    [[nodiscard]] std::optional<uint32_t> archiver_slot(std::memory_order order = std::memory_order_acquire) const noexcept {
        if (!has_archive_fields()) return std::nullopt;
        // acquire: pairs with the release store in mark_archived(); seq_cst where a publisher
        // orders it with the slot states it reads (min_gating_ack).
        const uint32_t v = m_.header->archiver_slot.load(order);
        if (v == 0 || v > max_consumers()) return std::nullopt;
        return v - 1;
    }
    // shmbusd, once the archiver's cursor exists: publishers see it as gating from this store on.
    void mark_archived(uint32_t slot) const noexcept {
        // SYNC: seq_cst, before the archiver's slot is attached; pairs with the seq_cst loads of
        // slot state then archiver_slot in PublisherCore::min_gating_ack.
        m_.header->archiver_slot.store(slot + 1, std::memory_order_seq_cst);
        m_.header->archived.store(1, std::memory_order_release);  // SYNC: pairs with archived()'s acquire
    }
    // The id of the first message the log holds at position 0 (1.7; 0 before).
    [[nodiscard]] uint64_t first_id() const noexcept { return has_archive_fields() ? m_.header->first_id : 0; }
    [[nodiscard]] bool has_archive_fields() const noexcept { return m_.header->version_minor >= layout::kArchiveSinceMinor; }
    // Whether this process may write the segment (header, producer region, ring) and the consumer
    // region: what the descriptors it attached allowed.
    [[nodiscard]] bool segment_writable() const noexcept { return m_.segment_writable; }
    [[nodiscard]] bool cursors_writable() const noexcept { return m_.cursors_writable; }
    // The count of producers asleep on a full ring: in the producer region (1.3 with a cursor
    // object), where only producers write; in the consumer region head otherwise.
    [[nodiscard]] std::atomic<uint32_t>& space_waiters() const noexcept {
        return has_cursor_object() ? m_.producers->space_waiters : m_.consumers->space_waiters;
    }
    [[nodiscard]] const layout::SegmentHeader& header() const noexcept { return *m_.header; }
    [[nodiscard]] layout::ProducerRegionHead& producers() const noexcept { return *m_.producers; }
    // Slot i, found by the segment's stride. Fields past the stride do not exist in this segment:
    // ask producer_slot_has / consumer_slot_has before touching one added by a later minor version.
    [[nodiscard]] layout::ProducerSlot& producer_slot(uint32_t i) const noexcept {
        return *reinterpret_cast<layout::ProducerSlot*>(m_.producer_slots + std::size_t(i) * m_.facts.producer_stride);
    }
    [[nodiscard]] layout::ConsumerSlot& consumer_slot(uint32_t i) const noexcept {
        if (m_.facts.owner_objects != 0)  // 1.9: slot i is in owner object i / owner_slots
            return *reinterpret_cast<layout::ConsumerSlot*>(m_.owners[i >> m_.owner_shift] + layout::kPageSize +
                                                            std::size_t(i & (m_.facts.owner_slots - 1)) * m_.facts.consumer_stride);
        return *reinterpret_cast<layout::ConsumerSlot*>(m_.consumer_slots + std::size_t(i) * m_.facts.consumer_stride);
    }
    // 1.9: the owner objects, the consumer slots each holds, and which of them (and of the group
    // objects) this process may write.
    [[nodiscard]] uint32_t owner_objects() const noexcept { return m_.facts.owner_objects; }
    [[nodiscard]] uint32_t owner_slots() const noexcept { return m_.facts.owner_slots; }
    [[nodiscard]] uint32_t owner_object_of(uint32_t slot) const noexcept { return slot >> m_.owner_shift; }
    [[nodiscard]] bool owner_object_writable(uint32_t k) const noexcept { return (m_.owners_writable >> k) & 1; }
    [[nodiscard]] bool group_object_writable(uint32_t g) const noexcept { return (m_.groups_writable >> g) & 1; }
    // True if a slot field ending `field_end` bytes into the slot lies inside this segment's stride.
    [[nodiscard]] bool producer_slot_has(std::size_t field_end) const noexcept { return field_end <= m_.facts.producer_stride; }
    [[nodiscard]] bool consumer_slot_has(std::size_t field_end) const noexcept { return field_end <= m_.facts.consumer_stride; }
    [[nodiscard]] layout::IndexEntry& index_entry(uint32_t i) const noexcept { return m_.index[i]; }
    [[nodiscard]] uint32_t max_groups() const noexcept { return m_.facts.max_groups; }
    [[nodiscard]] layout::GroupBlock& group_block(uint32_t i) const noexcept {
        if (m_.facts.owner_objects != 0) return *reinterpret_cast<layout::GroupBlock*>(m_.group_objects[i] + layout::kPageSize);
        return m_.groups[i];
    }
    [[nodiscard]] uint32_t sequence_entries() const noexcept { return m_.facts.sequence_entries; }
    [[nodiscard]] layout::SequenceEntry& sequence_entry(uint32_t i) const noexcept { return m_.sequences[i]; }
    [[nodiscard]] layout::ConsumerRegionHead& consumers() const noexcept { return *m_.consumers; }
    [[nodiscard]] layout::RecoveryCounters& recovery() const noexcept { return *m_.recovery; }
    [[nodiscard]] std::byte* ring() const noexcept { return m_.ring; }
    [[nodiscard]] uint64_t capacity() const noexcept { return m_.facts.capacity; }
    [[nodiscard]] uint64_t mask() const noexcept { return m_.facts.capacity - 1; }
    [[nodiscard]] uint32_t max_message() const noexcept { return m_.facts.max_message; }
    [[nodiscard]] uint32_t max_producers() const noexcept { return m_.facts.max_producers; }
    [[nodiscard]] uint32_t max_consumers() const noexcept { return m_.facts.max_consumers; }
    [[nodiscard]] uint32_t index_entries() const noexcept { return m_.facts.index_entries; }
    [[nodiscard]] bool single_producer() const noexcept { return m_.facts.single_producer; }
    [[nodiscard]] bool untimed() const noexcept { return m_.facts.untimed; }
    [[nodiscard]] uint64_t default_ttl_ns() const noexcept { return m_.facts.default_ttl_ns; }
    // ok on a timed topic; on an untimed one the error that says why `what` needs timestamps.
    [[nodiscard]] Status require_timestamps(std::string_view what) const;
    [[nodiscard]] bool in_place_reads() const noexcept { return m_.facts.in_place_reads; }
    [[nodiscard]] uint64_t index_block() const noexcept { return m_.facts.capacity / m_.facts.index_entries; }
    // The on-full policy the segment was attached with: whether subscriptions gate publishers
    // (block, fail) or not (overwrite) never changes on a live topic.
    [[nodiscard]] OnFull on_full() const noexcept { return m_.facts.on_full; }
    // The live settings, which `topic set` may change while clients run (shmbusd stores them in
    // the header; docs/architecture.md). Read where they act: block or fail on the full path, the
    // supervisor's timeouts. A value that is not one shmbusd could have set reads as the original.
    [[nodiscard]] OnFull live_on_full() const noexcept;
    [[nodiscard]] uint64_t unblock_timeout_ns() const noexcept;
    [[nodiscard]] uint64_t expire_detached_ns() const noexcept;
    // shmbusd's side of `topic set`: stores new live settings (the caller checked them) in the
    // header, and in this mapping's own copy.
    void set_live_settings(OnFull on_full, uint64_t unblock_timeout_ns, uint64_t expire_detached_ns) noexcept;
    [[nodiscard]] std::string bus_dir() const;
    [[nodiscard]] std::string topic() const;
    [[nodiscard]] uint64_t size() const noexcept { return m_.size; }
    [[nodiscard]] uint64_t cursor_object_size() const noexcept { return m_.cursor_size; }
    [[nodiscard]] TopicConfig config() const noexcept;

private:
    // Points at the regions `h` describes; `h` and `facts` passed check_header for this mapping.
    void bind_regions(const layout::SegmentHeader& h, const HeaderFacts& facts) noexcept;
    // Checks `cursor_fd` is the cursor object `h` names and maps it.
    [[nodiscard]] Status attach_cursor_object(const layout::SegmentHeader& h, int cursor_fd, Populate populate) noexcept;
    // Sizes, maps and zeroes the owner and group objects of a new 1.9 segment.
    [[nodiscard]] Status format_companions(const Geometry& g, Companions companions, std::string_view topic) noexcept;
    // Checks and maps the owner and group objects of a 1.9 segment.
    [[nodiscard]] Status attach_companions(const layout::SegmentHeader& h, const HeaderFacts& facts, Companions companions,
                                           Populate populate) noexcept;
    void unmap() noexcept;

    // Everything a Segment holds, in one value, so that a move takes all of it and leaves the
    // source empty. The facts are copies taken once after validation: a hostile peer rewriting
    // the header later cannot change the bounds this process checks against.
    struct Mapping {
        std::byte* base = nullptr;
        uint64_t size = 0;
        std::byte* cursor_base = nullptr;  // the cursor object, if the segment has one
        uint64_t cursor_size = 0;
        bool segment_writable = false;
        bool cursors_writable = false;
        layout::SegmentHeader* header = nullptr;
        layout::ProducerRegionHead* producers = nullptr;
        std::byte* producer_slots = nullptr;
        layout::IndexEntry* index = nullptr;
        layout::ConsumerRegionHead* consumers = nullptr;
        std::byte* consumer_slots = nullptr;
        layout::GroupBlock* groups = nullptr;
        std::array<std::byte*, layout::kMaxOwnerObjects> owners{};       // 1.9
        std::array<std::byte*, layout::kMaxGroupObjects> group_objects{};
        uint64_t owner_size = 0, group_size = 0;  // bytes of each owner / group object mapped
        uint32_t owner_shift = 0;     // log2 of owner_slots
        uint64_t owners_writable = 0; // bit k: owner object k is mapped writable
        uint32_t groups_writable = 0;
        layout::SequenceEntry* sequences = nullptr;
        std::byte* ring = nullptr;
        layout::RecoveryCounters* recovery = nullptr;
        HeaderFacts facts{};
    };
    Mapping m_;
};

}  // namespace shmbus::detail
