#include "core/segment.h"
#include "shmbus/layout/cursor_object.h"
#include "core/wall_clock.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

namespace shmbus::detail {
namespace {

using namespace shmbus::layout;

constexpr uint64_t page_align(uint64_t n) noexcept { return (n + kPageSize - 1) & ~uint64_t{kPageSize - 1}; }
constexpr bool is_pow2(uint64_t n) noexcept { return n != 0 && (n & (n - 1)) == 0; }

// One index entry per 1/256 of the ring, but never blocks smaller than 1 KiB.
uint32_t index_entries_for(uint64_t capacity) noexcept {
    uint64_t entries = capacity / 1024;
    if (entries > 256) entries = 256;
    if (entries < 4) entries = 4;
    return uint32_t(entries);
}

}  // namespace

// 1.9: consumer slots per owner object: 8, or as many more (a power of two) as keep the objects
// within kMaxOwnerObjects.
uint32_t owner_slots_for(uint32_t max_consumers) noexcept {
    uint32_t slots = 8;
    while (uint64_t(slots) * kMaxOwnerObjects < max_consumers) slots *= 2;
    return slots;
}

Geometry compute_geometry(const TopicConfig& config, bool cursor_object, bool owner_objects) noexcept {
    Geometry g{};
    g.ring_capacity = round_capacity(config.capacity);
    g.index_entries = index_entries_for(g.ring_capacity);
    g.producer_offset = kPageSize;  // page 0: SegmentHeader
    const uint64_t before_sequences = sizeof(ProducerRegionHead) + sizeof(ProducerSlot) * config.max_producers +
                                      sizeof(IndexEntry) * g.index_entries;
    g.sequence_offset = g.producer_offset + ((before_sequences + kCacheLine - 1) & ~uint64_t{kCacheLine - 1});
    g.sequence_entries = config.max_producers * layout::kSequenceEntriesPerProducer;
    g.producer_size = page_align(g.sequence_offset - g.producer_offset + sizeof(SequenceEntry) * g.sequence_entries);
    g.consumer_size = page_align(sizeof(ConsumerRegionHead) + sizeof(ConsumerSlot) * config.max_consumers);
    if (cursor_object && owner_objects) {
        // 1.9: the cursor object keeps the head; slots and group blocks live in objects of their own.
        g.consumer_offset = kPageSize;
        g.consumer_size = page_align(sizeof(ConsumerRegionHead));
        g.cursor_object_size = g.consumer_offset + g.consumer_size;
        g.max_groups = layout::kDefaultMaxGroups;
        g.owner_slots = owner_slots_for(config.max_consumers);
        g.owner_objects = (config.max_consumers + g.owner_slots - 1) / g.owner_slots;
        g.owner_object_size = kPageSize + page_align(uint64_t(g.owner_slots) * sizeof(ConsumerSlot));
        g.group_object_size = kPageSize + page_align(sizeof(layout::GroupBlock));
        g.ring_offset = g.producer_offset + g.producer_size;
    } else if (cursor_object) {
        g.consumer_offset = kPageSize;  // page 0 of the cursor object: CursorObjectHeader
        g.max_groups = layout::kDefaultMaxGroups;
        g.group_offset = g.consumer_offset + g.consumer_size;
        g.cursor_object_size = g.group_offset + page_align(sizeof(layout::GroupBlock) * g.max_groups);
        g.ring_offset = g.producer_offset + g.producer_size;
    } else {
        g.consumer_offset = g.producer_offset + g.producer_size;
        g.ring_offset = g.consumer_offset + g.consumer_size;
    }
    g.total = g.ring_offset + g.ring_capacity;
    return g;
}

Segment::Segment(Segment&& other) noexcept : m_(std::exchange(other.m_, {})) {}

Segment& Segment::operator=(Segment&& other) noexcept {
    if (this != &other) {
        unmap();
        m_ = std::exchange(other.m_, {});
    }
    return *this;
}

Segment::~Segment() { unmap(); }

void Segment::unmap() noexcept {
    if (m_.base != nullptr) munmap(m_.base, m_.size);
    if (m_.cursor_base != nullptr) munmap(m_.cursor_base, m_.cursor_size);
    for (std::byte* o : m_.owners)
        if (o != nullptr) munmap(o, m_.owner_size);
    for (std::byte* g : m_.group_objects)
        if (g != nullptr) munmap(g, m_.group_size);
    m_ = {};
}

std::string Segment::topic() const {
    return std::string(m_.header->topic, strnlen(m_.header->topic, sizeof(m_.header->topic)));
}

std::string Segment::bus_dir() const {
    return std::string(m_.header->bus_dir, strnlen(m_.header->bus_dir, sizeof(m_.header->bus_dir)));
}

Status Segment::require_timestamps(std::string_view what) const {
    if (!untimed()) return ok_status();
    return make_error(Errc::invalid_argument, "topic '" + topic() + "' carries no timestamps (timestamps = false): " + std::string(what));
}

TopicConfig Segment::config() const noexcept {
    const HeaderFacts& f = m_.facts;
    TopicConfig c;
    c.capacity = f.capacity;
    c.max_message = f.max_message;
    c.on_full = live_on_full();
    c.max_producers = f.max_producers;
    c.max_consumers = f.max_consumers;
    c.unblock_timeout = duration_from_ns(unblock_timeout_ns());
    c.expire_detached = duration_from_ns(expire_detached_ns());
    c.single_producer = f.single_producer;
    c.timestamps = !f.untimed;
    c.ttl = duration_from_ns(f.default_ttl_ns);
    return c;
}

// The live settings are plain header fields written by shmbusd with atomic stores; read with
// atomic loads. relaxed: each is a value on its own, acted on later (a full ring, a tick), and
// nothing else is published with it.
OnFull Segment::live_on_full() const noexcept {
    const uint32_t v = __atomic_load_n(&m_.header->on_full, __ATOMIC_RELAXED);
    const bool switchable = m_.facts.on_full == OnFull::block || m_.facts.on_full == OnFull::fail;
    if (switchable && (v == uint32_t(OnFull::block) || v == uint32_t(OnFull::fail))) return OnFull(v);
    return m_.facts.on_full;  // overwrite stays overwrite; anything else is not shmbusd's
}

uint64_t Segment::unblock_timeout_ns() const noexcept {
    const uint64_t v = __atomic_load_n(&m_.header->unblock_timeout_ns, __ATOMIC_RELAXED);
    // Switched on or off only while no publisher is registered (shmbusd checks): a value whose
    // zeroness differs from what this process attached with is not one it may act on.
    return (v == 0) == (m_.facts.unblock_timeout_ns == 0) ? v : m_.facts.unblock_timeout_ns;
}

uint64_t Segment::expire_detached_ns() const noexcept { return __atomic_load_n(&m_.header->expire_detached_ns, __ATOMIC_RELAXED); }

void Segment::set_live_settings(OnFull on_full, uint64_t unblock_timeout_ns, uint64_t expire_detached_ns) noexcept {
    m_.facts.unblock_timeout_ns = unblock_timeout_ns;
    m_.facts.expire_detached_ns = expire_detached_ns;
    __atomic_store_n(&m_.header->on_full, uint32_t(on_full), __ATOMIC_RELAXED);
    __atomic_store_n(&m_.header->unblock_timeout_ns, unblock_timeout_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&m_.header->expire_detached_ns, expire_detached_ns, __ATOMIC_RELAXED);
}

// Maps `size` bytes of `fd` with the access its descriptor allows (a read-only descriptor gives a
// read-only mapping). `populate` (MAP_POPULATE): the page tables are filled now, so no publish or
// receive ever takes a page fault; shmbusd and statistics readers, which touch few pages, skip it.
Result<std::byte*> map_object(int fd, uint64_t size, bool& writable, bool populate) noexcept {
    const int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return make_error(Errc::io_error, std::string("fcntl: ") + strerror(errno));
    writable = (flags & O_ACCMODE) == O_RDWR;
    void* base = mmap(nullptr, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0),
                      fd, 0);
    if (base == MAP_FAILED) return make_error(Errc::io_error, std::string("mmap: ") + strerror(errno));
    return static_cast<std::byte*>(base);
}

