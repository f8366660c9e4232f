// The client side of the control connection: one SOCK_SEQPACKET socket to shmbusd, shared by
// every Publisher and Subscriber of a Client. Requests are serialized by a mutex (control plane
// only, never on the data path).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "protocol.h"
#include "shmbus/result.h"

namespace shmbus::detail {

// Frame I/O used by both ends. send_frame attaches `fd` (if >= 0) with SCM_RIGHTS.
[[nodiscard]] bool send_frame(int sock, protocol::Type type, uint32_t request_id, const void* body,
                              std::size_t body_size, int fd = -1) noexcept;
// Receives one frame into `buf` (resized to the frame). Returns the received fd or -1 in `fd`.
// Returns false on EOF or error; errno-style text in `why`.
[[nodiscard]] bool recv_frame(int sock, std::vector<std::byte>& buf, int& fd, std::string& why) noexcept;
// Checks magic, version and length; on success `header` and `body`/`body_size` describe it.
[[nodiscard]] bool parse_frame(const std::vector<std::byte>& buf, protocol::FrameHeader& header,
                               const std::byte*& body, std::size_t& body_size) noexcept;

template <std::size_t N>
void copy_name(char (&dst)[N], std::string_view src) noexcept {
    std::memset(dst, 0, N);
    std::memcpy(dst, src.data(), std::min(src.size(), N - 1));
}
template <std::size_t N>
std::string_view field_name(const char (&src)[N]) noexcept {
    return {src, strnlen(src, N)};
}

struct Reply {
    protocol::Type type;
    std::vector<std::byte> body;
    int fd = -1;  // owned by the receiver of the Reply
};

class ControlChannel {
public:
    static Result<std::shared_ptr<ControlChannel>> connect(const std::string& dir, const std::string& name,
                                                           std::chrono::milliseconds timeout) noexcept;
    ~ControlChannel();
    // Sends a request and waits for its reply. An error reply becomes an Error.
    [[nodiscard]] Result<Reply> request(protocol::Type type, const void* body, std::size_t size) noexcept;
    [[nodiscard]] const std::string& dir() const noexcept { return dir_; }
    [[nodiscard]] uint64_t bus_id() const noexcept { return bus_id_; }

private:
    ControlChannel(int sock, std::string dir, std::chrono::milliseconds timeout) noexcept
        : sock_(sock), dir_(std::move(dir)), timeout_(timeout) {}
    std::mutex mutex_;
    int sock_;
    std::string dir_;
    std::chrono::milliseconds timeout_;
    uint32_t next_request_ = 1;
    uint64_t bus_id_ = 0;
};

}  // namespace shmbus::detail
