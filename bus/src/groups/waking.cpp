// The words a consumer group's members sleep by (docs/architecture.md, "Waiting"): one watcher on
// the topic's data futex, the others on the group's wake word, handed over on waking.
#include "core/futex.h"
#include "groups/group.h"

namespace shmbus::detail {

using layout::GroupBlock;
using layout::GroupEntry;

bool GroupMember::try_watch() noexcept {
    const uint64_t mine = uint64_t(tag_) << 32 | (member_slot_ + 1);
    // SYNC: seq_cst, after the sleeper's seq_cst load of the wake word: pairs with the seq_cst
    // store of 0 and increment of the wake word in stop_watching (see wake_word()).
    uint64_t seen = block_.watcher.load(std::memory_order_seq_cst);
    if (seen == mine) return true;
    if (seen != 0 && !owner_gone(seg_, EntryControl{EntryState::held, 0, uint32_t(seen & 0xffffffff) - 1, uint32_t(seen >> 32)}))
        return false;
    return block_.watcher.compare_exchange_strong(seen, mine, std::memory_order_seq_cst);
}

void GroupMember::stop_watching() noexcept {
    uint64_t mine = uint64_t(tag_) << 32 | (member_slot_ + 1);
    if (!block_.watcher.compare_exchange_strong(mine, 0, std::memory_order_seq_cst)) return;
    // SYNC: seq_cst (in wake_one_sleeper), after the store of 0 above; pairs with the sleeper's
    // seq_cst load of the wake word and then of watcher in try_watch: either it sees the watch
    // free, or it sleeps on a word we change here.
    wake_one_sleeper();
}

void GroupMember::wake_one_sleeper() noexcept {
    // SYNC: seq_cst increment, then the seq_cst load of wake_sleepers; pairs with the sleeper's
    // seq_cst increment of wake_sleepers and then load of the wake word (wait_as_member): either
    // we see it and wake it, or it sees our increment and does not sleep.
    block_.wake_futex.fetch_add(1, std::memory_order_seq_cst);
    if (block_.wake_sleepers.load(std::memory_order_seq_cst) != 0) futex_wake_one(block_.wake_futex);
}

void GroupMember::wake_another_if_backlog() noexcept {
    // relaxed: a hint; a stale tail only wakes one member more or less.
    if (ring_.tail_position(std::memory_order_relaxed) > read_dispatch(group_).position) wake_one_sleeper();
}

GroupMember::~GroupMember() { stop_watching(); }

}  // namespace shmbus::detail
