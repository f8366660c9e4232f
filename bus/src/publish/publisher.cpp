#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "publish/publisher_core.h"
#include "core/futex.h"
#include "groups/group.h"
#include "core/slots.h"

namespace shmbus {
namespace detail {

using layout::RecordHeader;
using layout::RecordType;

namespace {
constexpr int kSpaceSpins = 256;
constexpr std::chrono::milliseconds kMaxSpaceSleep{10};  // re-check even if nobody wakes us
constexpr uint64_t kPrefetchAhead = 1024;  // bytes ahead of a claim whose line is asked for early
}  // namespace

PublisherCore::~PublisherCore() {
    if (!channel || slot == nullptr) return;
    protocol::Unsubscribe req{};
    copy_name(req.topic, topic);
    req.slot = slot_index;
    (void)channel->request_if_connected(protocol::Type::close_producer, &req, sizeof req);  // death frees it too
}

uint64_t PublisherCore::deadline_after(std::chrono::nanoseconds timeout) const noexcept {
    if (timeout.count() <= 0) return 1;  // already passed, and distinct from "not computed yet"
    const uint64_t now = monotonic_ns();
    return uint64_t(timeout.count()) > UINT64_MAX - now ? UINT64_MAX : now + uint64_t(timeout.count());
}

PublisherCore::GateFloor PublisherCore::min_gating_ack() const noexcept {
    GateFloor floor;
    uint64_t& min_ack = floor.acked;
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        auto& s = seg.consumer_slot(i);
        if (s.kind == uint32_t(SlotKind::ephemeral)) {  // holds a record only while reading it in place
            if (!seg.in_place_reads() || state_of(s, std::memory_order_seq_cst) != SlotState::attached) continue;
            // SYNC: seq_cst pairs with the reader's seq_cst store of hold and then load of the tail
            // (SubscriberCore::hold_record): either we see its hold, or it sees a tail at least as
            // high as ours, and keeps a hold only a quarter ring from it, beyond our reach.
            if (const uint64_t hold = s.hold.load(std::memory_order_seq_cst); hold != 0) min_ack = std::min(min_ack, hold - 1);
            continue;
        }
        // SYNC: seq_cst pairs with the seq_cst stores of a joining cursor in place_cursor(): either
        // we see the new cursor here, or its owner saw our claim on the tail and joined above it.
        if (!holds_gating_cursor(s, std::memory_order_seq_cst)) continue;
        // After the state load: the archiver's slot is named before it is attached (mark_archived).
        if (archive_policy && !gates_producers(seg, i, SlotKind(s.kind), std::memory_order_seq_cst)) continue;
        // SYNC: pairs with the release store of ack_position in SubscriberCore::store_ack (and the
        // dispatch CAS in cas_dispatch): the subscriber's reads of the acked records happen
        // before we overwrite them.
        const uint64_t ack = s.ack_position.load(std::memory_order_seq_cst);
        if (s.kind != uint32_t(SlotKind::group)) {
            min_ack = std::min(min_ack, ack);
            continue;
        }
        floor.group = std::min(floor.group, ack);
        // A group's messages taken but not settled lie below its dispatch word: read after it
        // (see cas_dispatch), so a message taken since is in its entry.
        if (s.reserved0 < seg.max_groups()) floor.group = std::min(floor.group, lowest_unsettled(seg.group_block(s.reserved0)));
    }
    // After the acks: see take_back_stalled_claim.
    min_ack = std::min(min_ack, lowest_taken_back());
    return floor;
}

// A claim the daemon took back may still be written by its stalled owner: its bytes are kept
// until the owner notices (release_claim) or dies. Only topics with an unblock-timeout have any.
uint64_t PublisherCore::lowest_taken_back() const noexcept {
    uint64_t lowest = UINT64_MAX;
    if (!revocable) return lowest;
    for (uint32_t i = 0; i < seg.max_producers(); ++i)
        // SYNC: acquire pairs with the release stores of revoked in recovery.cpp and release_claim.
        if (const uint64_t r = seg.producer_slot(i).revoked.load(std::memory_order_acquire); r != 0)
            lowest = std::min(lowest, r - 1);
    return lowest;
}

// The gate: a claim may end at most one ring past the slowest durable ack, and at most a
// quarter ring past the tail seen now, so a subscription that joins later is seen in time
// (docs/architecture.md, "Gating").
void PublisherCore::refresh_gate() noexcept {
    if (!gated) {
        gate_limit = UINT64_MAX;
        return;
    }
    // SYNC: the claim CAS is a full barrier, so our last claim is visible to everyone before the
    // loads below. A plain tail store is not: the fence makes it so (StoreLoad), once per refresh.
    if (exclusive) std::atomic_thread_fence(std::memory_order_seq_cst);
    // SYNC: seq_cst, and before the cursor loads: a joiner that we miss stored its cursor after
    // those loads and read the tail after that, so it saw a tail at least this high.
    const uint64_t tail = ring.tail_position(std::memory_order_seq_cst);
    const GateFloor floor = min_gating_ack();
    const uint64_t by_ack = floor.acked == UINT64_MAX ? UINT64_MAX : floor.acked + ring.capacity();
    // retry_reserve < capacity / 2 (max_message_for keeps a record under an eighth of the ring).
    const uint64_t by_group = floor.group == UINT64_MAX ? UINT64_MAX : floor.group + ring.capacity() - retry_reserve;
    gate_limit = std::min({by_ack, by_group, tail + ring.capacity() / 4});
}

void PublisherCore::wait_for_space(uint64_t needed_end, uint64_t deadline_ns) noexcept {
    const uint64_t started_ns = monotonic_ns();  // the slow path: a full ring
    auto& consumers = seg.consumers();
    auto& waiters = seg.space_waiters();
    for (int i = 0; i < kSpaceSpins; ++i) cpu_relax();
    waiters.fetch_add(1, std::memory_order_seq_cst);
    // SYNC: seq_cst pairs with the fence in SubscriberCore::store_ack: either the subscriber sees
    // space_waiters > 0 and bumps space_futex, or we see its new ack in the refresh below.
    const uint32_t seen = consumers.space_futex.load(std::memory_order_seq_cst);
    refresh_gate();
    const uint64_t now = monotonic_ns();
    if (needed_end > gate_limit && now < deadline_ns) {
        const auto left = std::chrono::nanoseconds(deadline_ns - now);
        futex_wait(consumers.space_futex, seen, std::min<std::chrono::nanoseconds>(left, kMaxSpaceSleep));
    }
    waiters.fetch_sub(1, std::memory_order_relaxed);  // relaxed: only a hint for wakers
    // relaxed: a statistic (bus-top, topic info, metrics), read racily by design.
    seg.producers().full_wait_ns.fetch_add(monotonic_ns() - started_ns, std::memory_order_relaxed);
}

void copy_large_into_ring(std::byte* to, const std::byte* from, std::size_t n) noexcept {
    constexpr std::size_t kStep = 4096, kAhead = 16384;
    std::size_t done = 0;
    for (std::size_t ahead = 0; ahead < kAhead; ahead += 64) __builtin_prefetch(to + ahead, 1, 3);
    for (; done + kStep <= n; done += kStep) {
        const std::size_t next = done + kAhead;
        for (std::size_t line = 0; line < kStep && next + line < n; line += 64) __builtin_prefetch(to + next + line, 1, 3);
        std::memcpy(to + done, from + done, kStep);
    }
    std::memcpy(to + done, from + done, n - done);
}

// The claim's common path (claim_room, claim_unwritten, write_and_record, commit_claimed,
// release_claim) is inlined into publish_payload and the other callers in this file: calls,
// spills and reloads were a third of a publish's 300 instructions (207 now, by callgrind).
PublishStatus PublisherCore::claim(uint64_t length, std::chrono::nanoseconds timeout, uint64_t& position,
                                   uint64_t& id, uint64_t allowance) noexcept {
    uint64_t start = 0;
    const PublishStatus st = claim_unwritten(length, timeout, start, position, id, allowance);
    if (st != PublishStatus::ok) return st;
    write_and_record(start, position, length, id);
    return PublishStatus::ok;
}

[[gnu::always_inline]] inline PublishStatus PublisherCore::claim_unwritten(uint64_t length, std::chrono::nanoseconds timeout, uint64_t& start,
                                             uint64_t& position, uint64_t& id, uint64_t allowance) noexcept {
    if (length > seg.max_message() + allowance) return PublishStatus::too_large;
    const uint64_t size = layout::record_size(length);
    if (length >= reuse_from) wrap_early(size);
    const PublishStatus st = claim_room(size, 1, timeout, start, position, id);
    if (st != PublishStatus::ok) return st;
    ring.note_boundary(position, position + size, id + 1);
    // The line a kilobyte ahead, asked for before it is written: the claims to come find their
    // lines at hand, instead of each store waiting in turn for its line to come from memory or
    // from a reader's cache (a publish into a cold 16 MiB ring: 48 -> 27 ns). With write intent:
    // PREFETCHW where the target has it, a read prefetch on the baseline x86-64 target (both
    // measured the same). A prefetch writes nothing, so it may touch bytes past the gate or still
    // being read.
    __builtin_prefetch(ring.header_at(position + kPrefetchAhead), 1, 3);
    return PublishStatus::ok;
}

[[gnu::always_inline]] inline void PublisherCore::write_and_record(uint64_t start, uint64_t position, uint64_t length, uint64_t id) noexcept {
    // The header before the claim is recorded: once recorded, the daemon may seal the claim (its
    // owner stalled), and a header written after that would turn the skip record back into data.
    layout::write_header(*ring.header_at(position), uint32_t(length), RecordType::data, id, timestamp_now());
    record_claim(start, position);
}

// An early wrap (PublisherOptions::reuse_space) is two claims: padding alone, from the tail to the
// ring's end, then the record by the ordinary path at the start of the next lap, where recent large
// records lie, still in the shared cache. Taken when the record would end past the window the
// large records cycle through: at least two of them, so that a line written was last read at
// least a message ago (the reading core holds the last one; measured: one record cycling 46 us a
// 1 MiB ping-pong, two or more 22 us). The record's claim is gated as any claim is (holds,
// cursors that join meanwhile, the quarter-ring bound). The padding claim writes one header, at
// the oldest bytes the ring holds (a lap behind the tail), where no reader can be: every cursor is
// at the tail (everything_read), and one that joins or a hold taken meanwhile lies at most 3/4 of
// a ring behind the tail it then reads. What the tail's jump laps is what every reader has read.
void PublisherCore::wrap_early(uint64_t size) noexcept {
    const uint64_t cap = ring.capacity();
    // SYNC: a plain tail store is no barrier: the fence orders our last claim before the loads
    // below, as in refresh_gate.
    if (exclusive) std::atomic_thread_fence(std::memory_order_seq_cst);
    const TailSnapshot t = ring.read_tail();
    const uint64_t offset = t.position & seg.mask();
    const uint64_t pad = cap - offset;
    // Still inside the window; or near the ring's end, where the ordinary wrap comes soon and the
    // padding could pass for a record's claim (shmbusd tells them apart by length).
    if (offset + size <= reuse_window(size) || pad <= longest_claim(cap) || !everything_read(t, size)) return;
    const uint64_t end = t.position + pad;
    if (end > horizon) horizon = ring.raise_horizon(end);
    if (slot != nullptr) announce(t.position, end, t.next_id);
    const bool won = (exclusive && ring.store_tail({end, t.next_id})) || ring.cas_tail(t, {end, t.next_id});
    if (!won) return;  // another producer claimed first: the record follows its claim
    crash_in_wrap.pass();
    write_padding(t.position, pad, t.next_id);
    ring.note_boundary(t.position, end, t.next_id);
}

// Whether every reader present has read all that was published up to `tail` (so the ring holds
// nothing a reader present still wants), and a `size`-byte record at the ring's start would then
// overwrite only what readers have passed, leaving groups their room for retries.
bool PublisherCore::everything_read(const TailSnapshot& tail, uint64_t size) const noexcept {
    bool groups = false;
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        auto& s = seg.consumer_slot(i);
        // SYNC: seq_cst after the tail load, as in min_gating_ack (a missed joiner saw our tail).
        const SlotState state = state_of(s, std::memory_order_seq_cst);
        if (s.kind == uint32_t(SlotKind::ephemeral)) {
            // relaxed: read_id is a reader's progress, stored after each poll that delivered; a
            // stale value is lower and only keeps us from wrapping. The record's own claim is what
            // keeps a message being read in place from being overwritten (its gate sees holds).
            if (state == SlotState::attached && s.read_id.load(std::memory_order_relaxed) < tail.next_id) return false;
            continue;
        }
        if (!holds_cursor(state) || s.kind == uint32_t(SlotKind::member)) continue;
        // SYNC: pairs with the release store of ack_position in SubscriberCore::store_ack.
        if (s.ack_position.load(std::memory_order_seq_cst) < tail.position) return false;
        if (s.kind != uint32_t(SlotKind::group)) continue;
        groups = true;
        if (s.reserved0 < seg.max_groups() && lowest_unsettled(seg.group_block(s.reserved0)) < tail.position) return false;
    }
    if (lowest_taken_back() != UINT64_MAX) return false;
    // The record lands on [0, size) of the ring, which readers have passed only up to the tail's
    // offset. Groups keep retry_reserve free below what they hold (refresh_gate).
    return (tail.position & seg.mask()) >= size + (groups ? retry_reserve : 0);
}

