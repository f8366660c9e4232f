#include "watchers.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/futex.h"
#include "core/wall_clock.h"

namespace shmbus::daemon {

namespace {
// Through syscall(): Debian 12's <sys/pidfd.h> declares pidfd_open without C linkage.
int open_pidfd(pid_t pid) { return int(syscall(SYS_pidfd_open, pid, 0)); }
}  // namespace

Watchers::~Watchers() {
    for (const auto& [pidfd, owner] : watched_) {
        loop_.remove(pidfd);
        close(pidfd);
    }
    if (timer_fd_ >= 0) {
        loop_.remove(timer_fd_);
        close(timer_fd_);
    }
}

Status Watchers::open_timer() {
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (timer_fd_ < 0) return make_error(Errc::io_error, std::string("timerfd_create: ") + strerror(errno));
    if (!loop_.add(timer_fd_, EPOLLIN, [this](uint32_t) {
            uint64_t expirations = 0;
            if (read(timer_fd_, &expirations, sizeof expirations) == sizeof expirations) on_tick();
        }))
        return make_error(Errc::io_error, "cannot watch the tick timer");
    rearm_timer();
    return ok_status();
}

void Watchers::watch(const detail::Process& owner) {
    for (const auto& [fd, o] : watched_)
        if (o == owner) return;
    const int fd = open_pidfd(owner.pid);
    if (fd < 0) {
        spdlog::warn("pidfd_open({}): {}; its slots are released when it is found dead later", owner.pid, strerror(errno));
        return;
    }
    // The pid may have been reused between the liveness check and pidfd_open: check again.
    if (detail::process_start_time(owner.pid) != owner.start_time || !loop_.add(fd, EPOLLIN, [this, fd](uint32_t) { on_exit(fd); })) {
        close(fd);
        return;
    }
    watched_[fd] = owner;
    spdlog::debug("watching pid {} (owns slots registered before this shmbusd started)", owner.pid);
}

void Watchers::on_exit(int pidfd) {
    const detail::Process owner = watched_[pidfd];
    watched_.erase(pidfd);
    loop_.remove(pidfd);
    close(pidfd);
    registry_.for_each([&](TopicEntry& t) { (void)t.supervisor.release_process(owner, kExited); });
    rearm_timer();
}

void Watchers::rearm_timer() {
    if (timer_fd_ < 0) return;
    uint64_t period = 0;
    registry_.for_each([&](TopicEntry& t) {
        const uint64_t p = t.supervisor.tick_period();
        if (p != 0 && (period == 0 || p < period)) period = p;
    });
    if (period == tick_ns_) return;
    tick_ns_ = period;
    itimerspec spec{};
    spec.it_interval = {time_t(period / 1'000'000'000), long(period % 1'000'000'000)};
    spec.it_value = spec.it_interval;
    timerfd_settime(timer_fd_, 0, &spec, nullptr);
}

void Watchers::on_tick() {
    const uint64_t now = detail::monotonic_ns();
    const uint64_t wall = detail::WallClock::system_ns();
    registry_.for_each([&](TopicEntry& t) { t.supervisor.tick(now, wall); });
    rearm_timer();
}

}  // namespace shmbus::daemon
