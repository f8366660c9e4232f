#include "groups/group.h"
#include "record/record_view.h"

#include <algorithm>
#include <cstring>

#include "core/cursor.h"
#include "core/futex.h"

namespace shmbus::detail {

using layout::GroupBlock;
using layout::GroupEntry;

namespace {

__extension__ typedef unsigned __int128 u128;

}  // namespace

Dispatch read_dispatch(const layout::ConsumerSlot& group) noexcept {
    for (;;) {
        // SYNC: acquire loads pair with the CAS in cas_dispatch (a full barrier): the entry a
        // member wrote before moving the word is visible to whoever sees the word moved.
        const uint64_t p1 = group.ack_position.load(std::memory_order_acquire);
        const uint64_t id = group.ack_id.load(std::memory_order_acquire);
        const uint64_t p2 = group.ack_position.load(std::memory_order_acquire);
        if (p1 == p2) return {p1, id};
    }
}

bool cas_dispatch(layout::ConsumerSlot& group, Dispatch expected, Dispatch desired) noexcept {
    // ack_position and ack_id are the first 16 bytes of a cache-line-aligned slot.
    auto* word = reinterpret_cast<u128*>(&group.ack_position);
    const u128 e = (u128(expected.id) << 64) | expected.position;
    const u128 d = (u128(desired.id) << 64) | desired.position;
    // SYNC: a full barrier; pairs with the acquire loads in read_dispatch and the seq_cst load of
    // ack_position in PublisherCore::min_gating_ack.
    return __sync_bool_compare_and_swap(word, e, d);
}

bool cas_entry(GroupEntry& e, uint64_t control, uint64_t id, uint64_t new_control, uint64_t new_id) noexcept {
    auto* word = reinterpret_cast<u128*>(&e.control);
    const u128 x = (u128(id) << 64) | control;
    const u128 d = (u128(new_id) << 64) | new_control;
    // SYNC: a full barrier; pairs with the acquire loads of control in redeliver_due and
    // lowest_unsettled, which then see the position and deadline written before it.
    return __sync_bool_compare_and_swap(word, x, d);
}

uint64_t lowest_unsettled(const GroupBlock& b) noexcept {
    uint64_t lowest = UINT64_MAX;
    for (const auto& e : b.entries) {
        // SYNC: acquire pairs with the CAS or release store that made the entry non-free, after
        // its position was written.
        if (EntryControl::unpack(e.control.load(std::memory_order_acquire)).state == EntryState::free) continue;
        lowest = std::min(lowest, e.position.load(std::memory_order_relaxed));  // relaxed: ordered by the acquire above
    }
    return lowest;
}

GroupBlock* group_of_member(const Segment& seg, uint32_t member, uint32_t& group_slot) noexcept {
    if (seg.max_groups() == 0 || member >= seg.max_consumers()) return nullptr;
    const auto& m = seg.consumer_slot(member);
    if (m.kind != uint32_t(SlotKind::member) || m.reserved0 >= seg.max_consumers()) return nullptr;
    group_slot = m.reserved0;
    const auto& g = seg.consumer_slot(group_slot);
    if (g.kind != uint32_t(SlotKind::group) || g.reserved0 >= seg.max_groups()) return nullptr;
    GroupBlock& b = seg.group_block(g.reserved0);
    // acquire: pairs with shmbusd's release store of `state` once the block's settings are written.
    if (b.state.load(std::memory_order_acquire) != uint32_t(layout::GroupState::active) || b.consumer_slot != group_slot)
        return nullptr;
    return &b;
}

bool owner_gone(const Segment& seg, EntryControl c) noexcept {
    if (c.owner >= seg.max_consumers()) return true;
    const auto& s = seg.consumer_slot(c.owner);
    // acquire: pairs with shmbusd's release store of the slot's state, which published its owner
    // fields; a slot freed and taken again carries another token.
    if (state_of(s) != SlotState::attached || s.kind != uint32_t(SlotKind::member)) return true;
    return uint32_t(__atomic_load_n(&s.owner_token, __ATOMIC_RELAXED)) != c.tag;
}

uint64_t backoff_ns(const layout::GroupSettingsRecord& s, uint32_t attempt, uint64_t random) noexcept {
    double delay = double(s.backoff_initial_ns);
    const double factor = std::max(1.0, s.backoff_factor_x100 / 100.0);
    for (uint32_t i = 1; i < attempt && delay < double(s.backoff_max_ns); ++i) delay *= factor;
    const uint64_t capped = uint64_t(std::min(delay, double(s.backoff_max_ns)));
    const uint64_t half = capped / 2;
    return half + (half == 0 ? 0 : random % (capped - half + 1));
}

std::optional<GroupPlace> find_group(const Segment& seg, std::string_view name) noexcept {
    for (uint32_t i = 0; i < seg.max_groups(); ++i) {
        const GroupBlock& b = seg.group_block(i);
        if (b.state.load(std::memory_order_acquire) != uint32_t(layout::GroupState::active)) continue;  // pairs with create_group
        if (std::string_view(b.name, strnlen(b.name, sizeof b.name)) != name || b.consumer_slot >= seg.max_consumers()) continue;
        return GroupPlace{i, b.consumer_slot};
    }
    return std::nullopt;
}

std::vector<int32_t> group_member_pids(const Segment& seg, uint32_t group_slot) noexcept {
    std::vector<int32_t> out;
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        const auto& s = seg.consumer_slot(i);
        if (state_of(s) == SlotState::attached && s.kind == uint32_t(SlotKind::member) && s.reserved0 == group_slot)
            out.push_back(s.pid);
    }
    return out;
}