Result<uint64_t> file_size(int fd) noexcept {
    struct stat st{};
    if (fstat(fd, &st) != 0) return make_error(Errc::io_error, std::string("fstat: ") + strerror(errno));
    if (!S_ISREG(st.st_mode)) return make_error(Errc::bad_magic, "not a shmbus segment: not a regular file");
    return uint64_t(st.st_size);
}

Result<Segment> Segment::attach(int fd, int cursor_fd, Populate populate, Companions companions) noexcept {
    auto size = file_size(fd);
    if (!size) return size.error();
    if (*size < kPageSize)
        return make_error(Errc::bad_magic, "not a shmbus segment: only " + std::to_string(*size) + " bytes");
    // The header is checked before anything is mapped: a huge sparse file with a bad header is
    // refused here, not after MAP_POPULATE has filled /dev/shm with its pages.
    // The regions are then bound from this checked copy, so a peer rewriting the mapped header
    // afterwards cannot move them.
    SegmentHeader copy;
    if (pread(fd, &copy, sizeof copy, 0) != ssize_t(sizeof copy))
        return make_error(Errc::bad_magic, "not a shmbus segment: its header cannot be read");
    auto facts = check_header(copy, *size);
    if (!facts) return facts.error();
    Segment s;
    auto base = map_object(fd, *size, s.m_.segment_writable, populate == Populate::yes);
    if (!base) return base.error();
    s.m_.base = base.value();
    s.m_.size = *size;
    if (copy.cursor_object_size != 0) {
        if (auto st = s.attach_cursor_object(copy, cursor_fd, populate); !st) return st.error();
    } else {
        s.m_.cursors_writable = s.m_.segment_writable;
    }
    if (facts->owner_objects != 0)
        if (auto st = s.attach_companions(copy, *facts, companions, populate); !st) return st.error();
    s.bind_regions(copy, facts.value());
    return s;
}

