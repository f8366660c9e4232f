// shmbusd's event loop: one epoll set and a table from descriptor to handler. A listener, a
// timer, a signal or a watched process is added by registering its descriptor; the loop itself
// never changes for a new kind of event.
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>

#include "shmbus/result.h"

namespace shmbus::daemon {

class EventLoop {
public:
    using Handler = std::function<void(uint32_t events)>;  // epoll event bits

    EventLoop() = default;
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;
    ~EventLoop();

    [[nodiscard]] Status open();
    // Calls `handler` whenever `fd` is ready for `events`. The loop does not own `fd`.
    [[nodiscard]] bool add(int fd, uint32_t events, Handler handler);
    // Stops watching `fd`; safe from inside any handler, its own included.
    void remove(int fd);
    // Dispatches events until stop(); returns stop's code, or 1 if epoll fails.
    int run();
    void stop(int code) noexcept;

private:
    int epoll_fd_ = -1;
    std::unordered_map<int, Handler> handlers_;
    bool stopped_ = false;
    int exit_code_ = 0;
};

}  // namespace shmbus::daemon