GroupMember::GroupMember(const Segment& seg, uint32_t member_slot, uint32_t tag, uint32_t group_slot, GroupBlock& block,
                         DeadLetter dead_letter, Repark repark) noexcept
    : seg_(seg), ring_(seg), member_slot_(member_slot), tag_(tag), group_(seg.consumer_slot(group_slot)), block_(block),
      settings_(block.settings), ordered_((block.options & layout::kOrderedByKey) != 0), dead_letter_(std::move(dead_letter)), repark_(std::move(repark)), group_slot_(group_slot),
      random_(monotonic_ns() ^ (uint64_t(tag) << 20)), rate_(settings_.rate_interval_ns, settings_.rate_burst) {}

GroupEntry* GroupMember::claim_entry() noexcept {
    if (claiming_ != nullptr) return claiming_;
    for (uint32_t n = 0; n < layout::kGroupEntries; ++n) {
        const uint32_t i = (next_free_hint_ + n) % layout::kGroupEntries;
        GroupEntry& e = block_.entries[i];
        // relaxed: the CAS below decides.
        if (e.control.load(std::memory_order_relaxed) != 0) continue;
        const uint64_t id = e.id.load(std::memory_order_relaxed);
        if (!cas_entry(e, 0, id, transitional(EntryState::claiming, 0), id)) continue;
        next_free_hint_ = i + 1;
        claiming_ = &e;
        return claiming_;
    }
    return nullptr;
}

void GroupMember::drop_claim_entry() noexcept {
    if (claiming_ == nullptr) return;
    // SYNC: release pairs with the acquire loads of control (lowest_unsettled, claim_entry's CAS).
    claiming_->control.store(0, std::memory_order_release);
    claiming_ = nullptr;
}

void GroupMember::free_entry(GroupEntry& e) noexcept {
    // relaxed: ours (a transitional state), published by the release store below.
    e.dead_letter_refused.store(0, std::memory_order_relaxed);
    // Ours (a transitional state): no CAS needed. SYNC: release pairs with the acquire load in
    // lowest_unsettled: our reads of the record happen before a publisher overwrites it.
    e.control.store(0, std::memory_order_release);
    wake_publishers();
}

void GroupMember::to_backoff(GroupEntry& e, uint32_t attempt, uint64_t delay_ns) noexcept {
    const uint64_t due = monotonic_ns() + delay_ns;
    next_due_ns_ = std::min(next_due_ns_, due);
    e.deadline_ns.store(due, std::memory_order_relaxed);  // relaxed: published by the store below
    // SYNC: release pairs with the acquire load of control in redeliver_due.
    e.control.store(EntryControl{EntryState::backoff, attempt, 0, 0}.pack(), std::memory_order_release);
}

