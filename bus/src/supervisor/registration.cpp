#include "supervisor/registration.h"

#include <cstring>

#include "control/control.h"
#include "core/futex.h"

namespace shmbus::detail {

using layout::ConsumerSlot;
using layout::ProducerSlot;

namespace {

constexpr std::size_t kProducerSessionEnd = offsetof(ProducerSlot, owner_session) + sizeof(uint64_t);
constexpr std::size_t kConsumerSessionEnd = offsetof(ConsumerSlot, owner_session) + sizeof(uint64_t);

bool same_process(int32_t pid, uint64_t start_time, const Process& p) noexcept {
    return pid == p.pid && start_time == p.start_time;
}

// A slot's session names the connection, or nothing (0): then any connection of the process counts.
bool session_matches(uint64_t recorded, uint64_t session) noexcept { return recorded == 0 || recorded == session; }

}  // namespace

std::optional<uint32_t> find_durable(const Segment& seg, std::string_view name, OwnerMask scope) noexcept {
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        if (!in_scope(seg, i, scope)) continue;
        const auto& s = seg.consumer_slot(i);
        if (holds_durable_cursor(s) && field_name(s.name) == name) return i;
    }
    return std::nullopt;
}

std::optional<uint32_t> reserve_consumer_slot(const Segment& seg, OwnerMask scope) noexcept {
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        if (!in_scope(seg, i, scope)) continue;
        uint32_t expected = uint32_t(SlotState::free);
        // relaxed on success: producers ignore reserved slots, and the fields filled next are
        // published by the release (or seq_cst) store that attaches the slot.
        if (seg.consumer_slot(i).state.compare_exchange_strong(expected, uint32_t(SlotState::reserved),
                                                                std::memory_order_relaxed))
            return i;
    }
    return std::nullopt;
}

void stamp_consumer(const Segment& seg, uint32_t slot, const Registration& r) noexcept {
    auto& s = seg.consumer_slot(slot);
    s.pid = r.owner.pid;
    s.start_time = r.owner.start_time;
    s.owner_token = r.token;
    s.detached_ns = 0;
    if (seg.consumer_slot_has(kConsumerSessionEnd)) s.owner_session = r.session;
}

bool reattach_durable(const Segment& seg, uint32_t slot, SlotState seen, const Registration& r) noexcept {
    stamp_consumer(seg, slot, r);
    uint32_t expected = uint32_t(seen);
    // SYNC: release publishes the owner fields stamped above; pairs with the acquire loads of
    // state in owned_by() and collect_stats.
    return seg.consumer_slot(slot).state.compare_exchange_strong(expected, uint32_t(SlotState::attached),
                                                                 std::memory_order_acq_rel);
}

bool owned_by(const ConsumerSlot& s, const Process& p) noexcept {
    // acquire: pairs with the release (or seq_cst) store that attached the slot (ours, or an
    // earlier daemon's), which published its owner fields.
    return state_of(s) == SlotState::attached && same_process(s.pid, s.start_time, p);
}

Released release_consumer(const Segment& seg, uint32_t slot, const Process& p, uint64_t now_wall_ns) noexcept {
    auto& s = seg.consumer_slot(slot);
    if (!owned_by(s, p)) return Released::not_owned;
    uint32_t expected = uint32_t(SlotState::attached);
    if (!is_durable(s))
        // SYNC: release pairs with the acquire in reserve_consumer_slot's next CAS and collect_stats.
        return s.state.compare_exchange_strong(expected, uint32_t(SlotState::free), std::memory_order_acq_rel)
                   ? Released::freed
                   : Released::not_owned;
    s.pid = 0;
    s.detached_ns = now_wall_ns;
    // SYNC: release publishes pid and detached_ns with the state; pairs with collect_stats' acquire.
    return s.state.compare_exchange_strong(expected, uint32_t(SlotState::detached), std::memory_order_acq_rel)
               ? Released::detached
               : Released::not_owned;
}

bool free_consumer(const Segment& seg, uint32_t slot, SlotState from) noexcept {
    uint32_t expected = uint32_t(from);
    // A CAS: only shmbusd writes slot states, but clients map the segment writable; never free a
    // slot whose state changed under us. SYNC: release pairs with the seq_cst state load in
    // PublisherCore::min_gating_ack, which then stops counting this cursor.
    if (!seg.consumer_slot(slot).state.compare_exchange_strong(expected, uint32_t(SlotState::free), std::memory_order_acq_rel))
        return false;
    futex_signal(seg.consumers().space_futex);  // it no longer holds producers back
    return true;
}

