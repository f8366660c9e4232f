// shmbusd's recovery work (docs/architecture.md, "Crash recovery"): releasing the slots of dead
// owners, watching owners that have no connection to us, taking back stalled claims, expiring
// forgotten durable cursors. Every action is logged and counted in the topic's segment.
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "control.h"
#include "daemon.h"
#include "futex.h"
#include "proc.h"
#include "recovery.h"
#include "wall_clock.h"

namespace shmbus::daemon {

using detail::field_name;
using detail::SealOutcome;
using layout::ConsumerSlot;
using layout::SlotKind;
using layout::SlotState;

namespace {

constexpr uint64_t kClaimTick = 5'000'000;      // period while claims may need taking back
constexpr uint64_t kExpiryTick = 250'000'000;  // period while only cursors may expire

// Through syscall(): Debian 12's <sys/pidfd.h> declares pidfd_open without C linkage.
int open_pidfd(pid_t pid) { return int(syscall(SYS_pidfd_open, pid, 0)); }

void count(std::atomic<uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }  // relaxed: a statistic

}  // namespace

bool Daemon::owned_by(const ConsumerSlot& s, const Owner& o) const noexcept {
    // acquire: pairs with the release store that attached the slot (ours, or an earlier daemon's).
    return SlotState(s.state.load(std::memory_order_acquire)) == SlotState::attached && s.pid == o.pid &&
           s.start_time == o.start_time;
}

bool Daemon::owned_by(const layout::ProducerSlot& p, const Owner& o) const noexcept {
    // acquire: pairs with the release store that registered the slot (ours, or an earlier daemon's).
    return p.state.load(std::memory_order_acquire) != 0 && p.pid == o.pid && p.start_time == o.start_time;
}

void Daemon::release_consumer(TopicEntry& t, uint32_t slot, const Owner& owner, Release why) {
    auto& s = t.segment.consumer_slot(slot);
    if (!owned_by(s, owner)) return;  // released already, or since given to someone else
    if (s.kind == uint32_t(SlotKind::durable)) {
        s.pid = 0;
        s.detached_ns = detail::WallClock::system_ns();
        // SYNC: release publishes pid and detached_ns with the state; pairs with collect_stats' acquire.
        s.state.store(uint32_t(SlotState::detached), std::memory_order_release);
        if (why.death) count(t.segment.recovery().subscribers_detached);
        spdlog::info("durable subscription '{}' of '{}' detached (pid {}: {}); cursor kept at id {}", field_name(s.name),
                     t.name, owner.pid, why.text, s.ack_id.load(std::memory_order_relaxed));
    } else {
        s.state.store(uint32_t(SlotState::free), std::memory_order_release);
        if (why.death) count(t.segment.recovery().subscribers_freed);
        spdlog::log(why.death ? spdlog::level::info : spdlog::level::debug, "ephemeral subscription slot {} of '{}' freed (pid {}: {})",
                    slot, t.name, owner.pid, why.text);
    }
}

// The owner is gone: seal a claim it left open, so readers move past it at once. A claim it only
// announced may still be a live producer's: then the slot stays taken (still naming the claim,
// so a successor daemon finds it too) and is looked at again every tick.
void Daemon::release_producer(TopicEntry& t, uint32_t slot, const Owner& owner, Release why) {
    if (!owned_by(t.segment.producer_slot(slot), owner)) return;  // released already, or given to someone else
    if (std::find(t.dying.begin(), t.dying.end(), slot) != t.dying.end()) return;
    t.dying.push_back(slot);
    const auto outcome = detail::seal_abandoned_claim(t.segment, slot, t.dying);
    if (outcome != SealOutcome::retry_later) {
        free_producer_slot(t, slot, outcome, why);
        return;
    }
    spdlog::info("topic '{}': pid {} died around a claim that a live producer may own; re-checking", t.name, owner.pid);
    rearm_timer();
}

void Daemon::free_producer_slot(TopicEntry& t, uint32_t slot, SealOutcome outcome, Release why) {
    auto& p = t.segment.producer_slot(slot);
    std::erase(t.dying, slot);
    if (outcome == SealOutcome::sealed) {
        count(t.segment.recovery().dead_claims_sealed);
        spdlog::warn("topic '{}': pid {} died holding an uncommitted message; sealed it as a skip record", t.name, p.pid);
    }
    t.claim_watch[slot] = {};
    if (why.death) count(t.segment.recovery().producers_released);
    spdlog::log(why.death ? spdlog::level::info : spdlog::level::debug, "topic '{}': producer slot {} released (pid {}: {})",
                t.name, slot, p.pid, why.text);
    // SYNC: release, after the claim words were cleared: a daemon that hands the slot out again
    // (acquire load in on_open_topic) starts from a clean slot.
    p.state.store(0, std::memory_order_release);
}

// Slots whose owner died while no daemon watched get the same recovery as a death seen live;
// slots of owners that still run stay theirs, and we watch those owners through pidfds.
void Daemon::reconcile(TopicEntry& t) {
    auto& seg = t.segment;
    auto& r = seg.recovery();
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        auto& s = seg.consumer_slot(i);
        const auto state = SlotState(s.state.load(std::memory_order_acquire));
        if (state == SlotState::reserved) {  // a subscribe the previous daemon never finished
            s.state.store(uint32_t(SlotState::free), std::memory_order_release);
            count(r.subscribers_freed);
            spdlog::info("topic '{}': subscription slot {} was half set up when shmbusd stopped; freed", t.name, i);
        }
        if (state != SlotState::attached) continue;
        if (detail::process_alive(s.pid, s.start_time)) {
            watch_owner(s.pid, s.start_time);
        } else {
            count(r.owners_dead_at_restart);
            release_consumer(t, i, {s.pid, s.start_time}, kDiedWhileDown);
        }
    }
    for (uint32_t i = 0; i < seg.max_producers(); ++i) {
        auto& p = seg.producer_slot(i);
        if (p.state.load(std::memory_order_acquire) == 0) continue;
        if (detail::process_alive(p.pid, p.start_time)) {
            detail::settle_take_back(seg, i);  // one the previous daemon may have left halfway
            watch_owner(p.pid, p.start_time);
        } else {
            count(r.owners_dead_at_restart);
            release_producer(t, i, {p.pid, p.start_time}, kDiedWhileDown);
        }
    }
}