void GroupMember::wake_publishers() noexcept {
    // SYNC: StoreLoad fence, pairs with the seq_cst increment of space_waiters in
    // PublisherCore::wait_for_space (as SubscriberCore::store_ack does).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (seg_.space_waiters().load(std::memory_order_relaxed) != 0) futex_signal(seg_.consumers().space_futex);
}

void GroupMember::hold_and_deliver(GroupEntry& e, uint64_t id, uint32_t attempt, const RecordInfo& r, Handler& handler,
                                   const void* owner, bool auto_ack) noexcept {
    e.deadline_ns.store(monotonic_ns() + settings_.visibility_ns, std::memory_order_relaxed);  // relaxed: published below
    const uint64_t now = clock_.now_ns();
    if (attempt == 1) e.first_delivery_ns.store(now, std::memory_order_relaxed);  // relaxed: likewise
    e.last_delivery_ns.store(now, std::memory_order_relaxed);
    rate_.spend();
    const uint64_t control = held_control(attempt);
    // SYNC: release pairs with the acquire load of control in redeliver_due: the deadline is read
    // with the state it belongs to.
    e.control.store(control, std::memory_order_release);
    const std::size_t index = std::size_t(&e - block_.entries);
    if (given_[index] == 0) ++held_;  // else: ours already, redelivered to us after its deadline
    given_[index] = control;
    (attempt > 1 ? block_.redelivered : block_.delivered).fetch_add(1, std::memory_order_relaxed);  // relaxed: statistics
    Message m = message_of(id, attempt, r);
    m.record_id_ = id;
    m.delivered_by_ = owner;
    m.epoch_ = index;
    m.end_position_ = control;
    handler(m);
    if (auto_ack) (void)settle(m, Settle::ack, 0, {});
}

Message GroupMember::message_of(uint64_t id, uint32_t attempt, const RecordInfo& r) const noexcept {
    Message m;
    m.id = id;
    // r.position, not e.position: the entry lives in memory other members write, and only the
    // position inspect() checked is known to hold this record inside the ring.
    const std::byte* data = ring_.payload_at(r.position);
    if (r.flags & layout::kRecordRetry) m.id = retry_info(data, r.length).id;  // shown with the id it was published with
    m.timestamp_ns = r.timestamp_ns;
    m.attempt = attempt;
    split_record(data, r.length, r.flags, m);
    return m;
}

bool GroupMember::dead_letter(GroupEntry& e, const Message& m, std::string_view reason) noexcept {
    // relaxed: written by the member that delivered it, before the CAS or store that gave us the entry.
    const DeadLetterInfo letter{m, reason, e.first_delivery_ns.load(std::memory_order_relaxed),
                                e.last_delivery_ns.load(std::memory_order_relaxed)};
    const DeadLetterOutcome outcome = dead_letter_ ? dead_letter_(letter) : DeadLetterOutcome::later;
    if (outcome == DeadLetterOutcome::sent) {
        block_.dead_lettered.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistics
        free_entry(e);
        return true;
    }
    // Ours (a transitional state): relaxed, published by to_backoff's release store.
    e.dead_letter_refused.store(outcome == DeadLetterOutcome::refused ? 1 : 0, std::memory_order_relaxed);
    to_backoff(e, m.attempt, settings_.backoff_max_ns);  // not now: tried again after the longest backoff
    return false;
}