Status Segment::attach_companions(const SegmentHeader& h, const HeaderFacts& facts, Companions companions,
                                  Populate populate) noexcept {
    auto corrupt = [](const std::string& what) { return make_error(Errc::corrupt_segment, "corrupt segment: " + what); };
    if (companions.size() != std::size_t(facts.owner_objects) + facts.max_groups)
        return corrupt("its owner and group objects are missing (" + std::to_string(companions.size()) + " descriptors of " +
                       std::to_string(facts.owner_objects + facts.max_groups) + ")");
    m_.owner_size = facts.owner_object_size;
    m_.group_size = facts.group_object_size;
    m_.owner_shift = uint32_t(__builtin_ctz(facts.owner_slots));
    auto map_one = [&](int fd, uint64_t size, uint64_t magic, uint32_t index, std::byte*& base, bool& writable) -> Status {
        if (fd < 0) return corrupt("an owner or group object is missing");
        auto fsize = file_size(fd);
        if (!fsize) return fsize.error();
        if (*fsize != size) return corrupt("an owner or group object's size does not match the header");
        OwnerObjectHeader o;
        if (pread(fd, &o, sizeof o, 0) != ssize_t(sizeof o)) return corrupt("an owner or group object's header cannot be read");
        if (o.magic != magic || o.index != index || o.bus_id != h.bus_id || o.created_ns != h.created_ns ||
            std::memcmp(o.topic, h.topic, sizeof o.topic) != 0)
            return corrupt("an owner or group object belongs to another topic, or another place in it");
        auto mapped = map_object(fd, size, writable, populate == Populate::yes);
        if (!mapped) return mapped.error();
        base = mapped.value();
        return ok_status();
    };
    for (uint32_t k = 0; k < facts.owner_objects; ++k) {
        bool writable = false;
        if (auto st = map_one(companions[k], facts.owner_object_size, kOwnerObjectMagic, k, m_.owners[k], writable); !st)
            return st;
        if (writable) m_.owners_writable |= uint64_t(1) << k;
    }
    for (uint32_t i = 0; i < facts.max_groups; ++i) {
        bool writable = false;
        if (auto st = map_one(companions[facts.owner_objects + i], facts.group_object_size, kGroupObjectMagic, i, m_.group_objects[i], writable); !st)
            return st;
        if (writable) m_.groups_writable |= uint32_t(1) << i;
    }
    return ok_status();
}