[[gnu::always_inline]] inline PublishStatus PublisherCore::claim_room(uint64_t size, uint64_t ids, std::chrono::nanoseconds timeout, uint64_t& start,
                                        uint64_t& position, uint64_t& id) noexcept {
    if (seg.deleted()) return PublishStatus::deleted;
    auto& tail = seg.producers().tail;
    TailSnapshot seen{};
    uint64_t pad = 0;
    uint64_t end = 0;
    uint64_t deadline_ns = 0;  // the clock is read only once the ring is found full
    for (;;) {
        // relaxed: a torn or stale pair only makes the CAS below fail and retry.
        seen.position = __atomic_load_n(&tail.position, __ATOMIC_RELAXED);
        seen.next_id = __atomic_load_n(&tail.next_id, __ATOMIC_RELAXED);
        // Every claim ends on a record boundary: a tail that does not was written by someone
        // else, and writing a header there could land past the ring's end.
        if (seen.position % layout::kRecordAlignment != 0) return PublishStatus::corrupt;
        const uint64_t offset = seen.position & seg.mask();
        pad = offset + size > ring.capacity() ? ring.capacity() - offset : 0;
        end = seen.position + pad + size;
        if (end > gate_limit) [[unlikely]] {
            bool waited = false;
            if (const PublishStatus st = make_room(end, timeout, deadline_ns, waited); st != PublishStatus::ok) return st;
            if (waited) continue;  // the tail may have moved meanwhile
        }
        if (end > horizon) horizon = ring.raise_horizon(end);
        if (slot != nullptr) announce(seen.position, end, seen.next_id);
        // The sole publisher of a single-producer topic (shmbusd registers no other) owns the tail.
        if (exclusive && ring.store_tail({end, seen.next_id + ids})) break;
        if (ring.cas_tail(seen, {end, seen.next_id + ids})) break;
    }
    crash_in_claim.pass();
    if (pad != 0) {
        write_padding(seen.position, pad, seen.next_id);
        ring.note_boundary(seen.position, seen.position + pad, seen.next_id);
    }
    start = seen.position;
    position = seen.position + pad;
    id = seen.next_id;
    last_id = id + ids - 1;
    return PublishStatus::ok;
}