void GroupMember::redeliver_due(Handler& handler, std::size_t max, uint32_t& count, const void* owner, bool auto_ack) noexcept {
    const uint64_t now = monotonic_ns();
    next_scan_ns_ = now + kScanEveryNs;
    next_due_ns_ = UINT64_MAX;
    // Backoff entries below this have fallen half a ring behind the tail: they move to the tail.
    // relaxed: a stale tail only moves an entry one scan later.
    const uint64_t tail = ring_.tail_position(std::memory_order_relaxed);
    const uint64_t repark_below = repark_ && tail > ring_.capacity() / 2 ? tail - ring_.capacity() / 2 : 0;
    for (auto& e : block_.entries) {
        // Stopped early: the entries not looked at wait for the next scan, which this member makes
        // when it polls again (it has a full window or a full poll now, so nothing to gain sooner).
        if (count >= max || held_ >= settings_.window) return;
        // SYNC: acquire pairs with the release store (or CAS) that set this state, after the
        // deadline and position were written; the CAS below checks nothing changed since.
        const uint64_t control = e.control.load(std::memory_order_acquire);
        if (control == 0) continue;
        const uint64_t id = e.id.load(std::memory_order_relaxed);  // relaxed: the CAS checks the pair
        const EntryControl c = EntryControl::unpack(control);
        const uint64_t deadline = e.deadline_ns.load(std::memory_order_relaxed);
        bool due = false;
        switch (c.state) {
            case EntryState::held:
                due = now >= deadline || owner_gone(seg_, c);
                next_due_ns_ = std::min(next_due_ns_, deadline);
                break;
            case EntryState::backoff:
            case EntryState::blocked:
                due = now >= deadline;
                next_due_ns_ = std::min(next_due_ns_, deadline);
                // relaxed: position was published with the control word read above.
                if (!due && e.position.load(std::memory_order_relaxed) < repark_below) repark(e, control, id, c, deadline);
                break;
            case EntryState::claiming:
            case EntryState::stealing:
            case EntryState::nacking:
            case EntryState::moving: due = c.owner != member_slot_ && owner_gone(seg_, c); break;
            case EntryState::moved:  // its retry record takes it back
            case EntryState::free: break;
        }
        if (!due) continue;
        // A delivery needs a token of the rate limit; a move to the dead-letter topic does not.
        const bool delivers = c.state != EntryState::nacking && c.state != EntryState::moving &&
                              !(settings_.max_deliveries != 0 && c.attempt >= settings_.max_deliveries);
        if (delivers && !take_token()) return;
        if (!cas_entry(e, control, id, transitional(EntryState::stealing, c.attempt), id)) continue;
        // A member died taking a placeholder back: its retry record still waits at the dispatch word.
        if (c.state == EntryState::claiming && e.position.load(std::memory_order_relaxed) == layout::kNoPosition) {
            // SYNC: release pairs with the acquire loads of control (scans, retake).
            e.control.store(EntryControl{EntryState::moved, c.attempt, 0, 0}.pack(), std::memory_order_release);
            continue;
        }
        // A dead member's claim that never moved the dispatch word was never taken: let it go.
        if (c.state == EntryState::claiming && id >= read_dispatch(group_).id) {
            free_entry(e);
            continue;
        }
        RecordInfo r{};
        const uint64_t position = e.position.load(std::memory_order_relaxed);
        if (ring_.inspect(position, r) != RecordCheck::ready || !record_holds(r, id)) {
            free_entry(e);  // an entry that does not name its record (a member died mid-claim): nothing to redeliver
            continue;
        }
        if (c.state == EntryState::nacking || c.state == EntryState::moving) {
            // Its owner died moving it to backoff, or to the tail (which may then hold it twice:
            // at least once, never lost): due now.
            to_backoff(e, c.attempt, 0);
            continue;
        }
        // c.attempt counts the deliveries made: the owner of a transitional state had not yet
        // delivered, so in every case the next delivery is c.attempt + 1.
        const uint32_t attempt = std::min<uint32_t>(c.attempt + 1, uint32_t(layout::kMaxAttempt));
        if (settings_.max_deliveries != 0 && attempt > settings_.max_deliveries) {
            (void)dead_letter(e, message_of(id, c.attempt, r), "delivered " + std::to_string(c.attempt) + " times without an ack");
            continue;
        }
        if (!due_and_alive(e, id, c.attempt, r)) continue;
        if (!key_turn(e, id, c.attempt)) continue;
        hold_and_deliver(e, id, attempt, r, handler, owner, auto_ack);
        ++count;
    }
}