// A pidfd turns readable when its process exits: death is seen at once, without polling, for
// owners that registered with an earlier shmbusd and have no connection to this one.
void Daemon::watch_owner(pid_t pid, uint64_t start_time) {
    for (const auto& [fd, o] : watched_)
        if (o.pid == pid && o.start_time == start_time) return;
    const int fd = open_pidfd(pid);
    if (fd < 0) {
        spdlog::warn("pidfd_open({}): {}; its slots are released when it is found dead later", pid, strerror(errno));
        return;
    }
    // The pid may have been reused between the liveness check and pidfd_open: check again.
    if (detail::process_start_time(pid) != start_time) {
        close(fd);
        return;
    }
    watched_[fd] = {pid, start_time};
    if (epoll_fd_ >= 0) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    }
    spdlog::debug("watching pid {} (owns slots registered before this shmbusd started)", pid);
}

void Daemon::owner_died(int pidfd) {
    const Owner owner = watched_[pidfd];
    watched_.erase(pidfd);
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, pidfd, nullptr);
    close(pidfd);
    registry_->for_each([&](TopicEntry& t) {
        for (uint32_t i = 0; i < t.segment.max_consumers(); ++i) release_consumer(t, i, owner, kExited);
        for (uint32_t i = 0; i < t.segment.max_producers(); ++i) release_producer(t, i, owner, kExited);
    });
}

