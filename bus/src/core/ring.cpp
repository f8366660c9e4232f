#include "core/ring.h"

#include <string>

namespace shmbus::detail {

namespace {
constexpr int kResolveAttempts = 64;  // each retry means producers lapped us mid-scan
}

std::optional<Boundary> Ring::oldest_boundary(uint64_t floor) const noexcept {
    for (int attempt = 0; attempt < kResolveAttempts; ++attempt) {
        const uint64_t tail = tail_position();
        const uint64_t lo = std::max(floor, tail > cap_ ? tail - cap_ : 0);
        if (lo == 0) return Boundary{0, seg_->first_id()};  // nothing was ever overwritten: the log starts at 0
        std::optional<Boundary> best;
        for (uint32_t i = 0; i < seg_->index_entries(); ++i) {
            auto b = read_boundary(i);
            if (b && b->position >= lo && b->position <= tail && (!best || b->position < best->position)) best = b;
        }
        if (!best) return std::nullopt;
        // SYNC: acquire fence orders the index reads above before the tail load; pairs with the
        // 16-byte CAS (a full barrier) by which a producer claims, and then overwrites, the bytes.
        std::atomic_thread_fence(std::memory_order_acquire);
        if (tail_position() <= best->position + cap_) return best;  // still whole after the scan
    }
    return std::nullopt;
}

std::optional<Boundary> Ring::boundary_before(uint64_t floor, uint64_t id) const noexcept {
    auto oldest = oldest_boundary(floor);
    if (!oldest || oldest->id > id) return oldest;
    Boundary best = *oldest;
    const uint64_t tail = tail_position();
    for (uint32_t i = 0; i < seg_->index_entries(); ++i) {
        auto b = read_boundary(i);
        if (b && b->position >= best.position && b->position <= tail && b->id <= id && b->id >= best.id) best = *b;
    }
    return best;
}

Result<Ring::Start> Ring::resolve_start(StartFrom from, uint64_t id, bool gating) const noexcept {
    const TailSnapshot tail = read_tail();
    const uint64_t floor = gating ? gating_join_floor(tail.position, cap_) : 0;
    const Start latest{tail.position, tail.next_id, 0, tail.next_id};
    if (from == StartFrom::latest) return latest;
    if (from == StartFrom::id && id > tail.next_id)
        return make_error(Errc::invalid_argument, "message id " + std::to_string(id) +
                                                      " has not been published yet (next id is " +
                                                      std::to_string(tail.next_id) + ")");
    for (int attempt = 0; attempt < kResolveAttempts; ++attempt) {
        auto b = from == StartFrom::id ? boundary_before(floor, id) : oldest_boundary(floor);
        if (!b) return latest;  // nothing indexed is still whole: only new messages remain
        if (from == StartFrom::earliest) return Start{b->position, b->id, 0, b->id};
        if (b->id >= id) return Start{b->position, b->id, b->id - id, b->id};
        // Walk from the boundary to the asked-for id; a record not yet committed ends the walk
        // early, and the subscriber steps over the ids below `id` as they arrive.
        uint64_t pos = b->position;
        uint64_t expected = b->id;
        bool corrupt = false;
        while (expected < id) {
            RecordInfo r{};
            const RecordCheck c = inspect(pos, r);
            if (c == RecordCheck::not_ready) break;
            if (c == RecordCheck::corrupt) { corrupt = true; break; }
            if (r.type != uint16_t(layout::RecordType::padding)) {
                if (r.id != expected) { corrupt = true; break; }
                expected = r.id + 1;
            }
            pos += r.size;
        }
        // SYNC: acquire fence orders the walk's reads before the tail load; pairs with the 16-byte
        // CAS by which a producer claims the bytes it overwrites (as in oldest_boundary).
        std::atomic_thread_fence(std::memory_order_acquire);
        if (tail_position() > b->position + cap_) continue;  // lapped during the walk: again
        if (corrupt) return make_error(Errc::corrupt_segment, "corrupt record while seeking to id " + std::to_string(id));
        return Start{pos, expected, 0, id};
    }
    return latest;
}

}  // namespace shmbus::detail