PublishStatus PublisherCore::make_room(uint64_t end, std::chrono::nanoseconds timeout, uint64_t& deadline_ns, bool& waited) noexcept {
    refresh_gate();
    if (end <= gate_limit) return PublishStatus::ok;
    if (deadline_ns == 0) deadline_ns = deadline_after(timeout);
    const bool fail = seg.live_on_full() == OnFull::fail;  // `topic set` may switch block and fail
    if (fail || monotonic_ns() >= deadline_ns) {
        seg.producers().full_refusals.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
        return fail ? PublishStatus::would_block : PublishStatus::timed_out;
    }
    wait_for_space(end, deadline_ns);
    waited = true;
    return PublishStatus::ok;
}

PublishStatus PublisherCore::publish_payload(std::span<const std::byte> payload, std::chrono::nanoseconds timeout) noexcept {
    uint64_t start = 0, position = 0, id = 0;
    if (const PublishStatus st = claim_unwritten(payload.size(), timeout, start, position, id); st != PublishStatus::ok) return st;
    if (!payload.empty()) copy_into_ring(ring.payload_at(position), payload.data(), payload.size(), lands_warm(position, payload.size()));
    write_and_record(start, position, payload.size(), id);
    return commit_claimed(position, RecordType::data);
}

void PublisherCore::record_claim(uint64_t start, uint64_t position) noexcept {
    if (slot != nullptr) {
        open_claim = {start + 1, position};
        // SYNC: pairs with the acquire load (or CAS) of claim_start in recovery.cpp.
        slot->claim_start.store(open_claim.tag, std::memory_order_release);
    }
    crash_after_claim.pass();
}

