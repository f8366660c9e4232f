#include "segment.h"
#include "wall_clock.h"

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

uint64_t round_capacity(uint64_t capacity) noexcept {
    uint64_t c = kMinCapacity;
    while (c < capacity && c < kMaxCapacity) c <<= 1;
    return c;
}

Geometry compute_geometry(const TopicConfig& config) noexcept {
    Geometry g{};
    g.ring_capacity = round_capacity(config.capacity);
    g.index_entries = index_entries_for(g.ring_capacity);
    g.producer_offset = kPageSize;  // page 0: SegmentHeader
    g.producer_size = page_align(sizeof(ProducerRegionHead) + sizeof(ProducerSlot) * config.max_producers +
                                 sizeof(IndexEntry) * g.index_entries);
    g.consumer_offset = g.producer_offset + g.producer_size;
    g.consumer_size = page_align(sizeof(ConsumerRegionHead) + sizeof(ConsumerSlot) * config.max_consumers);
    g.ring_offset = g.consumer_offset + g.consumer_size;
    g.total = g.ring_offset + g.ring_capacity;
    return g;
}

Segment::Segment(Segment&& other) noexcept { *this = std::move(other); }

Segment& Segment::operator=(Segment&& other) noexcept {
    if (this != &other) {
        unmap();
        base_ = std::exchange(other.base_, nullptr);
        size_ = other.size_;
        header_ = other.header_;
        producers_ = other.producers_;
        producer_slots_ = other.producer_slots_;
        index_ = other.index_;
        consumers_ = other.consumers_;
        consumer_slots_ = other.consumer_slots_;
        ring_ = other.ring_;
        capacity_ = other.capacity_;
        max_message_ = other.max_message_;
        max_producers_ = other.max_producers_;
        max_consumers_ = other.max_consumers_;
        index_entries_ = other.index_entries_;
        on_full_ = other.on_full_;
        unblock_timeout_ns_ = other.unblock_timeout_ns_;
        expire_detached_ns_ = other.expire_detached_ns_;
        recovery_ = other.recovery_;
    }
    return *this;
}

Segment::~Segment() { unmap(); }

void Segment::unmap() noexcept {
    if (base_ != nullptr) munmap(base_, size_);
    base_ = nullptr;
}

std::string Segment::topic() const {
    return std::string(header_->topic, strnlen(header_->topic, sizeof(header_->topic)));
}

std::string Segment::bus_dir() const {
    return std::string(header_->bus_dir, strnlen(header_->bus_dir, sizeof(header_->bus_dir)));
}

TopicConfig Segment::config() const noexcept {
    TopicConfig c;
    c.capacity = capacity_;
    c.max_message = max_message_;
    c.on_full = on_full_;
    c.max_producers = max_producers_;
    c.max_consumers = max_consumers_;
    c.unblock_timeout = duration_from_ns(unblock_timeout_ns_);
    c.expire_detached = duration_from_ns(expire_detached_ns_);
    return c;
}

