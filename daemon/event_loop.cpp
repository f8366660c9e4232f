#include "event_loop.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace shmbus::daemon {

EventLoop::~EventLoop() {
    if (epoll_fd_ >= 0) close(epoll_fd_);
}

Status EventLoop::open() {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return make_error(Errc::io_error, std::string("epoll_create1: ") + strerror(errno));
    return ok_status();
}

bool EventLoop::add(int fd, uint32_t events, Handler handler) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        spdlog::warn("epoll_ctl add {}: {}", fd, strerror(errno));
        return false;
    }
    handlers_[fd] = std::move(handler);
    return true;
}

void EventLoop::remove(int fd) {
    if (handlers_.erase(fd) != 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::stop(int code) noexcept {
    stopped_ = true;
    exit_code_ = code;
}

int EventLoop::run() {
    epoll_event events[64];
    while (!stopped_) {
        const int n = epoll_wait(epoll_fd_, events, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            spdlog::critical("epoll_wait: {}", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n && !stopped_; ++i) {
            auto it = handlers_.find(events[i].data.fd);
            if (it == handlers_.end()) continue;  // removed by an earlier handler of this batch
            // A copy: the handler may remove itself (a connection that closes) while it runs.
            const Handler handler = it->second;
            handler(events[i].events);
        }
    }
    return exit_code_;
}

}  // namespace shmbus::daemon