// Names the claim about to be attempted, before the CAS: a producer killed right after winning
// it has still said which bytes were its own (recovery.cpp, seal_abandoned_claim).
void PublisherCore::announce(uint64_t start, uint64_t end, uint64_t id) noexcept {
    slot->claim_end.store(end, std::memory_order_relaxed);  // relaxed: published by the release below
    slot->claim_id.store(id, std::memory_order_relaxed);
    // SYNC: pairs with the acquire loads of intent in recovery.cpp.
    slot->intent.store(start + 1, std::memory_order_release);
}

// Gives up the recorded claim before committing it. On a topic with an unblock-timeout the
// daemon may have taken it back: one CAS decides, and the loser must not write the commit word.
[[gnu::always_inline]] inline bool PublisherCore::release_claim(uint64_t position) noexcept {
    if (slot == nullptr) return true;
    const bool recorded = open_claim.tag != 0 && position == open_claim.record;
    const uint64_t tag = recorded ? std::exchange(open_claim, {}).tag : 0;
    if (!revocable) {
        if (recorded) slot->claim_start.store(0, std::memory_order_relaxed);  // relaxed: nobody takes claims back here
        return true;
    }
    uint64_t expected = tag;
    // SYNC: pairs with the CAS in take_back_stalled_claim: exactly one of us clears claim_start.
    if (recorded && slot->claim_start.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) {
        // A daemon that died between marking this claim and its CAS left the mark: lift it.
        uint64_t mark = position + 1;
        if (slot->revoked.load(std::memory_order_relaxed) == mark)  // relaxed: a rare leftover, re-checked by the CAS
            slot->revoked.compare_exchange_strong(mark, 0, std::memory_order_acq_rel);
        return true;
    }
    // An older loan is never recorded, but may have been taken back while it still was.
    // SYNC: acquire pairs with the release store of revoked in take_back_stalled_claim.
    if (!recorded && slot->revoked.load(std::memory_order_acquire) != position + 1) return true;
    return false;  // taken back: commit_record seals it as a skip record, then lifts `revoked`
}

