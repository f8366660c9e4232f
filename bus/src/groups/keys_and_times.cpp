// What a message's meta block asks of a consumer group (layout/record.h, kRecordHasMeta): its
// expiry, its delivery time, and, in a group ordered by key, its key's turn. docs/architecture.md,
// "A message's metadata" and "Ordered by key", explain the protocol; every acquire/release below
// names its partner.
#include <algorithm>
#include <string>

#include "groups/group.h"
#include "record/record_view.h"

namespace shmbus::detail {

using layout::GroupBlock;
using layout::GroupEntry;

bool GroupMember::due_and_alive(GroupEntry& e, uint64_t id, uint32_t deliveries, const RecordInfo& r) noexcept {
    if ((r.flags & layout::kRecordHasMeta) == 0) return true;
    const MetaView meta = record_meta(ring_.payload_at(r.position), r.length, r.flags);
    if (meta.expires_at_ns == 0 && meta.deliver_at_ns == 0) return true;
    const uint64_t now = clock_.now_ns();  // CLOCK_REALTIME, as the publisher wrote the times
    if (deliveries == 0) {
        // Never delivered: no delivery times yet (the entry's are an earlier message's). Ours: relaxed,
        // published by the store that leaves the transitional state.
        e.first_delivery_ns.store(0, std::memory_order_relaxed);
        e.last_delivery_ns.store(0, std::memory_order_relaxed);
    }
    if (meta.expires_at_ns != 0 && now >= meta.expires_at_ns) {
        const bool gone = (block_.options & layout::kDeadLetterExpired) != 0 ? dead_letter(e, message_of(id, deliveries, r), "expired")
                                                                              : (free_entry(e), true);
        if (gone) block_.expired.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistics
        return false;
    }
    if (meta.deliver_at_ns > now) {
        to_backoff(e, deliveries, meta.deliver_at_ns - now);  // a backoff far behind the tail is reparked: publishers never wait
        return false;
    }
    return true;
}

uint64_t GroupMember::record_key_hash(const RecordInfo& r) const noexcept {
    if ((r.flags & layout::kRecordHasMeta) == 0) return 0;
    const std::string_view key = record_meta(ring_.payload_at(r.position), r.length, r.flags).key;
    if (key.empty()) return 0;
    uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then a finalizer: keys that differ in their last byte spread
    for (const char ch : key) h = (h ^ uint8_t(ch)) * 0x100000001b3ULL;
    uint64_t state = h;
    h = splitmix(state);
    return h != 0 ? h : 1;
}

bool GroupMember::first_of_key(const GroupEntry& e, uint64_t id, uint64_t hash) const noexcept {
    for (const auto& f : block_.entries) {
        if (&f == &e) continue;
        // SYNC: acquire pairs with the dispatch CAS (a new entry's id and key_hash were written
        // before it) and with every later change of state; an entry holds its message's id and
        // key from its taking to its settling, placeholder included, so what we do not see here
        // is settled or later than `id`.
        if (f.control.load(std::memory_order_acquire) == 0) continue;
        // relaxed: ordered by the acquire above. A free entry being taken anew may mix an old and
        // a new message here: at worst this message waits a scan longer.
        if (f.key_hash.load(std::memory_order_relaxed) == hash && f.id.load(std::memory_order_relaxed) < id) return false;
    }
    return true;
}

bool GroupMember::key_turn(GroupEntry& e, uint64_t id, uint32_t deliveries) noexcept {
    if (!ordered_) return true;
    const uint64_t hash = e.key_hash.load(std::memory_order_relaxed);  // ours: written when it was taken
    if (hash == 0 || first_of_key(e, id, hash)) return true;
    to_blocked(e, deliveries);
    return false;
}

void GroupMember::to_blocked(GroupEntry& e, uint32_t deliveries) noexcept {
    const uint64_t due = monotonic_ns() + kScanEveryNs;
    next_due_ns_ = std::min(next_due_ns_, due);
    if (deliveries == 0) {  // never delivered: no delivery times (the entry's are an earlier message's)
        e.first_delivery_ns.store(0, std::memory_order_relaxed);
        e.last_delivery_ns.store(0, std::memory_order_relaxed);
    }
    e.deadline_ns.store(due, std::memory_order_relaxed);  // relaxed: published by the store below
    // SYNC: release pairs with the acquire load of control in redeliver_due.
    e.control.store(EntryControl{EntryState::blocked, deliveries, 0, 0}.pack(), std::memory_order_release);
}

bool GroupMember::record_holds(const RecordInfo& r, uint64_t id) const noexcept {
    if (r.type != uint16_t(layout::RecordType::data)) return false;
    if (r.id == id) return true;
    return ordered_ && (r.flags & layout::kRecordRetry) != 0 && layout::retry_group_slot(r.flags) == group_slot_ &&
           retry_info(ring_.payload_at(r.position), r.length).id == id;
}

GroupMember::Retake GroupMember::retake(Dispatch d, const RecordInfo& r, uint64_t hash, Handler& handler, uint32_t& count,
                                        const void* owner, bool auto_ack) noexcept {
    const layout::RetryInfo info = retry_info(ring_.payload_at(r.position), r.length);
    const Dispatch past{d.position + r.size, d.id + 1};
    GroupEntry* holder = nullptr;
    uint64_t control = 0;
    for (auto& f : block_.entries) {
        // SYNC: acquire pairs with the store that made the placeholder (repark) or any later state.
        control = f.control.load(std::memory_order_acquire);
        if (control != 0 && f.id.load(std::memory_order_relaxed) == info.id && f.key_hash.load(std::memory_order_relaxed) == hash) {
            holder = &f;
            break;
        }
    }
    const EntryControl c = EntryControl::unpack(control);
    if (holder == nullptr || c.state != EntryState::moved) {
        // A member between states with the message (moving it here, or taking this record back) is
        // done soon, or, if it died there, a scan settles where the message is: wait for either, so
        // that this record is never stepped over while it may be the only copy.
        const bool in_hand = holder != nullptr && c.state != EntryState::held && c.state != EntryState::backoff &&
                             c.state != EntryState::blocked;
        if (in_hand) return Retake::later;
        // Settled already, or held where it lay: this record is a second copy (its mover died
        // between publishing it and leaving the placeholder). Stepped over.
        (void)cas_dispatch(group_, d, past);
        return Retake::again;
    }
    if (!cas_entry(*holder, control, info.id, transitional(EntryState::claiming, c.attempt), info.id)) return Retake::again;
    // relaxed: published by the dispatch CAS below (a full barrier), as a new entry's position is.
    holder->position.store(d.position, std::memory_order_relaxed);
    if (!cas_dispatch(group_, d, past)) {  // nobody else takes a record whose placeholder we hold; in case
        holder->position.store(layout::kNoPosition, std::memory_order_relaxed);
        // SYNC: release pairs with the acquire loads of control (scans, retake).
        holder->control.store(EntryControl{EntryState::moved, c.attempt, 0, 0}.pack(), std::memory_order_release);
        return Retake::again;
    }
    after_retake(*holder, info, r, handler, count, owner, auto_ack);
    return Retake::taken;
}

void GroupMember::after_retake(GroupEntry& e, const layout::RetryInfo& info, const RecordInfo& r, Handler& handler,
                               uint32_t& count, const void* owner, bool auto_ack) noexcept {
    const uint32_t attempt = std::min<uint32_t>(info.attempt, uint32_t(layout::kMaxAttempt));
    e.first_delivery_ns.store(info.first_delivery_ns, std::memory_order_relaxed);  // ours: published by the next state
    const uint64_t now = monotonic_ns();
    if (info.due_ns > now) {
        to_backoff(e, attempt, info.due_ns - now);
        return;
    }
    if (settings_.max_deliveries != 0 && attempt >= settings_.max_deliveries) {
        (void)dead_letter(e, message_of(info.id, attempt, r), "delivered " + std::to_string(attempt) + " times without an ack");
        return;
    }
    if (!due_and_alive(e, info.id, attempt, r) || !key_turn(e, info.id, attempt)) return;
    hold_and_deliver(e, info.id, attempt + 1, r, handler, owner, auto_ack);
    ++count;
}

void GroupMember::retake_ahead(Handler& handler, std::size_t max, uint32_t& count, const void* owner, bool auto_ack) noexcept {
    for (auto& e : block_.entries) {
        if (count >= max || held_ >= settings_.window) return;
        // SYNC: acquire pairs with the release store that made the placeholder, after deadline_ns.
        const uint64_t control = e.control.load(std::memory_order_acquire);
        const EntryControl c = EntryControl::unpack(control);
        if (c.state != EntryState::moved) continue;
        const uint64_t id = e.id.load(std::memory_order_relaxed);  // relaxed: the CAS checks the pair
        const uint64_t at = e.deadline_ns.load(std::memory_order_relaxed);
        // The retry record lies ahead of the dispatch word (publishers do not pass it), unless the
        // word passed it already, in which case it was taken or stepped over: then leave it be.
        RecordInfo r{};
        if (at < read_dispatch(group_).position || ring_.inspect(at, r) != RecordCheck::ready || !record_holds(r, id) ||
            (r.flags & layout::kRecordRetry) == 0)
            continue;
        if (!cas_entry(e, control, id, transitional(EntryState::claiming, c.attempt), id)) continue;
        // relaxed: the retry record lies ahead of the dispatch word, which holds it from publishers
        // until the position is seen here (the next state's release store publishes it).
        e.position.store(at, std::memory_order_relaxed);
        after_retake(e, retry_info(ring_.payload_at(r.position), r.length), r, handler, count, owner, auto_ack);
    }
}

}  // namespace shmbus::detail