Result<Segment> Segment::format(int fd, std::string_view topic, const TopicConfig& config, uint64_t bus_id,
                                std::string_view bus_dir) noexcept {
    if (auto st = validate_config(config); !st) return st.error();
    const Geometry g = compute_geometry(config);
    // posix_fallocate reserves the pages now: tmpfs answers ENOSPC here instead of raising
    // SIGBUS in some publisher the first time it touches a page that cannot be backed.
    if (int rc = posix_fallocate(fd, 0, off_t(g.total)); rc != 0) {
        if (rc == ENOSPC || rc == ENOMEM || rc == EFBIG)
            return make_error(Errc::no_space, "not enough shared memory for topic '" + std::string(topic) +
                                                  "' (" + std::to_string(g.total) +
                                                  " bytes): /dev/shm is full or too small");
        return make_error(Errc::io_error, std::string("posix_fallocate: ") + strerror(rc));
    }
    void* base = mmap(nullptr, g.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return make_error(Errc::io_error, std::string("mmap: ") + strerror(errno));
    std::memset(base, 0, g.total);  // fresh pages are zero already; this also faults them in

    auto* h = new (base) SegmentHeader{};
    h->magic = kSegmentMagic;
    h->version_major = kVersionMajor;
    h->version_minor = kVersionMinor;
    h->header_size = sizeof(SegmentHeader);
    h->segment_size = g.total;
    h->bus_id = bus_id;
    h->created_ns = WallClock::system_ns();
    h->producer_offset = g.producer_offset;
    h->producer_size = g.producer_size;
    h->consumer_offset = g.consumer_offset;
    h->consumer_size = g.consumer_size;
    h->ring_offset = g.ring_offset;
    h->ring_capacity = g.ring_capacity;
    h->max_message = config.max_message;
    h->on_full = uint32_t(config.on_full);
    h->max_producers = config.max_producers;
    h->max_consumers = config.max_consumers;
    h->index_entries = g.index_entries;
    std::memcpy(h->topic, topic.data(), std::min(topic.size(), kMaxTopicName));
    h->unblock_timeout_ns = uint64_t(config.unblock_timeout.count());
    h->expire_detached_ns = uint64_t(config.expire_detached.count());
    // A directory that does not fit is not recorded: gc then never takes this segment for a dead bus's.
    if (!bus_dir.empty() && bus_dir.size() < sizeof h->bus_dir) std::memcpy(h->bus_dir, bus_dir.data(), bus_dir.size());
    // SYNC: pairs with the acquire load of `ready` in bind_regions(); every field above is
    // visible to whoever sees kReadyMagic.
    h->ready.store(kReadyMagic, std::memory_order_release);

    Segment s;
    s.base_ = static_cast<std::byte*>(base);
    s.size_ = g.total;
    if (auto st = s.bind_regions(); !st) return st.error();
    return s;
}

Result<Segment> Segment::attach(int fd) noexcept {
    struct stat st{};
    if (fstat(fd, &st) != 0) return make_error(Errc::io_error, std::string("fstat: ") + strerror(errno));
    if (uint64_t(st.st_size) < kPageSize)
        return make_error(Errc::bad_magic, "not a shmbus segment: only " + std::to_string(st.st_size) + " bytes");
    // MAP_POPULATE: the page tables are filled now, so no publish or receive ever takes a page fault.
    void* base = mmap(nullptr, size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) return make_error(Errc::io_error, std::string("mmap: ") + strerror(errno));
    Segment s;
    s.base_ = static_cast<std::byte*>(base);
    s.size_ = uint64_t(st.st_size);
    if (auto r = s.bind_regions(); !r) return r.error();
    return s;
}

Status Segment::bind_regions() noexcept {
    auto* h = reinterpret_cast<SegmentHeader*>(base_);
    if (h->magic != kSegmentMagic) return make_error(Errc::bad_magic, "not a shmbus segment (wrong magic)");
    if (h->version_major != kVersionMajor)
        return make_error(Errc::bad_version, "segment layout version " + std::to_string(h->version_major) + "." +
                                                 std::to_string(h->version_minor) + " is not supported (this library reads " +
                                                 std::to_string(kVersionMajor) + ".x)");
    // SYNC: pairs with the release store of `ready` in format().
    if (h->ready.load(std::memory_order_acquire) != kReadyMagic)
        return make_error(Errc::corrupt_segment, "segment is not ready (creation never finished)");
    auto corrupt = [](const char* what) { return make_error(Errc::corrupt_segment, std::string("corrupt segment: ") + what); };
    if (h->header_size != sizeof(SegmentHeader)) return corrupt("header size");
    if (h->segment_size != size_) return corrupt("segment size does not match the mapping");
    const uint64_t cap = h->ring_capacity;
    if (!is_pow2(cap) || cap < kMinCapacity || cap > kMaxCapacity) return corrupt("ring capacity");
    if (h->max_message == 0 || h->max_message > max_message_for(cap)) return corrupt("max_message");
    if (h->on_full > uint32_t(OnFull::overwrite)) return corrupt("on-full policy");
    if (h->max_producers == 0 || h->max_producers > 4096 || h->max_consumers == 0 || h->max_consumers > 4096)
        return corrupt("slot counts");
    if (h->index_entries == 0 || !is_pow2(h->index_entries) || h->index_entries > cap / kRecordAlignment)
        return corrupt("index entries");
    auto region_ok = [&](uint64_t off, uint64_t len, uint64_t need) {
        return off % kPageSize == 0 && off >= kPageSize && len >= need && off <= size_ && len <= size_ - off;
    };
    if (!region_ok(h->producer_offset, h->producer_size,
                   sizeof(ProducerRegionHead) + sizeof(ProducerSlot) * h->max_producers + sizeof(IndexEntry) * h->index_entries))
        return corrupt("producer region bounds");
    if (!region_ok(h->consumer_offset, h->consumer_size, sizeof(ConsumerRegionHead) + sizeof(ConsumerSlot) * h->max_consumers))
        return corrupt("consumer region bounds");
    if (!region_ok(h->ring_offset, cap, cap)) return corrupt("ring bounds");
    if (h->topic[kMaxTopicName] != '\0') return corrupt("topic name");
    if (h->bus_dir[sizeof h->bus_dir - 1] != '\0') return corrupt("bus directory");

    header_ = h;
    producers_ = reinterpret_cast<ProducerRegionHead*>(base_ + h->producer_offset);
    producer_slots_ = reinterpret_cast<ProducerSlot*>(base_ + h->producer_offset + sizeof(ProducerRegionHead));
    index_ = reinterpret_cast<IndexEntry*>(reinterpret_cast<std::byte*>(producer_slots_) + sizeof(ProducerSlot) * h->max_producers);
    consumers_ = reinterpret_cast<ConsumerRegionHead*>(base_ + h->consumer_offset);
    consumer_slots_ = reinterpret_cast<ConsumerSlot*>(base_ + h->consumer_offset + sizeof(ConsumerRegionHead));
    ring_ = base_ + h->ring_offset;
    capacity_ = cap;
    max_message_ = h->max_message;
    max_producers_ = h->max_producers;
    max_consumers_ = h->max_consumers;
    index_entries_ = h->index_entries;
    on_full_ = OnFull(h->on_full);
    unblock_timeout_ns_ = h->unblock_timeout_ns;
    expire_detached_ns_ = h->expire_detached_ns;
    recovery_ = reinterpret_cast<RecoveryCounters*>(base_ + kRecoveryCountersOffset);
    return ok_status();
}

}  // namespace shmbus::detail
