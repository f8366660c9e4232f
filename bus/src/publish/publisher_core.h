// The state behind a Publisher (the public class holds a unique_ptr): the claim, commit and gate
// of the publish path. Internal.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "control/control.h"
#include "core/crash_point.h"
#include "core/ring.h"
#include "core/segment.h"
#include "core/slots.h"
#include "core/wall_clock.h"
#include "shmbus/layout/sequence_table.h"
#include "shmbus/publisher.h"

namespace shmbus::detail {

// A large payload goes into ring memory last written a lap ago (at least 8 such messages ago),
// out of every cache: copied in 4 KiB steps with the lines 16 KiB ahead asked for, so that the
// stores do not wait, one line after another, for lines to come from memory (1 MiB ping-pong
// 68-70 -> 50-55 us). The prefetches carry write intent: PREFETCHW where the target has it,
// otherwise a read prefetch, which brings a line no other core holds in exclusively, so the store
// finds it ready (a -mprfchw build measured the same). Below 256 KiB the destination is often
// still cached, and the steps only cost (64 KiB: 1.9 -> 2.5 us), so memcpy does it alone; and so
// where the record lands in the warm window of a publisher that reuses space (1 MiB ping-pong,
// cores sharing their cache: 48 us stepped, 22.5 us by memcpy).
void copy_large_into_ring(std::byte* to, const std::byte* from, std::size_t n) noexcept;
inline void copy_into_ring(std::byte* to, const std::byte* from, std::size_t n, bool warm) noexcept {
    constexpr std::size_t kFrom = 256 * 1024;
    if (n < kFrom || warm) std::memcpy(to, from, n);
    else copy_large_into_ring(to, from, n);
}

struct PublisherCore {
    PublisherCore(std::shared_ptr<ControlChannel> ch, Segment s, uint32_t slot, PublisherOptions o) noexcept
        : channel(std::move(ch)), seg(std::move(s)), ring(seg), topic(seg.topic()), slot_index(slot),
          slot(slot < seg.max_producers() ? &seg.producer_slot(slot) : nullptr), options(std::move(o)),
          gated(seg.on_full() != OnFull::overwrite), archive_policy(seg.on_full() == OnFull::archive),
          revocable(seg.unblock_timeout_ns() != 0), exclusive(seg.single_producer()), timed(!seg.untimed()),
          reuse_from(options.reuse_space ? kReuseSpaceFrom : UINT64_MAX), crash_in_claim("in_claim"),
          crash_after_claim("after_claim"), crash_before_commit("before_commit"), crash_after_commit("after_commit") {}
    ~PublisherCore();  // gives the producer slot back

    // Claims room for a `length`-byte payload: on success `position` is the record's position
    // and `id` its message id; the caller writes the payload and calls commit_record().
    // `allowance`: bytes a record may take beyond max_message (layout::record_allowance).
    [[nodiscard]] PublishStatus claim(uint64_t length, std::chrono::nanoseconds timeout, uint64_t& position,
                                      uint64_t& id, uint64_t allowance = 0) noexcept;
    // A record holding `payload` alone (no name, options or default TTL: Publisher::publish
    // checks): claimed, copied, written and committed in one function, into which the claim's
    // common path is inlined; what waits for room or wraps early stays out of line.
    [[nodiscard]] PublishStatus publish_payload(std::span<const std::byte> payload, std::chrono::nanoseconds timeout) noexcept;
    // Publishes `payloads` as consecutive messages, as many per claim as fit in an eighth of the
    // ring: one tail update, one timestamp, one wake-up check per claim. Returns how many were
    // published; `status` says why it stopped short (too_large: the next payload exceeds
    // max_message). Not for named producers or revocable topics (Publisher::publish_batch).
    [[nodiscard]] std::size_t publish_batch(std::span<const std::span<const std::byte>> payloads,
                                            std::chrono::nanoseconds timeout, PublishStatus& status) noexcept;
    // Commits (or, with type skip, abandons) a claimed record; `revoked` if the daemon took it back.
    [[nodiscard]] PublishStatus commit_record(uint64_t position, layout::RecordType type) noexcept;