void PublisherCore::write_padding(uint64_t position, uint64_t bytes, uint64_t next_id) noexcept {
    RecordHeader* h = ring.header_at(position);
    layout::write_header(*h, uint32_t(bytes - sizeof(RecordHeader)), RecordType::padding, next_id, 0);
    // SYNC: pairs with the acquire load of `commit` in Ring::inspect.
    h->commit.store(layout::commit_word(position), std::memory_order_release);
}

PublishStatus PublisherCore::commit_record(uint64_t position, RecordType type) noexcept { return commit_claimed(position, type); }

[[gnu::always_inline]] inline PublishStatus PublisherCore::commit_claimed(uint64_t position, RecordType type) noexcept {
    // Taken back: the daemon seals it as a skip record, and so do we, the same way, so the record
    // ends committed even if the daemon died between taking it and sealing it.
    const bool ours = release_claim(position);
    if (!ours) type = RecordType::skip;
    RecordHeader* h = ring.header_at(position);
    if (type != RecordType::data) layout::put_field(h->type, uint16_t(type));
    // SYNC: pairs with the acquire load of `commit` in Ring::inspect: the header and payload
    // written above are visible to any reader that sees this commit word.
    h->commit.store(layout::commit_word(position), std::memory_order_release);
    if (!ours) {  // done writing: the bytes may be reused now
        // SYNC: release pairs with the acquire load of revoked in min_gating_ack.
        slot->revoked.store(0, std::memory_order_release);
        seg.producers().late_commits.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
    }
    wake_readers();
    return ours ? PublishStatus::ok : PublishStatus::revoked;
}

