// The state behind a WaitSet (shmbus/wait_set.h). Internal; docs/wait-sets.md explains the
// protocol.
//
// Waiting is the subscribers' own protocol (core/data_wait.h), done for many at once: count
// ourselves in each topic's data_waiters, read each data futex, look at every subscriber, and
// sleep on all the futexes together (futex_waitv) only if none had anything. A publisher that
// commits meanwhile either is seen by the look, or sees us counted and bumps the futex, which
// ends the sleep. Publishers are unchanged: they wake a set as they wake one sleeping receive().
//
// The descriptor: watcher threads (one per kWordsPerWatcher subscribers) do that sleep for the
// application's thread, and write to an eventfd when it ends. The application's thread alone reads
// subscriber state; watchers only touch the futex words and the counters, under `lock`, and only
// while the set is armed (the counters are then ours to give back, and the segments mapped).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "core/futex.h"
#include "shmbus/wait_set.h"

namespace shmbus::detail {

struct SubscriberCore;

// Removes `sub` from `set` (a subscriber being destroyed leaves its set).
void leave_wait_set(WaitSetCore& set, SubscriberCore& sub) noexcept;

struct WaitSetCore {
    // One watcher's words: up to 127 subscribers' data futexes and its own control word.
    static constexpr std::size_t kWordsPerWatcher = kMaxWaitWords - 1;

    struct Member {
        SubscriberCore* sub;
        uint64_t next_scan_ns;  // group members: when to report it ready for a redelivery scan
    };
    std::vector<Member> members;
    std::vector<Subscriber*> ready;  // what wait() returned last
    std::vector<WaitWord> words;     // members' data futexes, in members' order, with what was read

    // Counted in every member's data_waiters (and `words` read after that). Guarded by `lock`
    // whenever watchers run.
    bool registered = false;

    // The descriptor (fd mode), once fd() was called.
    int event_fd = -1;
    bool event_pending = false;  // we wrote to event_fd and have not read it since
    std::mutex lock;
    bool armed = false;        // watchers sleep on `words` until one fires; guarded by `lock`
    uint64_t arm_deadline = 0; // fire by then even if no word moves (0: no deadline); `lock`
    uint64_t generation = 0;   // bumped by every arm and disarm; `lock`
    bool stopping = false;     // `lock`
    // Bumped (and woken) after every change of the above, so that a watcher asleep on old words
    // looks again. Private to this process.
    std::atomic<uint32_t> control{0};
    std::vector<std::thread> watchers;

    ~WaitSetCore();
    [[nodiscard]] Status add(SubscriberCore& sub) noexcept;
    bool remove(SubscriberCore& sub) noexcept;
    [[nodiscard]] Result<std::span<Subscriber* const>> wait(std::chrono::nanoseconds timeout) noexcept;
    [[nodiscard]] Result<int> fd() noexcept;

private:
    // Members that may deliver now, into `ready`. Also sets `look_by`: the earliest time a sleep
    // must end to look again without a wake (0: none).
    bool collect_ready(uint64_t now, uint64_t& look_by) noexcept;
    void register_waiting() noexcept;    // counts us in each member's data_waiters, reads the futexes
    void unregister_waiting() noexcept;  // gives the counts back
    // Waits on the futexes in this thread (127 members at most): until one moves or `until`.
    void sleep_here(uint64_t until) noexcept;
    // fd mode: hands the sleep to the watchers / takes it back from them.
    [[nodiscard]] Status arm(uint64_t look_by) noexcept;
    void disarm() noexcept;
    void kick_watchers() noexcept;
    void signal_event() noexcept;
    void clear_event() noexcept;
    [[nodiscard]] Status start_watchers() noexcept;
    void watch(std::size_t first) noexcept;  // a watcher thread's loop: words [first, first + kWordsPerWatcher)
    void stop_watchers() noexcept;
    [[nodiscard]] Result<std::span<Subscriber* const>> wait_on_event(uint64_t deadline) noexcept;
};

}  // namespace shmbus::detail
