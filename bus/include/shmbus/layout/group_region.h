// Layout of the group region of a topic (layout 1.5; 1.4's shorter entries are not read): the state of its consumer groups, in the
// cursor object after the consumer region, at the segment header's group_offset. Members
// (subscribers of the group) write it; publishers read it to compute their gate; shmbusd writes a
// block's settings when it creates the group. docs/architecture.md, "Consumer groups", explains
// the protocol.
//
// A group is three things:
//   - a consumer slot of kind `group`, whose ack_position/ack_id pair is the group's dispatch
//     word: the next message no member has taken yet. Members move it with a 16-byte CAS; like a
//     durable cursor it gates publishers on block/fail topics;
//   - a GroupBlock here (the slot's `reserved0` names it): settings, counters and a table of
//     entries, one per message taken and not yet settled (in flight, or waiting out a backoff).
//     Publishers gate on the lowest position an entry holds, too, so an unsettled message is
//     never overwritten;
//   - one consumer slot of kind `member` per member process (its `reserved0` names the group's
//     slot); shmbusd frees it when the member dies, which is how the others learn of the death.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmbus/layout/consumer_region.h"
#include "shmbus/layout/segment_header.h"

namespace shmbus::layout {

inline constexpr uint32_t kDefaultMaxGroups = 4;
inline constexpr uint32_t kGroupEntries = 256;  // messages a group may hold unsettled at once
inline constexpr std::size_t kMaxGroupName = kMaxSubscriptionName;

enum class GroupState : uint32_t { free = 0, active = 1 };
// GroupBlock::options (1.11), fixed at creation with the settings.
enum GroupOptions : uint32_t {
    kDeadLetterExpired = 1,  // an expired message goes to the dead-letter topic (reason `expired`), not away
    kOrderedByKey = 2,       // messages of one key are processed one at a time, in id order (entries' key_hash)
    kService = 4,            // its members are responders (shmbus/request.h): a request goes to one of them,
                             // and one whose responder dies is answered "responder died", not retried
};
inline constexpr uint32_t kKnownGroupOptions = kDeadLetterExpired | kOrderedByKey | kService;
// The position of a placeholder entry (EntryState::moved): it holds no record, so it gates nothing.
inline constexpr uint64_t kNoPosition = UINT64_MAX;

// An entry's control word: state (4 bits) | delivery attempt (12) | owner member slot (16) |
// owner tag (32, the low half of the member slot's owner_token when it took the entry). The pair
// (control, id) changes only by 16-byte CAS, and every change either changes the id (a new
// message) or raises the attempt or changes the state, so a CAS never succeeds on a stale view.
enum class EntryState : uint64_t {
    free = 0,
    claiming = 1,  // the owner is taking the message at `position` from the dispatch word
    held = 2,      // delivered to the owner; redelivered once `deadline_ns` passes or it dies
    stealing = 3,  // the owner is taking it over from an expired or dead holder
    nacking = 4,   // the owner is moving it to backoff
    backoff = 5,   // waiting until `deadline_ns` to be delivered again; no owner
    moving = 6,    // the owner is moving a backoff message to the ring's tail (a retry record)
    // 1.11, ordered-by-key groups only (GroupBlock::options & kOrderedByKey):
    blocked = 7,   // taken, waits for an earlier message of its key to settle; no owner; looked at again
                   // once `deadline_ns` passes, and moved to the tail like a backoff message
    moved = 8,     // a placeholder: the message (`id`, `key_hash`) waits as a retry record at the tail;
                   // position kNoPosition. The member that takes the retry record takes this entry
                   // back, so the message holds its key without a gap until it is settled
};
inline constexpr uint64_t kMaxAttempt = (1u << 12) - 1;

struct EntryControl {
    EntryState state;
    uint32_t attempt;  // deliveries so far (saturates at kMaxAttempt)
    uint32_t owner;    // member consumer slot
    uint32_t tag;      // that slot's owner tag when taken
    [[nodiscard]] constexpr uint64_t pack() const noexcept {
        return uint64_t(state) | uint64_t(attempt & kMaxAttempt) << 4 | uint64_t(owner & 0xffff) << 16 | uint64_t(tag) << 32;
    }
    [[nodiscard]] static constexpr EntryControl unpack(uint64_t w) noexcept {
        return {EntryState(w & 0xf), uint32_t(w >> 4) & uint32_t(kMaxAttempt), uint32_t(w >> 16) & 0xffff, uint32_t(w >> 32)};
    }
};

// One line per entry: members settle entries concurrently, and neighbours must not share a line.
struct alignas(kCacheLine) GroupEntry {
    std::atomic<uint64_t> control;      // EntryControl; with `id`, changed by 16-byte CAS only
    std::atomic<uint64_t> id;           // message id
    std::atomic<uint64_t> position;     // its record's position: held back from publishers while not free
    std::atomic<uint64_t> deadline_ns;  // CLOCK_MONOTONIC: visibility deadline (held) or retry time (backoff);
                                        // written only in a transitional state by its owner
    // CLOCK_REALTIME of the first and the latest delivery, for a dead letter's origin and the age
    // of the oldest unsettled message; written, like deadline_ns, only in a transitional state.
    std::atomic<uint64_t> first_delivery_ns;
    std::atomic<uint64_t> last_delivery_ns;
    // Non-zero while the message waits because its dead-letter topic refused it for good (too
    // large for it, or headers it cannot take): `topic info` counts these. Written, like
    // deadline_ns, only in a transitional state; zero in segments made before it had a meaning.
    std::atomic<uint64_t> dead_letter_refused;
    // 1.11: in an ordered-by-key group, a hash of the message's key (never 0); 0 for a message
    // without one, and in every other group. Written with id and position, before the entry is
    // published (the dispatch CAS); kept while the entry holds the message, placeholder included.
    std::atomic<uint64_t> key_hash;
};
static_assert(std::is_standard_layout_v<GroupEntry>);
static_assert(offsetof(GroupEntry, control) == 0);
static_assert(offsetof(GroupEntry, id) == 8);
static_assert(offsetof(GroupEntry, position) == 16);
static_assert(offsetof(GroupEntry, deadline_ns) == 24);
static_assert(offsetof(GroupEntry, first_delivery_ns) == 32);
static_assert(offsetof(GroupEntry, last_delivery_ns) == 40);
static_assert(offsetof(GroupEntry, dead_letter_refused) == 48);
static_assert(offsetof(GroupEntry, key_hash) == 56);
static_assert(sizeof(GroupEntry) == kCacheLine);

// Settings, fixed when the group is created.
struct GroupSettingsRecord {
    uint32_t window;              // unsettled messages one member may hold
    uint32_t max_deliveries;      // attempts before the dead-letter topic; 0: unlimited
    uint64_t visibility_ns;       // a held message not settled in this long is redelivered
    uint64_t backoff_initial_ns;  // first retry delay after a nack
    uint64_t backoff_max_ns;      // cap of the exponential backoff
    uint32_t backoff_factor_x100; // growth per attempt, in hundredths (200: doubles)
    uint32_t rate_burst;          // deliveries the rate limit allows at once (>= 1 when rate_interval_ns != 0)
    uint64_t rate_interval_ns;    // the group's rate limit: one delivery per interval; 0: unlimited
};
static_assert(std::is_standard_layout_v<GroupSettingsRecord>);
static_assert(offsetof(GroupSettingsRecord, visibility_ns) == 8);
static_assert(offsetof(GroupSettingsRecord, backoff_factor_x100) == 32);
static_assert(offsetof(GroupSettingsRecord, rate_burst) == 36);
static_assert(offsetof(GroupSettingsRecord, rate_interval_ns) == 40);
static_assert(sizeof(GroupSettingsRecord) == 48);

struct alignas(kCacheLine) GroupBlock {
    // --- line 0-1: identity and settings, written by shmbusd before `state` ---
    std::atomic<uint32_t> state;   // GroupState; stored last with release
    uint32_t consumer_slot;        // the group's slot (its dispatch word)
    char name[kMaxGroupName + 1];
    GroupSettingsRecord settings;
    // Sleeping members (docs/architecture.md, "Waiting"): one of them, the watcher, sleeps on the
    // topic's data futex; the others sleep on wake_futex, and a watcher that wakes hands over to
    // one of them. So a publish wakes one member of a group, not all.
    std::atomic<uint64_t> watcher;        // owner tag << 32 | (member slot + 1); 0: nobody watches
    std::atomic<uint32_t> wake_futex;     // bumped by a watcher handing over
    std::atomic<uint32_t> wake_sleepers;  // members asleep on wake_futex (a hint for the waker)
    // 1.11, in what was padding (zero before): GroupOptions, written by shmbusd with the settings;
    // and the messages members did not deliver because they had expired (a statistic, relaxed).
    uint32_t options;
    std::atomic<uint32_t> expired;
    // --- line 2: counters, written by members (relaxed statistics) ---
    std::atomic<uint64_t> delivered;      // first deliveries
    std::atomic<uint64_t> acked;
    std::atomic<uint64_t> redelivered;    // deliveries after the first
    std::atomic<uint64_t> nacked;
    std::atomic<uint64_t> dead_lettered;
    std::atomic<uint64_t> ack_too_late;   // acks refused: the message had been given to another member
    // The rate limit's theoretical arrival time (GCRA, CLOCK_MONOTONIC): a delivery may happen
    // once now >= rate_tat_ns - burst × interval; each one raises it by the interval. 0: fresh.
    std::atomic<uint64_t> rate_tat_ns;
    std::atomic<uint64_t> reparked;       // messages in backoff moved to the ring's tail (kRecordRetry)
    GroupEntry entries[kGroupEntries];
};
static_assert(std::is_standard_layout_v<GroupBlock>);
static_assert(offsetof(GroupBlock, consumer_slot) == 4);
static_assert(offsetof(GroupBlock, name) == 8);
static_assert(offsetof(GroupBlock, settings) == 56);
static_assert(offsetof(GroupBlock, watcher) == 104);
static_assert(offsetof(GroupBlock, wake_futex) == 112);
static_assert(offsetof(GroupBlock, wake_sleepers) == 116);
static_assert(offsetof(GroupBlock, options) == 120);
static_assert(offsetof(GroupBlock, expired) == 124);
static_assert(offsetof(GroupBlock, delivered) == 2 * kCacheLine);
static_assert(offsetof(GroupBlock, rate_tat_ns) == 2 * kCacheLine + 48);
static_assert(offsetof(GroupBlock, reparked) == 2 * kCacheLine + 56);
static_assert(offsetof(GroupBlock, entries) == 3 * kCacheLine);
static_assert(sizeof(GroupBlock) == 3 * kCacheLine + kCacheLine * kGroupEntries);

}  // namespace shmbus::layout