Status Segment::attach_cursor_object(const SegmentHeader& h, int cursor_fd, Populate populate) noexcept {
    auto corrupt = [](const std::string& what) { return make_error(Errc::corrupt_segment, "corrupt segment: " + what); };
    if (cursor_fd < 0) return corrupt("its cursor object is missing");
    auto size = file_size(cursor_fd);
    if (!size) return size.error();
    if (*size != h.cursor_object_size) return corrupt("the cursor object's size does not match the header");
    CursorObjectHeader c;
    if (pread(cursor_fd, &c, sizeof c, 0) != ssize_t(sizeof c)) return corrupt("the cursor object's header cannot be read");
    if (c.magic != kCursorObjectMagic || c.bus_id != h.bus_id || c.created_ns != h.created_ns ||
        std::memcmp(c.topic, h.topic, sizeof c.topic) != 0)
        return corrupt("the cursor object belongs to another topic");
    auto base = map_object(cursor_fd, *size, m_.cursors_writable, populate == Populate::yes);
    if (!base) return base.error();
    m_.cursor_base = base.value();
    m_.cursor_size = *size;
    return ok_status();
}

namespace {

// A slot stride from the header: 0 means a 1.0/1.1 segment; otherwise whole cache lines, at least
// what 1.1 had (every reader may touch those fields) and at most a page.
uint32_t stride_or_legacy(uint32_t stride, uint32_t legacy) noexcept { return stride == 0 ? legacy : stride; }
bool stride_ok(uint32_t stride, uint32_t legacy) noexcept {
    return stride % kCacheLine == 0 && stride >= legacy && stride <= kPageSize;
}

}  // namespace

