// shmbusd's connection server: the listening socket, one Conn per client, frame decoding and
// routing. Every frame is checked against a table of routes (type, exact body size, names that
// must be terminated) before a handler sees it; a malformed or unexpected frame gets an error
// reply and the connection is closed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "connection.h"
#include "event_loop.h"
#include "handlers/handlers.h"

namespace shmbus::daemon {

class Server {
public:
    Server(EventLoop& loop, RequestHandlers& handlers);
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;
    ~Server();

    // Binds the bus socket (mode 0600, or 0660 and owned by `group` when given) and starts accepting.
    [[nodiscard]] Status listen(const std::string& dir, std::optional<gid_t> group = std::nullopt);
    [[nodiscard]] const std::string& socket_path() const noexcept { return socket_path_; }
    // Serves again every request a handler parked (a topic being created has made progress);
    // one still waiting stays parked.
    void resume_parked();

private:
    void accept_clients();
    [[nodiscard]] bool watch(int fd);  // reads `fd`'s requests as they come
    void serve(Conn& c);  // one readable event
    // Decodes and handles one frame; parks it with `c` if the handler did. False: close `c`.
    [[nodiscard]] bool handle_frame(Conn& c, std::vector<std::byte>& frame);
    [[nodiscard]] bool dispatch(Conn& c, const protocol::FrameHeader& h, const std::byte* body, std::size_t size);
    void disconnect(int fd);
    [[nodiscard]] bool refuse_one_client();
    void resume_listening();

    EventLoop& loop_;
    RequestHandlers& handlers_;
    int listen_fd_ = -1;
    std::string socket_path_;
    std::unordered_map<int, Conn> conns_;
    uint64_t next_session_ = 0;  // random start, then counts up: unique across daemon runs in practice
    int spare_fd_ = -1;          // given up to accept (and close) a client when descriptors run out
    bool listening_paused_ = false;
    uint64_t parked_so_far_ = 0;
    uint64_t refused_ = 0;
    std::chrono::steady_clock::time_point last_refusal_log_{};
};

}  // namespace shmbus::daemon