void Daemon::rearm_timer() {
    if (timer_fd_ < 0) return;
    uint64_t period = 0;
    registry_->for_each([&](TopicEntry& t) {
        if (t.segment.unblock_timeout_ns() != 0 || !t.dying.empty()) period = kClaimTick;
        else if (t.segment.expire_detached_ns() != 0 && period == 0) period = kExpiryTick;
    });
    if (period == tick_ns_) return;
    tick_ns_ = period;
    itimerspec spec{};
    spec.it_interval = {time_t(period / 1'000'000'000), long(period % 1'000'000'000)};
    spec.it_value = spec.it_interval;
    timerfd_settime(timer_fd_, 0, &spec, nullptr);
}

void Daemon::on_tick() {
    const uint64_t now = detail::monotonic_ns();
    const uint64_t wall = detail::WallClock::system_ns();
    registry_->for_each([&](TopicEntry& t) {
        if (!t.dying.empty()) retry_dying(t);
        if (t.segment.unblock_timeout_ns() != 0) unblock_stalled_claims(t, now);
        if (t.segment.expire_detached_ns() != 0) expire_detached(t, wall);
    });
    rearm_timer();
}

// A claim is timed from the first tick that sees it, so it is taken back between one timeout
// and one timeout plus a tick (5 ms) after it was made.
void Daemon::unblock_stalled_claims(TopicEntry& t, uint64_t now) {
    auto& seg = t.segment;
    for (uint32_t i = 0; i < seg.max_producers(); ++i) {
        auto& p = seg.producer_slot(i);
        auto& watch = t.claim_watch[i];
        // acquire: pairs with the producer's release store of claim_start (end and id with it).
        const uint64_t tag = p.state.load(std::memory_order_acquire) != 0 ? p.claim_start.load(std::memory_order_acquire) : 0;
        if (tag != watch.tag) {
            watch = {tag, now};
            continue;
        }
        if (tag == 0 || now - watch.since_ns < seg.unblock_timeout_ns()) continue;
        watch = {};
        if (!detail::take_back_stalled_claim(seg, i, tag)) continue;  // committed just in time
        count(seg.recovery().stalled_claims_unblocked);
        spdlog::warn("topic '{}': pid {} kept message at position {} uncommitted for over {} ms; sealed it as a skip "
                     "record, its late commit will be refused",
                     t.name, p.pid, tag - 1, seg.unblock_timeout_ns() / 1'000'000);
    }
}

void Daemon::expire_detached(TopicEntry& t, uint64_t wall) {
    auto& seg = t.segment;
    const uint64_t expire = seg.expire_detached_ns();
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        auto& s = seg.consumer_slot(i);
        if (SlotState(s.state.load(std::memory_order_acquire)) != SlotState::detached) continue;
        if (wall < s.detached_ns || wall - s.detached_ns < expire) continue;
        uint32_t expected = uint32_t(SlotState::detached);
        // A CAS: only shmbusd writes slot states, but clients map the segment writable; never free
        // a slot whose state changed under us.
        if (!s.state.compare_exchange_strong(expected, uint32_t(SlotState::free), std::memory_order_acq_rel)) continue;
        detail::futex_signal(seg.consumers().space_futex);  // it no longer holds producers back
        count(seg.recovery().cursors_expired);
        spdlog::warn("topic '{}': durable subscription '{}' detached for over {} s; released its cursor (was at id {})",
                     t.name, field_name(s.name), expire / 1'000'000'000, s.ack_id.load(std::memory_order_relaxed));
    }
}

void Daemon::retry_dying(TopicEntry& t) {
    for (const uint32_t slot : std::vector<uint32_t>(t.dying)) {
        const auto outcome = detail::seal_abandoned_claim(t.segment, slot, t.dying);
        if (outcome != SealOutcome::retry_later) free_producer_slot(t, slot, outcome, kExited);
    }
}

}  // namespace shmbus::daemon