void GroupMember::take_retry(GroupEntry& e, uint64_t id, const RecordInfo& r, Handler& handler, uint32_t& count,
                             const void* owner, bool auto_ack) noexcept {
    const layout::RetryInfo info = retry_info(ring_.payload_at(r.position), r.length);  // the checked position
    // Deliveries made so far: 0 for a delayed message not yet delivered.
    const uint32_t attempt = std::min<uint32_t>(info.attempt, uint32_t(layout::kMaxAttempt));
    // Ours (state claiming) until the store below: relaxed, published by it.
    e.first_delivery_ns.store(info.first_delivery_ns, std::memory_order_relaxed);
    const uint64_t now = monotonic_ns();
    if (info.due_ns > now) {
        to_backoff(e, attempt, info.due_ns - now);
        return;
    }
    if (settings_.max_deliveries != 0 && attempt >= settings_.max_deliveries) {
        (void)dead_letter(e, message_of(id, attempt, r), "delivered " + std::to_string(attempt) + " times without an ack");
        return;
    }
    if (!due_and_alive(e, id, attempt, r)) return;
    hold_and_deliver(e, id, attempt + 1, r, handler, owner, auto_ack);
    ++count;
}

void GroupMember::repark(GroupEntry& e, uint64_t control, uint64_t id, EntryControl c, uint64_t deadline) noexcept {
    if (!cas_entry(e, control, id, transitional(EntryState::moving, c.attempt), id)) return;
    RecordInfo r{};
    const uint64_t position = e.position.load(std::memory_order_relaxed);
    if (ring_.inspect(position, r) != RecordCheck::ready || !record_holds(r, id)) {
        free_entry(e);  // an entry that does not name its record: nothing to keep
        return;
    }
    const Message m = message_of(id, c.attempt, r);
    const layout::RetryInfo info{m.id, deadline, e.first_delivery_ns.load(std::memory_order_relaxed), c.attempt, 0};
    uint64_t retry_position = 0;
    const bool moved = repark_(info, record_body(ring_.payload_at(r.position), r.length, r.flags),
                               layout::retry_flags(group_slot_, r.flags), retry_position);
    if (moved) {
        block_.reparked.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistics
        if (ordered_ && e.key_hash.load(std::memory_order_relaxed) != 0) {
            // Ordered by key: the entry stays, a placeholder holding the key, until the retry record
            // takes it back. State first, then the position that stops gating: one who dies in
            // between leaves a placeholder that still gates the old record, never a message unheld.
            // Where the retry record lies, for retake_ahead. relaxed: published by the store below.
            e.deadline_ns.store(retry_position, std::memory_order_relaxed);
            // SYNC: release pairs with the acquire loads of control (scans, retake, lowest_unsettled).
            e.control.store(EntryControl{EntryState::moved, c.attempt, 0, 0}.pack(), std::memory_order_release);
            e.position.store(layout::kNoPosition, std::memory_order_release);
            wake_publishers();
            return;
        }
        free_entry(e);  // a crash before this delivers it twice, never loses it
        return;
    }
    // SYNC: release pairs with the acquire load of control in redeliver_due (the deadline is unchanged).
    e.control.store(EntryControl{EntryState::backoff, c.attempt, 0, 0}.pack(), std::memory_order_release);
}

