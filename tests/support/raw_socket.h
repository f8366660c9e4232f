// A raw client of the control protocol, for tests that send hand-made (or hostile) frames.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "control/protocol.h"
#include "shmbus/client.h"

namespace shmbus::test {

class RawSocket {
public:
    explicit RawSocket(const std::string& dir) {
        fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        const std::string p = socket_path(dir);
        std::memcpy(a.sun_path, p.c_str(), p.size() + 1);
        ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    }
    ~RawSocket() { close(fd_); }
    bool ok() const { return ok_; }
    void send_raw(const void* p, std::size_t n, int flags = 0) { (void)::send(fd_, p, n, MSG_NOSIGNAL | flags); }
    void send_frame(uint16_t type, const void* body, std::size_t n, uint32_t length_override = 0, int flags = 0) {
        std::vector<char> buf(sizeof(protocol::FrameHeader) + n);
        protocol::FrameHeader h{protocol::kFrameMagic, protocol::kProtocolVersion, type,
                                length_override ? length_override : uint32_t(buf.size()), 7};
        std::memcpy(buf.data(), &h, sizeof h);
        if (n) std::memcpy(buf.data() + sizeof h, body, n);
        send_raw(buf.data(), buf.size(), flags);
    }
    // The reply's type, or 0 on a closed connection, or -1 on silence. `body` gets its body.
    int reply_type(std::vector<char>* body = nullptr) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 2000) <= 0) return -1;
        std::vector<char> buf(70000);
        ssize_t n = recv(fd_, buf.data(), buf.size(), 0);  // a passed fd is dropped by the kernel
        if (n <= 0) return 0;
        if (std::size_t(n) < sizeof(protocol::FrameHeader)) return -2;
        protocol::FrameHeader h{};
        std::memcpy(&h, buf.data(), sizeof h);
        if (body) body->assign(buf.begin() + sizeof h, buf.begin() + n);
        return h.type;
    }
    template <class T>
    T reply_as(int expected_type) {
        std::vector<char> body;
        T out{};
        EXPECT_EQ(reply_type(&body), expected_type);
        if (body.size() >= sizeof out) std::memcpy(&out, body.data(), sizeof out);
        return out;
    }
    void hello() {
        protocol::Hello h{protocol::kProtocolVersion, getpid(), "raw"};
        send_frame(uint16_t(protocol::Type::hello), &h, sizeof h);
        EXPECT_EQ(reply_type(), int(protocol::Type::hello_ok));
    }

private:
    int fd_;
    bool ok_;
};

}  // namespace shmbus::test