std::optional<uint32_t> register_producer(const Segment& seg, const Registration& r) noexcept {
    for (uint32_t i = 0; i < seg.max_producers(); ++i) {
        auto& p = seg.producer_slot(i);
        // SYNC: acquire pairs with the release store of `free` in free_producer: whatever the slot's
        // last owner left settled is seen before the slot is given again.
        if (ProducerState(p.state.load(std::memory_order_acquire)) != ProducerState::free) continue;
        p.pid = r.owner.pid;
        p.start_time = r.owner.start_time;
        p.owner_token = r.token;
        if (seg.producer_slot_has(kProducerSessionEnd)) p.owner_session = r.session;
        // relaxed: published to the new owner by the release store of state below.
        p.claim_start.store(0, std::memory_order_relaxed);
        p.intent.store(0, std::memory_order_relaxed);
        p.revoked.store(0, std::memory_order_relaxed);
        // SYNC: release pairs with the acquire load in producer_active() (collect_stats, recovery).
        p.state.store(uint32_t(ProducerState::active), std::memory_order_release);
        return i;
    }
    return std::nullopt;
}

bool owned_by(const ProducerSlot& p, const Process& owner) noexcept {
    return producer_active(p) && same_process(p.pid, p.start_time, owner);
}

void free_producer(const Segment& seg, uint32_t slot) noexcept {
    // SYNC: release, after the claim words were cleared: a daemon that hands the slot out again
    // (acquire load in register_producer) starts from a clean slot.
    seg.producer_slot(slot).state.store(uint32_t(ProducerState::free), std::memory_order_release);
}

uint64_t consumer_session(const Segment& seg, uint32_t slot) noexcept {
    return seg.consumer_slot_has(kConsumerSessionEnd) ? seg.consumer_slot(slot).owner_session : 0;
}

uint64_t producer_session(const Segment& seg, uint32_t slot) noexcept {
    return seg.producer_slot_has(kProducerSessionEnd) ? seg.producer_slot(slot).owner_session : 0;
}

bool consumer_registered_through(const Segment& seg, uint32_t slot, const Process& p, uint64_t session) noexcept {
    return owned_by(seg.consumer_slot(slot), p) && session_matches(consumer_session(seg, slot), session);
}

bool producer_registered_through(const Segment& seg, uint32_t slot, const Process& p, uint64_t session) noexcept {
    return owned_by(seg.producer_slot(slot), p) && session_matches(producer_session(seg, slot), session);
}

std::optional<uint32_t> consumer_by_token(const Segment& seg, const Process& p, uint64_t token) noexcept {
    if (token == 0) return std::nullopt;
    for (uint32_t i = 0; i < seg.max_consumers(); ++i)
        if (owned_by(seg.consumer_slot(i), p) && seg.consumer_slot(i).owner_token == token) return i;
    return std::nullopt;
}

std::optional<uint32_t> producer_by_token(const Segment& seg, const Process& p, uint64_t token) noexcept {
    if (token == 0) return std::nullopt;
    for (uint32_t i = 0; i < seg.max_producers(); ++i)
        if (owned_by(seg.producer_slot(i), p) && seg.producer_slot(i).owner_token == token) return i;
    return std::nullopt;
}

void restamp_consumer_session(const Segment& seg, uint32_t slot, uint64_t session) noexcept {
    if (seg.consumer_slot_has(kConsumerSessionEnd)) seg.consumer_slot(slot).owner_session = session;
}

void restamp_producer_session(const Segment& seg, uint32_t slot, uint64_t session) noexcept {
    if (seg.producer_slot_has(kProducerSessionEnd)) seg.producer_slot(slot).owner_session = session;
}

Result<Ring::Start> attach_new_cursor(const Segment& seg, uint32_t index, SlotKind kind, std::string_view name,
                                      const Registration& owner, StartFrom from, uint64_t id) noexcept {
    auto& s = seg.consumer_slot(index);
    s.kind = uint32_t(kind);
    stamp_consumer(seg, index, owner);
    std::memset(s.name, 0, sizeof s.name);
    std::memcpy(s.name, name.data(), std::min(name.size(), sizeof s.name - 1));
    s.delivered.store(0, std::memory_order_relaxed);  // relaxed: statistics
    s.lost.store(0, std::memory_order_relaxed);
    // relaxed: published by the seq_cst store that attaches the slot; a slot that is not attached holds nothing.
    if (seg.in_place_reads()) s.hold.store(0, std::memory_order_relaxed);
    if (seg.consumer_slot_has(sizeof(layout::ConsumerSlot))) {  // a new subscription's times start empty
        s.processing_count.store(0, std::memory_order_relaxed);
        s.processing_sum_ns.store(0, std::memory_order_relaxed);
        for (auto& b : s.processing) b.store(0, std::memory_order_relaxed);
    }
    const bool gating = gates_producers(seg, index, kind);
    auto start = place_cursor(seg, s, from, id, gating, true);
    // Failed before attaching (a bad start) or after (lapped every time): free it either way.
    if (!start && !free_consumer(seg, index, SlotState::attached)) (void)free_consumer(seg, index, SlotState::reserved);
    return start;
}

}  // namespace shmbus::detail
