#include "supervisor/sequences.h"
#include "record/record_view.h"

#include <algorithm>
#include <cstring>

#include "core/ring.h"

namespace shmbus::detail {

using layout::SequenceEntry;
using layout::SequenceState;

namespace {

std::string_view entry_name(const SequenceEntry& e) noexcept {
    return {e.name, strnlen(e.name, sizeof e.name)};
}

bool named(const SequenceEntry& e) noexcept {
    // SYNC: acquire pairs with the release store of state in hold_sequence_entry (the name with it).
    return SequenceState(e.state.load(std::memory_order_acquire)) == SequenceState::named;
}

// The sequence the record at `position` was committed with under `name`, or 0 if it is not a
// committed message of that producer (never committed, sealed as a skip record, or overwritten).
uint64_t committed_sequence_at(const Segment& seg, uint64_t position, std::string_view name) noexcept {
    if (position % layout::kRecordAlignment != 0) return 0;  // written by a process we do not trust
    const Ring ring(seg);
    RecordInfo r{};
    if (ring.inspect(position, r) != RecordCheck::ready || r.type != uint16_t(layout::RecordType::data)) return 0;
    const StampView stamp = read_stamp(record_body(ring.payload_at(position), r.length, r.flags), r.flags);
    return stamp.producer == name ? stamp.sequence : 0;
}

}  // namespace

std::optional<uint32_t> find_sequence_entry(const Segment& seg, std::string_view name) noexcept {
    for (uint32_t i = 0; i < seg.sequence_entries(); ++i) {
        const auto& e = seg.sequence_entry(i);
        if (named(e) && entry_name(e) == name) return i;
    }
    return std::nullopt;
}

uint32_t sequence_holder(const Segment& seg, uint32_t i) noexcept { return seg.sequence_entry(i).holder_slot; }

bool settle_pending(const Segment& seg, uint32_t i) noexcept {
    auto& e = seg.sequence_entry(i);
    // SYNC: acquire pairs with the holder's release store of pending_sequence (its position with it).
    const uint64_t pending = e.pending_sequence.load(std::memory_order_acquire);
    if (pending == 0) return false;
    const uint64_t tagged = e.pending_position.load(std::memory_order_relaxed);  // relaxed: published with pending
    bool changed = false;
    if (tagged != 0 && committed_sequence_at(seg, tagged - 1, entry_name(e)) == pending &&
        pending > e.committed.load(std::memory_order_relaxed)) {  // relaxed: the holder is gone, only we write
        // SYNC: release pairs with the acquire load of committed by the next holder (PublisherCore).
        e.committed.store(pending, std::memory_order_release);
        changed = true;
    }
    e.pending_sequence.store(0, std::memory_order_release);
    return changed;
}

namespace {

// A free entry, else the unheld one let go longest ago (its name is then forgotten).
std::optional<uint32_t> entry_to_reuse(const Segment& seg) noexcept {
    std::optional<uint32_t> oldest;
    for (uint32_t i = 0; i < seg.sequence_entries(); ++i) {
        const auto& e = seg.sequence_entry(i);
        if (!named(e)) return i;
        if (e.holder_slot == 0 && (!oldest || e.released_ns < seg.sequence_entry(*oldest).released_ns)) oldest = i;
    }
    return oldest;
}

}  // namespace

Result<uint32_t> hold_sequence_entry(const Segment& seg, std::string_view name, uint32_t slot) noexcept {
    std::optional<uint32_t> chosen = find_sequence_entry(seg, name);
    if (!chosen) {
        chosen = entry_to_reuse(seg);
        if (!chosen)
            return make_error(Errc::no_free_slot, "every one of the topic's " + std::to_string(seg.sequence_entries()) +
                                                      " producer names is held by a live publisher");
        auto& e = seg.sequence_entry(*chosen);
        e.state.store(uint32_t(SequenceState::free), std::memory_order_relaxed);  // relaxed: republished below
        std::memset(e.name, 0, sizeof e.name);
        std::memcpy(e.name, name.data(), std::min(name.size(), layout::kMaxProducerName));
        e.committed.store(0, std::memory_order_relaxed);
        e.pending_sequence.store(0, std::memory_order_relaxed);
        e.pending_position.store(0, std::memory_order_relaxed);
    }
    auto& e = seg.sequence_entry(*chosen);
    settle_pending(seg, *chosen);  // a holder that died before shmbusd could settle it
    e.holder_slot = slot + 1;
    // SYNC: release publishes the name and the cleared words; pairs with the acquire load in named().
    e.state.store(uint32_t(SequenceState::named), std::memory_order_release);
    return *chosen;
}

std::vector<uint32_t> release_sequence_entries(const Segment& seg, uint32_t slot, uint64_t now_wall_ns) {
    std::vector<uint32_t> settled_committed;
    for (uint32_t i = 0; i < seg.sequence_entries(); ++i) {
        auto& e = seg.sequence_entry(i);
        if (e.holder_slot != slot + 1) continue;
        if (settle_pending(seg, i)) settled_committed.push_back(i);
        e.released_ns = now_wall_ns;
        e.holder_slot = 0;
    }
    return settled_committed;
}

}  // namespace shmbus::detail
