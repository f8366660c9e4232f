// The client side of the control connection: one SOCK_SEQPACKET socket to shmbusd, shared by
// every Publisher and Subscriber of a Client. Requests are serialized by a mutex (control plane
// only, never on the data path).
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "control/protocol.h"
#include "core/segment.h"
#include "shmbus/result.h"

namespace shmbus::detail {

// The descriptors a frame may carry (SCM_RIGHTS): a topic's segment, its cursor object and (layout
// 1.9) its owner and group objects, in that order; -1 where absent. Whoever receives them owns them.
struct PassedFds {
    int segment = -1;
    int cursors = -1;
    std::array<int, kMaxCompanions> companions = no_fds();
    uint32_t companion_count = 0;
    void close_all() noexcept;
    [[nodiscard]] Companions companion_fds() const noexcept { return {companions.data(), companion_count}; }
    // Takes `fd` as the next companion; false (and nothing taken) past kMaxCompanions.
    bool add_companion(int fd) noexcept {
        if (companion_count == companions.size()) return false;
        companions[companion_count++] = fd;
        return true;
    }

private:
    static constexpr std::array<int, kMaxCompanions> no_fds() noexcept {
        std::array<int, kMaxCompanions> a{};
        for (int& fd : a) fd = -1;
        return a;
    }
};

// Frame I/O used by both ends. send_frame attaches the descriptors of `fds` that are >= 0.
[[nodiscard]] bool send_frame(int sock, protocol::Type type, uint32_t request_id, const void* body,
                              std::size_t body_size, PassedFds fds = {}) noexcept;
// Receives one frame into `buf` (resized to the frame), and the descriptors it carried into
// `fds` (any past the two a frame may carry are closed). Returns false on EOF or error;
// errno-style text in `why`.
[[nodiscard]] bool recv_frame(int sock, std::vector<std::byte>& buf, PassedFds& fds, std::string& why) noexcept;
// Checks magic, version and length; on success `header` and `body`/`body_size` describe it.
[[nodiscard]] bool parse_frame(const std::vector<std::byte>& buf, protocol::FrameHeader& header,
                               const std::byte*& body, std::size_t& body_size) noexcept;

template <std::size_t N>
void copy_name(char (&dst)[N], std::string_view src) noexcept {
    std::memset(dst, 0, N);
    std::memcpy(dst, src.data(), std::min(src.size(), N - 1));
}
// A name read from shared memory or the wire, safe to log or print: bytes outside printable ASCII
// (a hostile peer's control characters) become \xNN.
[[nodiscard]] std::string printable(std::string_view text);

template <std::size_t N>
std::string_view field_name(const char (&src)[N]) noexcept {
    return {src, strnlen(src, N)};
}

struct Reply {
    protocol::Type type;
    std::vector<std::byte> body;
    PassedFds fds;  // owned by the receiver of the Reply
};

// One connection to shmbusd. If shmbusd goes away, publishing and receiving carry on (they never
// use this channel). A watcher thread (optional) notices the hang-up at once and reconnects in
// the background with exponential backoff (1 ms doubling to 250 ms); without it, or while shmbusd
// is still away, a request reconnects itself with the same backoff until the request timeout, then
// fails with daemon_not_running. A request whose connection broke after it was sent is not
// repeated here: it fails with `disconnected`, since shmbusd may or may not have carried it out.
class ControlChannel {
public:
    // Waits up to `wait` for shmbusd to answer (0: one try).
    // `named_dir`: the directory was named by the user (ClientOptions::dir, SHMBUS_DIR), so a
    // shmbusd of the directory's owner is trusted too (a bus shared with a group); for a default,
    // per-user directory only our own uid's or root's is.
    static Result<std::shared_ptr<ControlChannel>> connect(const std::string& dir, const std::string& name,
                                                           std::chrono::milliseconds timeout,
                                                           std::chrono::milliseconds wait, bool watch,
                                                           bool named_dir = true) noexcept;
    ~ControlChannel();
    // Sends a request and waits for its reply (up to the timeout plus `extra_wait`: a request that
    // may create a large topic waits for its pages to be reserved). An error reply becomes an Error.
    [[nodiscard]] Result<Reply> request(protocol::Type type, const void* body, std::size_t size,
                                        std::chrono::milliseconds extra_wait = {}) noexcept;
    // For best-effort teardown (unsubscribe, close_producer from destructors): if shmbusd is gone,
    // one reconnection attempt, no waiting. A slot left behind is released when its process exits.
    [[nodiscard]] Result<Reply> request_if_connected(protocol::Type type, const void* body, std::size_t size) noexcept;
    [[nodiscard]] const std::string& dir() const noexcept { return dir_; }
    [[nodiscard]] uint64_t bus_id() const noexcept { return bus_id_; }
    [[nodiscard]] uint64_t reconnects() const noexcept;

private:
    ControlChannel(std::string dir, std::string name, std::chrono::milliseconds timeout, bool named_dir) noexcept
        : dir_(std::move(dir)), name_(std::move(name)), timeout_(timeout), named_dir_(named_dir) {}
    [[nodiscard]] bool trusted_daemon(uid_t uid) const noexcept;
    // Connects and says hello, once. Unlocked: callers hold mutex_ (or own the channel alone).
    [[nodiscard]] Status dial() noexcept;
    [[nodiscard]] Status redial_with_backoff(std::chrono::milliseconds wait, const char* why) noexcept;
    [[nodiscard]] Status reconnect(std::chrono::milliseconds wait) noexcept;  // redial, counted
    [[nodiscard]] Result<Reply> request_locked(protocol::Type type, const void* body, std::size_t size,
                                               std::chrono::milliseconds wait,
                                               std::chrono::milliseconds extra_wait = {}) noexcept;
    // One request and its reply on the current socket; `sent` tells whether it left us.
    // An error frame about the connection itself (request id 0) already waiting to be read: why
    // shmbusd closed it (out of descriptors, say). Never waits.
    [[nodiscard]] std::optional<Error> connection_refusal() noexcept;
    [[nodiscard]] Result<Reply> exchange(protocol::Type type, const void* body, std::size_t size, bool& sent,
                                         std::chrono::milliseconds reply_wait) noexcept;
    void drop() noexcept;
    void watch() noexcept;  // the watcher thread's loop

    std::thread watcher_;
    int wake_fd_ = -1;      // eventfd: tells the watcher to stop
    pid_t watcher_owner_ = 0;  // the process that runs the watcher (not a forked child)
    uint64_t generation_ = 0;  // connections made so far: the watcher's hang-up is for this one

    mutable std::mutex mutex_;
    int sock_ = -1;  // -1 while disconnected
    std::string dir_;
    std::string name_;
    std::chrono::milliseconds timeout_;
    bool named_dir_;
    uint32_t next_request_ = 1;
    uint64_t bus_id_ = 0;
    uint64_t reconnects_ = 0;
};

// The time shmbusd may need, beyond answering, to create a topic of `capacity` bytes: reserving
// its pages, allowed one second per GiB (a loaded machine reserves several GiB per second).
[[nodiscard]] constexpr std::chrono::milliseconds creation_allowance(uint64_t capacity) noexcept {
    return std::chrono::milliseconds(capacity / (1ull << 20) * 1000 / 1024);
}

}  // namespace shmbus::detail