void PublisherCore::wake_readers() noexcept {
    // Nobody can be asleep when no subscriber may sleep: no fence, no check. relaxed: a subscriber
    // that starts counting meanwhile caps its first sleeps (kWakeGraceNs, subscriber.cpp) until
    // every publisher has seen its count.
    if (seg.consumers().may_sleep.load(std::memory_order_relaxed) == 0) return;
    // SYNC: StoreLoad fence, pairs with the seq_cst increment of data_waiters in
    // SubscriberCore::receive: either the sleeper's re-check sees our commit, or we see it waiting.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // relaxed: ordered by the fence above; a reader that announces itself later re-checks the ring.
    if (seg.consumers().data_waiters.load(std::memory_order_relaxed) != 0) {
        futex_signal(seg.producers().data_futex);
    }
}

std::size_t PublisherCore::publish_batch(std::span<const std::span<const std::byte>> payloads, std::chrono::nanoseconds timeout,
                                         PublishStatus& status) noexcept {
    // A claim (padding and records) stays under a quarter ring, as a single message's does.
    const uint64_t chunk_limit = std::max<uint64_t>(ring.capacity() / 8, layout::record_size(seg.max_message()));
    std::size_t done = 0;
    status = PublishStatus::ok;
    while (done < payloads.size()) {
        uint64_t bytes = 0;
        std::size_t n = 0;
        for (; done + n < payloads.size(); ++n) {
            const std::size_t length = payloads[done + n].size();
            if (length > seg.max_message()) break;
            const uint64_t size = layout::record_size(length);
            if (n > 0 && bytes + size > chunk_limit) break;
            bytes += size;
        }
        if (n == 0) {
            status = PublishStatus::too_large;
            return done;
        }
        uint64_t start = 0, position = 0, id = 0;
        status = claim_room(bytes, n, timeout, start, position, id);
        if (status != PublishStatus::ok) return done;
        // Every header before the claim is recorded (as claim() does): shmbusd walks them to seal
        // what a killed publisher left uncommitted, one skip record per message. The payloads go
        // in with them: nothing is committed before the claim is recorded, and nobody takes a
        // claim back here.
        const uint64_t now_ns = timestamp_now();  // one timestamp for the whole claim
        uint64_t pos = position;
        for (std::size_t k = 0; k < n; ++k) {
            const auto& p = payloads[done + k];
            const uint64_t size = layout::record_size(p.size());
            layout::write_header(*ring.header_at(pos), uint32_t(p.size()), RecordType::data, id + k, now_ns);
            if (!p.empty()) std::memcpy(ring.payload_at(pos), p.data(), p.size());
            ring.note_boundary(pos, pos + size, id + k + 1);
            pos += size;
        }
        record_claim(start, position);
        pos = position;
        for (std::size_t k = 0; k < n; ++k) {
            // SYNC: pairs with the acquire load of `commit` in Ring::inspect, as in commit_record.
            ring.header_at(pos)->commit.store(layout::commit_word(pos), std::memory_order_release);
            pos += layout::record_size(payloads[done + k].size());
        }
        // Given up only after the last commit: a publisher killed between two commits leaves its
        // claim recorded, and shmbusd seals the rest (a claim only announced is sealed whole only
        // if its first record is uncommitted). Nobody takes claims back here (not revocable).
        (void)release_claim(position);
        done += n;
        wake_readers();  // once per claim
    }
    return done;
}

}  // namespace detail

}  // namespace shmbus
