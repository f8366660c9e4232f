// What shmbusd watches besides its clients' connections: the processes that own slots but have
// no connection to it (they registered with an earlier shmbusd), through pidfds, and the tick
// timer that drives each topic supervisor's periodic work. Both live in the event loop.
#pragma once

#include <cstdint>
#include <unordered_map>

#include "event_loop.h"
#include "core/proc.h"
#include "registry.h"

namespace shmbus::daemon {

class Watchers {
public:
    Watchers(EventLoop& loop, Registry& registry) : loop_(loop), registry_(registry) {}
    Watchers(const Watchers&) = delete;
    Watchers& operator=(const Watchers&) = delete;
    ~Watchers();

    [[nodiscard]] Status open_timer();
    // Releases every slot of `owner` when it exits: death is seen at once, without polling.
    void watch(const detail::Process& owner);
    // Sets the tick period to the shortest any topic needs now (or stops it).
    void rearm_timer();

private:
    void on_exit(int pidfd);
    void on_tick();

    EventLoop& loop_;
    Registry& registry_;
    std::unordered_map<int, detail::Process> watched_;  // pidfd -> live owner of slots
    int timer_fd_ = -1;
    uint64_t tick_ns_ = 0;  // current timer period; 0: disarmed
};

}  // namespace shmbus::daemon