// Long on purpose: one check per header field, in the order of layout/segment_header.h, so that a
// reader can hold the two side by side; the bounds it derives are derived here once, for attach()
// and gc alike.
Result<HeaderFacts> check_header(const SegmentHeader& h, uint64_t size) noexcept {
    if (size < kPageSize) return make_error(Errc::bad_magic, "not a shmbus segment: only " + std::to_string(size) + " bytes");
    if (h.magic != kSegmentMagic) return make_error(Errc::bad_magic, "not a shmbus segment (wrong magic)");
    if (h.version_major != kVersionMajor)
        return make_error(Errc::bad_version, "segment layout version " + std::to_string(h.version_major) + "." +
                                                 std::to_string(h.version_minor) + " is not supported (this library reads " +
                                                 std::to_string(kVersionMajor) + ".x)");
    // SYNC: pairs with the release store of `ready` in Segment::format().
    if (h.ready.load(std::memory_order_acquire) != kReadyMagic)
        return make_error(Errc::corrupt_segment, "segment is not ready (creation never finished)");
    auto corrupt = [](const char* what) { return make_error(Errc::corrupt_segment, std::string("corrupt segment: ") + what); };
    if (h.header_size != sizeof(SegmentHeader)) return corrupt("header size");
    if (h.segment_size != size) return corrupt("segment size does not match the mapping");
    if (h.ring_offset > size || size - h.ring_offset != h.ring_capacity) return corrupt("the ring does not end the segment");
    HeaderFacts f{};
    f.capacity = h.ring_capacity;
    if (!is_pow2(f.capacity) || f.capacity < kMinCapacity || f.capacity > kMaxCapacity) return corrupt("ring capacity");
    if (h.max_message == 0 || h.max_message > max_message_for(f.capacity)) return corrupt("max_message");
    if (h.on_full > uint32_t(OnFull::archive) || (h.on_full == uint32_t(OnFull::archive) && h.version_minor < kArchiveSinceMinor))
        return corrupt("on-full policy");
    if (h.max_producers == 0 || h.max_producers > kMaxSlots || h.max_consumers == 0 || h.max_consumers > kMaxSlots)
        return corrupt("slot counts");
    if (h.index_entries == 0 || !is_pow2(h.index_entries) || h.index_entries > f.capacity / kRecordAlignment)
        return corrupt("index entries");
    f.producer_stride = stride_or_legacy(h.producer_slot_stride, kLegacyProducerSlotStride);
    f.consumer_stride = stride_or_legacy(h.consumer_slot_stride, kLegacyConsumerSlotStride);
    if (!stride_ok(f.producer_stride, kLegacyProducerSlotStride) || !stride_ok(f.consumer_stride, kLegacyConsumerSlotStride))
        return corrupt("slot strides");
    auto region_ok = [&](uint64_t off, uint64_t len, uint64_t need, uint64_t space) {
        return off % kPageSize == 0 && off >= kPageSize && len >= need && off <= space && len <= space - off;
    };
    if (!region_ok(h.producer_offset, h.producer_size,
                   sizeof(ProducerRegionHead) + uint64_t(f.producer_stride) * h.max_producers +
                       sizeof(IndexEntry) * h.index_entries, size))
        return corrupt("producer region bounds");
    // The consumer region lies in the cursor object when there is one (whose size attach() checks
    // against this header), in the segment otherwise.
    const uint64_t consumer_space = h.cursor_object_size != 0 ? h.cursor_object_size : size;
    if (consumer_space > kMaxCapacity) return corrupt("cursor object size");
    // 1.9: the slots are in owner objects, and the cursor object holds the region's head alone.
    f.owner_objects = h.version_minor >= layout::kOwnerObjectsSinceMinor ? h.owner_objects : 0;
    const uint64_t slots_here = f.owner_objects != 0 ? 0 : uint64_t(f.consumer_stride) * h.max_consumers;
    if (!region_ok(h.consumer_offset, h.consumer_size, sizeof(ConsumerRegionHead) + slots_here, consumer_space))
        return corrupt("consumer region bounds");
    if (!region_ok(h.ring_offset, f.capacity, f.capacity, size)) return corrupt("ring bounds");
    f.max_groups = h.version_minor >= layout::kGroupsSinceMinor ? h.max_groups : 0;
    if (f.owner_objects != 0) {
        f.owner_slots = h.owner_slots;
        f.owner_object_size = h.owner_object_size;
        f.group_object_size = h.group_object_size;
        if (h.cursor_object_size == 0 || f.owner_objects > layout::kMaxOwnerObjects || !is_pow2(f.owner_slots) ||
            uint64_t(f.owner_objects) * f.owner_slots < h.max_consumers ||
            uint64_t(f.owner_objects - 1) * f.owner_slots >= h.max_consumers ||
            f.owner_object_size != kPageSize + page_align(uint64_t(f.owner_slots) * f.consumer_stride))
            return corrupt("owner objects");
        if (f.max_groups > layout::kMaxGroupObjects || h.group_offset != 0 ||
            (f.max_groups != 0 && f.group_object_size != kPageSize + page_align(sizeof(layout::GroupBlock))))
            return corrupt("group objects");
    } else if (f.max_groups != 0) {  // 1.4: the group region, in the cursor object. Older segments leave these bytes zero.
        if (h.cursor_object_size == 0 || f.max_groups > kMaxSlots) return corrupt("group count");
        if (!region_ok(h.group_offset, uint64_t(f.max_groups) * sizeof(layout::GroupBlock),
                       uint64_t(f.max_groups) * sizeof(layout::GroupBlock), consumer_space) ||
            (h.group_offset < h.consumer_offset + h.consumer_size && h.consumer_offset < h.group_offset + uint64_t(f.max_groups) * sizeof(layout::GroupBlock)))
            return corrupt("group region bounds");
    }
    // 1.6: the sequence table, inside the producer region after the index. Older segments: none.
    f.sequence_entries = h.version_minor >= layout::kSequencesSinceMinor ? h.sequence_entries : 0;
    if (f.sequence_entries != 0) {
        const uint64_t index_end = h.producer_offset + sizeof(ProducerRegionHead) + uint64_t(f.producer_stride) * h.max_producers +
                                   sizeof(IndexEntry) * h.index_entries;
        if (f.sequence_entries > kMaxSlots * layout::kSequenceEntriesPerProducer || h.sequence_offset % kCacheLine != 0 ||
            h.sequence_offset < index_end || h.sequence_offset > h.producer_offset + h.producer_size ||
            h.sequence_offset + uint64_t(f.sequence_entries) * sizeof(SequenceEntry) > h.producer_offset + h.producer_size)
            return corrupt("sequence table bounds");
    }
    // 1.8: older segments hold zero there (any number of producers).
    if (h.version_minor >= layout::kSingleProducerSinceMinor && h.single_producer > 1) return corrupt("single-producer flag");
    f.single_producer = h.version_minor >= layout::kSingleProducerSinceMinor && h.single_producer == 1;
    f.in_place_reads = h.version_minor >= layout::kInPlaceReadsSinceMinor;
    // 1.10: older segments hold zero there (timed).
    if (h.version_minor >= layout::kUntimedSinceMinor && h.untimed > 1) return corrupt("untimed flag");
    f.untimed = h.version_minor >= layout::kUntimedSinceMinor && h.untimed == 1;
    // 1.11: older segments hold zero there (no default TTL).
    f.default_ttl_ns = h.version_minor >= layout::kMetaSinceMinor ? h.default_ttl_ns : 0;
    if (h.topic[kMaxTopicName] != '\0') return corrupt("topic name");
    if (h.bus_dir[sizeof h.bus_dir - 1] != '\0') return corrupt("bus directory");
    f.max_message = h.max_message;
    f.max_producers = h.max_producers;
    f.max_consumers = h.max_consumers;
    f.index_entries = h.index_entries;
    f.on_full = OnFull(h.on_full);
    f.unblock_timeout_ns = h.unblock_timeout_ns;
    f.expire_detached_ns = h.expire_detached_ns;
    return f;
}

