// Consumer groups on the data path: the words members share (layout/group_region.h) and one
// member's side of the protocol. docs/architecture.md, "Consumer groups", explains it; every
// acquire/release below names its partner.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>
#include <string_view>

#include "core/futex.h"
#include "core/rate_limit.h"
#include "core/ring.h"
#include "core/wall_clock.h"
#include "core/segment.h"
#include "core/slots.h"
#include "shmbus/subscriber.h"

namespace shmbus::detail {

using layout::EntryControl;
using layout::EntryState;

// Members look for messages due for redelivery (and waiting for their key) at most this often.
inline constexpr uint64_t kScanEveryNs = 1'000'000;

// A 64-bit mix (splitmix64): a member's backoff jitter, and the spread of an ordered group's key hashes.
[[nodiscard]] inline uint64_t splitmix(uint64_t& state) noexcept {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// The group's dispatch word: the ack_position/ack_id pair of its consumer slot. Its position
// strictly grows with every CAS (each one steps over a record), so a pair read as position, id,
// position with both positions equal is one the word really held.
struct Dispatch {
    uint64_t position;
    uint64_t id;
};
[[nodiscard]] Dispatch read_dispatch(const layout::ConsumerSlot& group) noexcept;
[[nodiscard]] bool cas_dispatch(layout::ConsumerSlot& group, Dispatch expected, Dispatch desired) noexcept;
// The (control, id) pair of an entry, by 16-byte CAS.
[[nodiscard]] bool cas_entry(layout::GroupEntry& e, uint64_t control, uint64_t id, uint64_t new_control,
                             uint64_t new_id) noexcept;
// The lowest position an unsettled message of the group holds, UINT64_MAX if none: what a
// publisher's gate adds for a group, after it has read the dispatch word (seq_cst).
[[nodiscard]] uint64_t lowest_unsettled(const layout::GroupBlock& b) noexcept;
// The group slot and block of member slot `member`, checked; nullptr if the segment says otherwise.
[[nodiscard]] layout::GroupBlock* group_of_member(const Segment& seg, uint32_t member, uint32_t& group_slot) noexcept;
// True if the member that took an entry with control `c` no longer holds its slot (it died, or
// left): shmbusd frees a member's slot when its process ends.
[[nodiscard]] bool owner_gone(const Segment& seg, EntryControl c) noexcept;
// The delay before the next attempt after `attempt` failed: initial × factor^(attempt-1), capped,
// with jitter (a uniform draw in its upper half) so that retries of a burst spread out.
[[nodiscard]] uint64_t backoff_ns(const layout::GroupSettingsRecord& s, uint32_t attempt, uint64_t random) noexcept;

// The record of `g` a group's block keeps (and the wire carries).
[[nodiscard]] layout::GroupSettingsRecord settings_record(const GroupSettings& g) noexcept;
// And back, for `group info`.
[[nodiscard]] GroupSettings group_settings_of(const layout::GroupSettingsRecord& r) noexcept;
// The settings that live beside the record (GroupBlock::options, 1.11), and back.
[[nodiscard]] uint32_t group_options_of(const GroupSettings& g) noexcept;
void apply_group_options(uint32_t options, GroupSettings& g) noexcept;
// A group's settings as its block holds them.
[[nodiscard]] GroupSettings group_settings_of(const layout::GroupBlock& b) noexcept;
// The interval between deliveries a rate limit makes (0: unlimited).
[[nodiscard]] uint64_t rate_interval_ns(const RateLimit& rate) noexcept;

// Where a group lives: its block and its consumer slot (creating and deleting one is the
// supervisor's: supervisor/group_admin.h).
struct GroupPlace {
    uint32_t block;  // GroupBlock index
    uint32_t slot;   // the group's consumer slot
};
// The active group `name` of the topic, if any.
[[nodiscard]] std::optional<GroupPlace> find_group(const Segment& seg, std::string_view name) noexcept;
// Members of the group in slot `group_slot` that hold their slots now.
[[nodiscard]] std::vector<int32_t> group_member_pids(const Segment& seg, uint32_t group_slot) noexcept;

// What became of a dead letter: published; not now (the topic is full, or cannot be opened yet);
// refused for good as it is (too large for the dead-letter topic).
enum class DeadLetterOutcome : uint8_t { sent, later, refused };

// A message on its way to the dead-letter topic, with its origin.
struct DeadLetterInfo {
    const Message& message;
    std::string_view reason;
    uint64_t first_delivery_ns;  // CLOCK_REALTIME
    uint64_t last_delivery_ns;
};

// One member's state: its window, the entry it is claiming with, when it next looks for
// messages due for redelivery.
class GroupMember {
public:
    // Publishes a dead letter (payload, headers, origin). Not `sent`, the message waits out the
    // longest backoff and is tried again; `refused` (the dead-letter topic can never take it as it
    // is) also marks its entry, so that `topic info` shows what cannot be dead-lettered.
    using DeadLetterOutcome = detail::DeadLetterOutcome;
    using DeadLetter = std::function<DeadLetterOutcome(const DeadLetterInfo& letter)>;
    // Publishes a retry record (publish_retry in publish/publisher_core.h) to the topic, setting
    // `position` to its record's; false if it cannot now.
    using Repark = std::function<bool(const layout::RetryInfo& info, std::span<const std::byte> data, uint16_t flags,
                                      uint64_t& position)>;

    GroupMember(const Segment& seg, uint32_t member_slot, uint32_t tag, uint32_t group_slot, layout::GroupBlock& block,
                DeadLetter dead_letter, Repark repark = {}) noexcept;

    // Delivers up to `max` messages: those due for redelivery first, then new ones, never holding
    // more than the window. `owner` and the message's bookkeeping let settle() check it later.
    [[nodiscard]] PollResult poll(Handler& handler, std::size_t max, const void* owner, bool auto_ack) noexcept;
    enum class Settle : uint8_t { ack, nack, reject };
    // `delay_ns` for nack: 0 picks the group's backoff. `reason`: the dead letter's, for reject or a
    // nack on the last allowed attempt (empty: a nack says so).
    [[nodiscard]] AckStatus settle(const Message& m, Settle how, uint64_t delay_ns, std::string_view reason) noexcept;
    [[nodiscard]] uint32_t held() const noexcept { return held_; }
    // Where this member's dead letters go instead (a service group's: back to their callers).
    void redirect_dead_letters(DeadLetter dead_letter) noexcept { dead_letter_ = std::move(dead_letter); }

    // Sleeping. A member about to sleep first reads the wake word (wake_word(), seq_cst), then
    // tries to become the group's watcher: the watcher sleeps on the topic's data futex, everyone
    // else on the wake word. A watcher that wakes stops watching and wakes one other member, which
    // becomes the next watcher. The read-then-try order is what makes a handover impossible to
    // miss: a member that failed to become watcher read the wake word before the watcher's bump.
    [[nodiscard]] std::atomic<uint32_t>& wake_word() const noexcept { return block_.wake_futex; }
    [[nodiscard]] std::atomic<uint32_t>& wake_sleepers() const noexcept { return block_.wake_sleepers; }
    // True if this member is (now) the watcher: the word was free, ours, or its holder is gone.
    [[nodiscard]] bool try_watch() noexcept;
    // Gives the watch up (if ours) and wakes one member asleep on the wake word.
    void stop_watching() noexcept;
    // Called by a member that woke and found work: if messages are still waiting to be taken,
    // wakes one more member, so that a backlog draws in as many members as it needs.
    void wake_another_if_backlog() noexcept;
    ~GroupMember();
    // When the group's rate limit allows the next delivery (CLOCK_MONOTONIC), if the last poll
    // stopped for it; 0 otherwise.
    [[nodiscard]] uint64_t rate_ready_ns() const noexcept { return rate_.ready_ns(); }
    [[nodiscard]] bool corrupt() const noexcept { return corrupt_; }
    // Whether a new message waits at the group's dispatch word and this member's window has room
    // for it (wait sets: a poll now would take something, unless another member takes it first).
    [[nodiscard]] bool new_message_waiting() const noexcept;
    // When (CLOCK_MONOTONIC) a poll should next look for messages due: the earliest retry,
    // delivery time or visibility deadline the last scan saw or this member set since, and never
    // before the next scan may run; UINT64_MAX when none. A sleeping member wakes by then, so a
    // delayed or retried message is not left waiting for the sleep cap.
    [[nodiscard]] uint64_t next_due_ns() const noexcept {
        return next_due_ns_ == UINT64_MAX ? UINT64_MAX : std::max(next_due_ns_, next_scan_ns_);
    }

private:
    [[nodiscard]] uint64_t held_control(uint32_t attempt) const noexcept {
        return EntryControl{EntryState::held, attempt, member_slot_, tag_}.pack();
    }
    [[nodiscard]] uint64_t transitional(EntryState s, uint32_t attempt) const noexcept {
        return EntryControl{s, attempt, member_slot_, tag_}.pack();
    }
    // An entry this member claims with (state claiming), or nullptr when the table is full.
    [[nodiscard]] layout::GroupEntry* claim_entry() noexcept;
    void drop_claim_entry() noexcept;
    void redeliver_due(Handler& handler, std::size_t max, uint32_t& count, const void* owner, bool auto_ack) noexcept;
    // A message of ours, taken (state stealing or claiming), that has used up its deliveries, or
    // was rejected: to the dead-letter topic (true), or back to backoff if that fails.
    bool dead_letter(layout::GroupEntry& e, const Message& m, std::string_view reason) noexcept;
    // Just before a delivery of a message of ours (taken, `deliveries` made so far), by its meta
    // block: an expired one is not delivered (freed, or dead-lettered with the reason `expired`
    // where the group says so); one whose delivery time is ahead waits in backoff until then, its
    // deliveries unchanged. True: deliver it now. A record without a meta block costs one test.
    [[nodiscard]] bool due_and_alive(layout::GroupEntry& e, uint64_t id, uint32_t deliveries, const RecordInfo& r) noexcept;

    // Ordered by key (docs/architecture.md, "Ordered by key"). An entry holds its message's key
    // hash from the moment it is taken until it is settled, without a gap: a placeholder (state
    // moved) while the message waits as a retry record, which takes the same entry back. So a
    // message may go when no other entry holds an earlier message (lower id) of its key: no
    // earlier one can appear later, since new messages are taken in id order.
    // The key hash of the message in `r` (0: it has none).
    [[nodiscard]] uint64_t record_key_hash(const RecordInfo& r) const noexcept;
    [[nodiscard]] bool first_of_key(const layout::GroupEntry& e, uint64_t id, uint64_t hash) const noexcept;
    // Just before delivering the message of ours in `e`: true if it may go now; otherwise it waits
    // (state blocked) and is looked at again by the next scans.
    [[nodiscard]] bool key_turn(layout::GroupEntry& e, uint64_t id, uint32_t deliveries) noexcept;
    void to_blocked(layout::GroupEntry& e, uint32_t deliveries) noexcept;
    // Whether `r` is the record of the message with id `id`: itself, or (ordered groups, whose
    // entries keep a message's first id) a retry record of this group carrying it.
    [[nodiscard]] bool record_holds(const RecordInfo& r, uint64_t id) const noexcept;
    // An ordered group's keyed retry record at the dispatch word `d`: its placeholder takes it back.
    enum class Retake : uint8_t { taken, again, later };
    [[nodiscard]] Retake retake(Dispatch d, const RecordInfo& r, uint64_t hash, Handler& handler, uint32_t& count,
                                const void* owner, bool auto_ack) noexcept;
    // The entry table is full: placeholders take their retry records back where they lie (their
    // deadline_ns holds the position), ahead of the dispatch word, which then steps over them as
    // second copies. So a full table of messages waiting for their keys always moves on.
    void retake_ahead(Handler& handler, std::size_t max, uint32_t& count, const void* owner, bool auto_ack) noexcept;
    // What follows taking a message back from its retry record into `e` (ours): its backoff, its
    // last delivery, its expiry, its key's turn, or its delivery.
    void after_retake(layout::GroupEntry& e, const layout::RetryInfo& info, const RecordInfo& r, Handler& handler,
                      uint32_t& count, const void* owner, bool auto_ack) noexcept;
    // The message entry `e` holds (its record in place), as handed to a handler or a dead letter.
    [[nodiscard]] Message message_of(uint64_t id, uint32_t attempt, const RecordInfo& r) const noexcept;
    void hold_and_deliver(layout::GroupEntry& e, uint64_t id, uint32_t attempt, const RecordInfo& r, Handler& handler,
                          const void* owner, bool auto_ack) noexcept;
    void free_entry(layout::GroupEntry& e) noexcept;
    void wake_one_sleeper() noexcept;
    // A retry record of ours just taken from the dispatch word into `e`: back to backoff until it
    // is due, or delivered now.
    void take_retry(layout::GroupEntry& e, uint64_t id, const RecordInfo& r, Handler& handler, uint32_t& count,
                    const void* owner, bool auto_ack) noexcept;
    // A backoff entry that has fallen half a ring behind the tail moves to the tail as a retry
    // record, so that waiting for its retry never holds publishers back.
    void repark(layout::GroupEntry& e, uint64_t control, uint64_t id, EntryControl c, uint64_t deadline) noexcept;
    // A token of the group's rate limit for the next delivery (kept until that delivery happens).
    [[nodiscard]] bool take_token() noexcept {
        return !rate_.limited() || rate_.take(block_.rate_tat_ns, monotonic_ns());
    }
    [[nodiscard]] AckStatus too_late() noexcept;
    void to_backoff(layout::GroupEntry& e, uint32_t attempt, uint64_t delay_ns) noexcept;
    void wake_publishers() noexcept;

    const Segment& seg_;
    Ring ring_;
    uint32_t member_slot_;
    uint32_t tag_;
    layout::ConsumerSlot& group_;
    layout::GroupBlock& block_;
    layout::GroupSettingsRecord settings_;  // fixed at the group's creation: a copy
    bool ordered_;                          // GroupBlock::options & kOrderedByKey, likewise fixed
    DeadLetter dead_letter_;
    Repark repark_;
    uint32_t group_slot_;
    layout::GroupEntry* claiming_ = nullptr;
    // The control word of each entry this member was given and has not settled (0: none): a
    // second settle of one message finds 0 and changes nothing, and `held_` counts the non-zero.
    std::array<uint64_t, layout::kGroupEntries> given_{};
    uint32_t held_ = 0;
    uint32_t next_free_hint_ = 0;
    uint64_t next_scan_ns_ = 0;
    uint64_t next_due_ns_ = UINT64_MAX;
    uint64_t random_;
    RateGate rate_;  // on the group's bucket word, block_.rate_tat_ns
    bool corrupt_ = false;
    WallClock clock_;
};

}  // namespace shmbus::detail
