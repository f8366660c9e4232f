// Segment::format and what only formatting needs: run by shmbusd when it creates a topic.
#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "core/segment.h"
#include "core/wall_clock.h"
#include "shmbus/layout/cursor_object.h"

namespace shmbus::detail {
namespace {

using namespace shmbus::layout;

// Reserves `size` bytes of `fd` now: tmpfs answers ENOSPC here instead of raising SIGBUS in some
// publisher the first time it touches a page that cannot be backed.
Status reserve(int fd, uint64_t size, std::string_view topic, uint64_t total) noexcept {
    const int rc = posix_fallocate(fd, 0, off_t(size));
    if (rc == 0) return ok_status();
    if (rc == ENOSPC || rc == ENOMEM || rc == EFBIG)
        return make_error(Errc::no_space, "not enough shared memory for topic '" + std::string(topic) + "' (" +
                                              std::to_string(total) + " bytes): /dev/shm is full or too small");
    return make_error(Errc::io_error, std::string("posix_fallocate: ") + strerror(rc));
}

}  // namespace

Status Segment::reserve_pages(int fd, int cursor_fd, std::string_view topic, const TopicConfig& config,
                              bool owner_objects) noexcept {
    const Geometry g = compute_geometry(config, cursor_fd >= 0, owner_objects);
    const uint64_t total = g.total + g.cursor_object_size;
    if (auto st = reserve(fd, g.total, topic, total); !st) return st;
    if (cursor_fd >= 0) return reserve(cursor_fd, g.cursor_object_size, topic, total);
    return ok_status();
}

Result<Segment> Segment::format(int fd, std::string_view topic, const TopicConfig& config, uint64_t bus_id,
                                std::string_view bus_dir, int cursor_fd, Pages pages, uint64_t first_id,
                                Companions companions) noexcept {
    if (auto st = validate_config(config); !st) return st.error();
    const bool owned = cursor_fd >= 0 && !companions.empty();
    const Geometry g = compute_geometry(config, cursor_fd >= 0, owned);
    if (owned && companions.size() != std::size_t(g.owner_objects) + g.max_groups)
        return make_error(Errc::invalid_argument, "formatting a segment needs " + std::to_string(g.owner_objects) +
                                                      " owner objects and " + std::to_string(g.max_groups) + " group objects");
    if (pages == Pages::reserve)
        if (auto st = reserve_pages(fd, cursor_fd, topic, config, owned); !st) return st.error();
    Segment s;
    auto base = map_object(fd, g.total, s.m_.segment_writable, false);
    if (!base) return base.error();
    s.m_.base = base.value();
    s.m_.size = g.total;
    if (cursor_fd >= 0) {
        auto cursors = map_object(cursor_fd, g.cursor_object_size, s.m_.cursors_writable, false);
        if (!cursors) return cursors.error();
        s.m_.cursor_base = cursors.value();
        s.m_.cursor_size = g.cursor_object_size;
    } else {
        s.m_.cursors_writable = s.m_.segment_writable;
    }
    if (!s.m_.segment_writable || !s.m_.cursors_writable)
        return make_error(Errc::permission_denied, "formatting a segment needs writable descriptors");
    if (owned)
        if (auto st = s.format_companions(g, companions, topic); !st) return st.error();
    // Everything before the ring is zeroed (a reused descriptor stays honest); the ring is not
    // touched: posix_fallocate gave zeroed pages, and writing a 2 GiB ring here would cost seconds.
    std::memset(s.m_.base, 0, g.ring_offset);
    auto* h = new (s.m_.base) SegmentHeader{};
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
    h->producer_slot_stride = sizeof(ProducerSlot);
    h->consumer_slot_stride = sizeof(ConsumerSlot);
    h->cursor_object_size = g.cursor_object_size;
    h->max_groups = g.max_groups;
    h->group_offset = g.group_offset;
    h->sequence_entries = g.sequence_entries;
    h->sequence_offset = g.sequence_offset;
    h->first_id = first_id;
    h->single_producer = config.single_producer ? 1 : 0;
    h->untimed = config.timestamps ? 0 : 1;
    h->default_ttl_ns = uint64_t(config.ttl.count());
    h->owner_objects = g.owner_objects;
    h->owner_slots = g.owner_slots;
    h->owner_object_size = g.owner_object_size;
    h->group_object_size = g.group_object_size;
    // Plain stores before `ready`: nobody maps the segment before it is ready.
    reinterpret_cast<ProducerRegionHead*>(s.m_.base + g.producer_offset)->tail.next_id = first_id;
    // A directory that does not fit is not recorded: gc then never takes this segment for a dead bus's.
    if (!bus_dir.empty() && bus_dir.size() < sizeof h->bus_dir) std::memcpy(h->bus_dir, bus_dir.data(), bus_dir.size());
    if (s.m_.cursor_base != nullptr) {
        std::memset(s.m_.cursor_base, 0, g.cursor_object_size);
        auto* c = new (s.m_.cursor_base) CursorObjectHeader{};
        c->magic = kCursorObjectMagic;
        c->bus_id = h->bus_id;
        c->created_ns = h->created_ns;
        std::memcpy(c->topic, h->topic, sizeof c->topic);
    }
    // The companions' headers name this incarnation of the topic (created_ns is known only now).
    auto stamp = [&](std::byte* base, uint64_t magic, uint32_t index) {
        auto* o = new (base) OwnerObjectHeader{};
        o->magic = magic;
        o->bus_id = h->bus_id;
        o->created_ns = h->created_ns;
        o->index = index;
        std::memcpy(o->topic, h->topic, sizeof o->topic);
    };
    for (uint32_t k = 0; k < g.owner_objects; ++k) stamp(s.m_.owners[k], kOwnerObjectMagic, k);
    if (owned)
        for (uint32_t i = 0; i < g.max_groups; ++i) stamp(s.m_.group_objects[i], kGroupObjectMagic, i);
    // SYNC: pairs with the acquire load of `ready` in check_header(); every field above, the
    // cursor object's header included, is visible to whoever sees kReadyMagic.
    h->ready.store(kReadyMagic, std::memory_order_release);

    auto facts = check_header(*h, g.total);
    if (!facts) return facts.error();
    s.bind_regions(*h, facts.value());
    return s;
}

Status Segment::format_companions(const Geometry& g, Companions companions, std::string_view topic) noexcept {
    const uint64_t total = g.total + g.cursor_object_size;
    m_.owner_size = g.owner_object_size;
    m_.group_size = g.group_object_size;
    m_.owner_shift = uint32_t(__builtin_ctz(g.owner_slots));
    auto make = [&](int fd, uint64_t size, std::byte*& base, bool& writable) -> Status {
        if (auto st = reserve(fd, size, topic, total); !st) return st;
        auto mapped = map_object(fd, size, writable, false);
        if (!mapped) return mapped.error();
        base = mapped.value();
        if (!writable) return make_error(Errc::permission_denied, "formatting a segment needs writable descriptors");
        std::memset(base, 0, size);
        return ok_status();
    };
    for (uint32_t k = 0; k < g.owner_objects; ++k) {
        bool writable = false;
        if (auto st = make(companions[k], g.owner_object_size, m_.owners[k], writable); !st) return st;
        m_.owners_writable |= uint64_t(1) << k;
    }
    for (uint32_t i = 0; i < g.max_groups; ++i) {
        bool writable = false;
        if (auto st = make(companions[g.owner_objects + i], g.group_object_size, m_.group_objects[i], writable); !st) return st;
        m_.groups_writable |= uint32_t(1) << i;
    }
    return ok_status();
}

}  // namespace shmbus::detail