void Segment::bind_regions(const SegmentHeader& h, const HeaderFacts& facts) noexcept {
    m_.facts = facts;
    m_.header = reinterpret_cast<SegmentHeader*>(m_.base);
    m_.producers = reinterpret_cast<ProducerRegionHead*>(m_.base + h.producer_offset);
    m_.producer_slots = m_.base + h.producer_offset + sizeof(ProducerRegionHead);
    m_.index = reinterpret_cast<IndexEntry*>(m_.producer_slots + std::size_t(facts.producer_stride) * facts.max_producers);
    std::byte* consumer_base = m_.cursor_base != nullptr ? m_.cursor_base : m_.base;
    m_.consumers = reinterpret_cast<ConsumerRegionHead*>(consumer_base + h.consumer_offset);
    m_.consumer_slots = consumer_base + h.consumer_offset + sizeof(ConsumerRegionHead);  // without owner objects
    m_.groups = facts.max_groups != 0 && facts.owner_objects == 0 ? reinterpret_cast<layout::GroupBlock*>(consumer_base + h.group_offset)
                                                                   : nullptr;
    m_.sequences = facts.sequence_entries != 0 ? reinterpret_cast<SequenceEntry*>(m_.base + h.sequence_offset) : nullptr;
    m_.ring = m_.base + h.ring_offset;
    m_.recovery = reinterpret_cast<RecoveryCounters*>(m_.base + kRecoveryCountersOffset);
}

}  // namespace shmbus::detail