    // A message's record: claimed for `body` bytes (header block and payload) after a named
    // producer's stamp, which is written (with `sequence`) and flagged; `data` points past it.
    struct MessageClaim {
        uint64_t position = 0;
        uint64_t id = 0;
        std::byte* data = nullptr;
    };
    [[nodiscard]] PublishStatus claim_message(uint64_t sequence, uint64_t body, std::chrono::nanoseconds timeout,
                                              MessageClaim& out) noexcept;
    // Commits a message claimed by claim_message; a named producer's through the sequence table
    // (layout/sequence_table.h): `duplicate` (and a skip record) if `sequence` is no longer above
    // the last committed one.
    [[nodiscard]] PublishStatus commit_message(uint64_t position, uint64_t sequence) noexcept;
    // The sequence a named producer's next message carries: `requested`, or one past the highest
    // committed or loaned when 0. 0 if `requested` is not above the last committed (a duplicate).
    [[nodiscard]] uint64_t choose_sequence(uint64_t requested) noexcept;
    // Makes this a named producer over `entry`, reading what earlier holders committed.
    void hold_name(layout::SequenceEntry& entry) noexcept;
    [[nodiscard]] uint64_t deadline_after(std::chrono::nanoseconds timeout) const noexcept;

    std::shared_ptr<ControlChannel> channel;  // keeps the daemon's view of us alive
    Segment seg;
    Ring ring;
    std::string topic;
    uint32_t slot_index;
    layout::ProducerSlot* slot;  // where the open claim is recorded for recovery
    PublisherOptions options;
    bool gated;               // block/fail/archive: durable cursors (archive: the archiver's) hold producers back
    bool archive_policy;      // on-full archive: only the archiver's durable cursor gates
    bool revocable;           // the topic has an unblock-timeout: the daemon may take claims back
    bool exclusive;           // a single-producer topic: this publisher alone writes the tail
    bool timed;               // records carry their publish time (an untimed topic: 0, no clock read)
    uint64_t reuse_from;      // messages this large or larger may wrap early (reuse_space); else UINT64_MAX
    uint64_t default_ttl_ns = seg.default_ttl_ns();  // a message naming no TTL expires this long after publish
    // Bytes this publisher leaves free below what a group holds, so that a member can always move
    // a message waiting out a backoff to the tail (a retry record, with its padding); 0 for the
    // publisher that moves them.
    uint64_t retry_reserve =
        2 * layout::record_size(uint64_t(seg.max_message()) + layout::record_allowance(layout::kRecordRetry | layout::kRecordHasProducer));
    struct OpenClaim {
        uint64_t tag = 0;     // claim_start as recorded in the slot
        uint64_t record = 0;  // position of its record (after any wrap padding)
    } open_claim;
    uint64_t gate_limit = 0;  // claims may end at or below this without re-reading the cursors
    uint64_t horizon = 0;     // claims may end at or below this without raising the horizon
    uint64_t last_id = 0;
    WallClock clock;          // publish timestamps
    // The record's timestamp: the clock on a timed topic, 0 on an untimed one (a branch on a value
    // fixed at attach, always taken the same way).
    [[nodiscard]] uint64_t timestamp_now() noexcept { return timed ? clock.now_ns() : 0; }
    // A named producer: its sequence table entry, the last sequence committed under its name (our
    // copy: only we write it while we hold the name), and the highest committed or loaned.
    layout::SequenceEntry* named = nullptr;
    uint64_t committed_sequence = 0;
    uint64_t highest_sequence = 0;
    CrashPoint crash_in_claim;     // fault injection (crash_point.h)
    CrashPoint crash_after_claim;
    CrashPoint crash_before_commit;
    CrashPoint crash_after_commit;
    CrashPoint crash_in_wrap{"in_wrap"};

private:
    // The hot path's pieces, defined (and inlined) in publisher.cpp alone.
    // claim() in two steps, for a caller that writes the payload first: the claim, announced and
    // won but with nothing written (`start`: where it begins, padding included); then the header
    // and the claim's record. A publisher killed between the two leaves a claim only announced,
    // which shmbusd seals whole (the payload's bytes lie past the header, which stays as it was).
    // Written this way, a small record's first line takes all its stores in one burst just before
    // the commit word (one transfer of that line from a reader spinning on it, not two).
    [[nodiscard]] inline PublishStatus claim_unwritten(uint64_t length, std::chrono::nanoseconds timeout, uint64_t& start,
                                                       uint64_t& position, uint64_t& id, uint64_t allowance = 0) noexcept;
    inline void write_and_record(uint64_t start, uint64_t position, uint64_t length, uint64_t id) noexcept;
    // commit_record's body.
    [[nodiscard]] inline PublishStatus commit_claimed(uint64_t position, layout::RecordType type) noexcept;
    // Claims `size` bytes (whole records) and `ids` message ids with one tail update, waiting on a
    // full ring until the timeout; writes wrap padding. `start`: where the claim begins (padding
    // included); `position`: its first record; `id`: the first record's id.
    [[nodiscard]] inline PublishStatus claim_room(uint64_t size, uint64_t ids, std::chrono::nanoseconds timeout, uint64_t& start,
                                                  uint64_t& position, uint64_t& id) noexcept;
    // claim_room's way past a claim that would end beyond gate_limit: refreshes the gate and, if
    // the ring is still full, waits for room once (`waited`: the caller reads the tail again),
    // with `deadline_ns` set on first use; would_block or timed_out when it may wait no more.
    [[nodiscard]] PublishStatus make_room(uint64_t end, std::chrono::nanoseconds timeout, uint64_t& deadline_ns, bool& waited) noexcept;
    // Records the claim in the producer slot (recovery) once its headers are written.
    void record_claim(uint64_t start, uint64_t position) noexcept;
    // After commits: wakes sleeping subscribers, if any may sleep.
    void wake_readers() noexcept;
    void announce(uint64_t start, uint64_t end, uint64_t id) noexcept;
    [[nodiscard]] inline bool release_claim(uint64_t position) noexcept;
    void refresh_gate() noexcept;
    // The lowest position any gating cursor holds: durable cursors (and claims taken back), and
    // apart from them groups (dispatch word and unsettled messages), whose gate leaves
    // retry_reserve free.
    struct GateFloor {
        uint64_t acked = UINT64_MAX;
        uint64_t group = UINT64_MAX;
    };
    [[nodiscard]] GateFloor min_gating_ack() const noexcept;
    // The lowest position of a claim taken back whose owner may still write it; UINT64_MAX: none.
    [[nodiscard]] uint64_t lowest_taken_back() const noexcept;
    void wait_for_space(uint64_t needed_end, uint64_t deadline_ns) noexcept;
    // PublisherOptions::reuse_space: before a large record of `size` bytes, pads to the ring's end
    // when every reader has read everything, so that the record goes to the ring's start.
    void wrap_early(uint64_t size) noexcept;
    [[nodiscard]] bool everything_read(const TailSnapshot& tail, uint64_t size) const noexcept;
    void write_padding(uint64_t position, uint64_t bytes, uint64_t next_id) noexcept;

public:
    // The start of the ring that large records of `size` bytes cycle through (reuse_space): at least
    // two of them, so that a line written was last read at least a message ago.
    [[nodiscard]] static uint64_t reuse_window(uint64_t size) noexcept { return std::max<uint64_t>(kReuseSpaceWindow, 2 * size); }
    // Whether a `length`-byte payload at `position` lands in that window, memory recent messages
    // used (reuse_space only): still cached, so copied without prefetching.
    [[nodiscard]] bool lands_warm(uint64_t position, uint64_t length) const noexcept {
        return length >= reuse_from && (position & seg.mask()) + length <= reuse_window(layout::record_size(length));
    }
};

// Publishes a group's message moved to the tail to wait out its backoff (layout/record.h,
// kRecordRetry): `info`, then the original record's `data`, flagged `flags`. Never waits.
[[nodiscard]] PublishStatus publish_retry(PublisherCore& core, const layout::RetryInfo& info,
                                          std::span<const std::byte> data, uint16_t flags, uint64_t& position) noexcept;


}  // namespace shmbus::detail