PollResult GroupMember::poll(Handler& handler, std::size_t max, const void* owner, bool auto_ack) noexcept {
    if (corrupt_) return {ReceiveStatus::corrupt, 0};
    rate_.new_poll();
    uint32_t count = 0;
    if (monotonic_ns() >= next_scan_ns_) redeliver_due(handler, max, count, owner, auto_ack);
    while (count < max && held_ < settings_.window) {
        const Dispatch d = read_dispatch(group_);
        RecordInfo r{};
        const RecordCheck check = ring_.inspect(d.position, r);
        if (check == RecordCheck::not_ready) break;
        if (check == RecordCheck::corrupt || (r.type != uint16_t(layout::RecordType::padding) && r.id != d.id)) {
            // The word may have moved on while we read: only a record at the current word is damage.
            if (read_dispatch(group_).position != d.position) continue;
            corrupt_ = true;
            break;
        }
        if (r.type == uint16_t(layout::RecordType::padding)) {
            (void)cas_dispatch(group_, d, {d.position + r.size, d.id});
            continue;
        }
        const bool retry = (r.flags & layout::kRecordRetry) != 0;
        if (r.type == uint16_t(layout::RecordType::skip) || (retry && layout::retry_group_slot(r.flags) != group_slot_)) {
            (void)cas_dispatch(group_, d, {d.position + r.size, r.id + 1});
            continue;
        }
        if (!take_token()) break;
        const uint64_t key_hash = ordered_ ? record_key_hash(r) : 0;
        if (retry && key_hash != 0) {
            if (retake(d, r, key_hash, handler, count, owner, auto_ack) == Retake::later) break;
            continue;
        }
        GroupEntry* e = claim_entry();
        if (e == nullptr) {  // every entry holds an unsettled message: the group is at its limit
            if (ordered_) retake_ahead(handler, max, count, owner, auto_ack);
            break;
        }
        // relaxed: published by the dispatch CAS (a full barrier) to publishers and members.
        e->id.store(d.id, std::memory_order_relaxed);
        e->position.store(d.position, std::memory_order_relaxed);
        if (ordered_) e->key_hash.store(key_hash, std::memory_order_relaxed);  // likewise
        if (!cas_dispatch(group_, d, {d.position + r.size, d.id + 1})) continue;  // another member took it
        claiming_ = nullptr;
        if (retry) {
            take_retry(*e, d.id, r, handler, count, owner, auto_ack);
            continue;
        }
        if (!due_and_alive(*e, d.id, 0, r)) continue;
        if (!key_turn(*e, d.id, 0)) continue;
        hold_and_deliver(*e, d.id, 1, r, handler, owner, auto_ack);
        ++count;
    }
    drop_claim_entry();
    if (corrupt_ && count == 0) return {ReceiveStatus::corrupt, 0};
    if (count == 0 && seg_.deleted()) return {ReceiveStatus::deleted, 0};
    return {count > 0 ? ReceiveStatus::ok : ReceiveStatus::empty, count};
}

bool GroupMember::new_message_waiting() const noexcept {
    if (held_ >= settings_.window) return false;
    RecordInfo r{};
    return ring_.inspect(read_dispatch(group_).position, r) != RecordCheck::not_ready;
}

AckStatus GroupMember::too_late() noexcept {
    // Past its visibility deadline the message was given to another member.
    block_.ack_too_late.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistics
    return AckStatus::stale;
}

AckStatus GroupMember::settle(const Message& m, Settle how, uint64_t delay_ns, std::string_view reason) noexcept {
    if (m.epoch_ >= layout::kGroupEntries) return AckStatus::not_delivered;
    GroupEntry& e = block_.entries[m.epoch_];
    const uint64_t control = m.end_position_;
    const EntryControl c = EntryControl::unpack(control);
    if (c.state != EntryState::held || c.owner != member_slot_ || c.tag != tag_) return AckStatus::not_delivered;
    // Settled already (a second ack of one message), or given to us again since: nothing to do.
    if (given_[m.epoch_] != control) return AckStatus::stale;
    // Settled now or taken from us: it leaves our window either way.
    given_[m.epoch_] = 0;
    --held_;
    if (how == Settle::ack) {
        if (!cas_entry(e, control, m.record_id_, 0, 0)) return too_late();
        block_.acked.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistics
        if (ordered_) next_scan_ns_ = 0;  // the next message of its key may wait: look at once
        wake_publishers();
        return AckStatus::ok;
    }
    if (!cas_entry(e, control, m.record_id_, transitional(EntryState::nacking, c.attempt), m.record_id_)) return too_late();
    const bool exhausted = settings_.max_deliveries != 0 && c.attempt >= settings_.max_deliveries;
    if (how == Settle::reject || exhausted) {
        const std::string_view said = how == Settle::reject ? "rejected" : "nacked on its last allowed delivery";
        (void)dead_letter(e, m, reason.empty() ? said : reason);
        return AckStatus::ok;
    }
    block_.nacked.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistics
    to_backoff(e, c.attempt, delay_ns != 0 ? delay_ns : backoff_ns(settings_, c.attempt, splitmix(random_)));
    return AckStatus::ok;
}

}  // namespace shmbus::detail
