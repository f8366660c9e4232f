#include "control/control.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <thread>

#include "shmbus/client.h"

namespace shmbus::detail {

using protocol::FrameHeader;

void PassedFds::close_all() noexcept {
    for (int* fd : {&segment, &cursors})
        if (*fd >= 0) close(*fd), *fd = -1;
    for (uint32_t i = 0; i < companion_count; ++i)
        if (companions[i] >= 0) close(companions[i]), companions[i] = -1;
    companion_count = 0;
}

bool send_frame(int sock, protocol::Type type, uint32_t request_id, const void* body, std::size_t body_size,
                PassedFds fds) noexcept {
    FrameHeader h{protocol::kFrameMagic, protocol::kProtocolVersion, uint16_t(type),
                  uint32_t(sizeof(FrameHeader) + body_size), request_id};
    iovec iov[2] = {{&h, sizeof h}, {const_cast<void*>(body), body_size}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = body_size > 0 ? 2 : 1;
    // Positional: the companions follow the segment and cursor object, which are always there
    // when companions are (a topic of layout 1.9).
    int passed[2 + kMaxCompanions];
    std::size_t count = 0;
    for (int fd : {fds.segment, fds.cursors})
        if (fd >= 0) passed[count++] = fd;
    for (int fd : fds.companion_fds())
        if (fd >= 0) passed[count++] = fd;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof passed)] = {};
    if (count > 0) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(count * sizeof(int));
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(count * sizeof(int));
        std::memcpy(CMSG_DATA(c), passed, count * sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n >= 0) return std::size_t(n) == h.length;
        if (errno != EINTR) return false;
    }
}

bool recv_frame(int sock, std::vector<std::byte>& buf, PassedFds& fds, std::string& why) noexcept {
    fds = {};
    buf.resize(protocol::kMaxFrame);
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (2 + kMaxCompanions + 2))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    // Keep as many passed descriptors as a reply may carry, close the rest: a hostile peer may send more.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int received;
            std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof received);
            if (fds.segment < 0) fds.segment = received;
            else if (fds.cursors < 0) fds.cursors = received;
            else if (!fds.add_companion(received)) close(received);
        }
    }
    if (n <= 0) {
        why = n == 0 ? "connection closed" : strerror(errno);
        fds.close_all();
        return false;
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        // MSG_CTRUNC alone: the kernel could not install the passed descriptors here.
        why = (msg.msg_flags & MSG_TRUNC) ? "oversized frame"
                                          : "the descriptors it passed were dropped: this process is out of file descriptors";
        fds.close_all();
        buf.clear();
        return true;  // the caller's parse_frame rejects the empty buffer
    }
    buf.resize(std::size_t(n));
    return true;
}

bool parse_frame(const std::vector<std::byte>& buf, FrameHeader& header, const std::byte*& body,
                 std::size_t& body_size) noexcept {
    if (buf.size() < sizeof(FrameHeader)) return false;
    std::memcpy(&header, buf.data(), sizeof header);
    if (header.magic != protocol::kFrameMagic || header.version != protocol::kProtocolVersion) return false;
    if (header.length != buf.size()) return false;
    body = buf.data() + sizeof(FrameHeader);
    body_size = buf.size() - sizeof(FrameHeader);
    return true;
}

namespace {

Error not_running(const std::string& dir, const char* why) {
    return make_error(Errc::daemon_not_running,
                      "shmbusd is not running for bus directory " + dir + " (" + why +
                          "); start it with: shmbusd --dir " + dir);
}

// How long to wait before the next attempt to reach a shmbusd that went away: 1 ms, doubling
// to 250 ms. Shared by requests that wait for it and by the watcher thread.
struct Backoff {
    std::chrono::milliseconds delay{1};
    void grow() noexcept { delay = std::min(delay * 2, std::chrono::milliseconds(250)); }
};

bool wait_readable(int sock, std::chrono::milliseconds timeout) {
    pollfd p{sock, POLLIN, 0};
    int rc;
    do rc = ::poll(&p, 1, int(timeout.count()));
    while (rc < 0 && errno == EINTR);
    return rc > 0;
}

}  // namespace

std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += ch;
        } else {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        }
    }
    return out;
}

// Our own uid's shmbusd and root's; and, for a directory the user named, its owner's, provided
// nobody else may write the directory (then nobody else can have put the socket there).
bool ControlChannel::trusted_daemon(uid_t uid) const noexcept {
    if (uid == geteuid() || uid == 0) return true;
    struct stat st{};
    return named_dir_ && stat(dir_.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid && (st.st_mode & 022) == 0;
}

Status ControlChannel::dial() noexcept {
    const std::string path = socket_path(dir_);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return make_error(Errc::invalid_argument, "bus directory path too long for a Unix socket: " + dir_);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    const int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return make_error(Errc::io_error, std::string(errno == EMFILE || errno == ENFILE ? "this process is out of file descriptors"
                                                                                          : "cannot make a socket") +
                                              " (socket: " + strerror(errno) + ")");
    // A Unix connect() waits while the listener's backlog is full, up to the send timeout: a hung
    // shmbusd then costs the request's deadline, not forever. Cleared once connected.
    const timeval limit{time_t(timeout_.count() / 1000), suseconds_t(timeout_.count() % 1000 * 1000)};
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    if (::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        close(sock);
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINPROGRESS)
            return make_error(Errc::timed_out, "shmbusd at " + path + " did not accept the connection within " +
                                                   std::to_string(timeout_.count()) + " ms (is it hung?)");
        if (err == ENOENT || err == ECONNREFUSED) return not_running(dir_, strerror(err));
        if (err == EACCES) return make_error(Errc::permission_denied, "no permission to connect to " + path);
        return make_error(Errc::io_error, "connect " + path + ": " + strerror(err));
    }
    // Only a trusted shmbusd gets our messages (trusted_daemon): a socket another user put in the
    // way (a squatted default directory) is refused before a byte is sent.
    ucred peer{};
    socklen_t len = sizeof peer;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 || !trusted_daemon(peer.uid)) {
        close(sock);
        return make_error(Errc::permission_denied, "refusing the shmbusd at " + path + ": it runs as uid " +
                                                       std::to_string(peer.uid) + ", neither yours (" +
                                                       std::to_string(geteuid()) + ") nor root" +
                                                       (named_dir_ ? "'s, nor the owner of a directory only its owner may write" : ""));
    }
    const timeval none{};
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
    sock_ = sock;
    ++generation_;
    protocol::Hello hello{};
    hello.protocol_version = protocol::kProtocolVersion;
    hello.pid = getpid();
    copy_name(hello.client_name, name_);
    bool sent = false;
    auto reply = exchange(protocol::Type::hello, &hello, sizeof hello, sent, timeout_);
    if (reply && (reply->type != protocol::Type::hello_ok || reply->body.size() != sizeof(protocol::HelloOk)))
        reply = make_error(Errc::protocol_error, "unexpected reply to hello");
    if (!reply) {
        drop();
        return reply.error();
    }
    protocol::HelloOk ok{};
    std::memcpy(&ok, reply->body.data(), sizeof ok);
    bus_id_ = ok.bus_id;
    return ok_status();
}

Status ControlChannel::redial_with_backoff(std::chrono::milliseconds wait, const char* why) noexcept {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    Backoff backoff;
    for (;;) {
        auto st = dial();
        if (st) return st;
        // Only "nobody listens" and "it went away during hello" are worth waiting out: shmbusd is
        // restarting. Anything else (permissions, a protocol mismatch) will not change by itself.
        if (st.error().code != Errc::daemon_not_running && st.error().code != Errc::disconnected) return st.error();
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline)
            return not_running(dir_, (std::string(why) + " within " + std::to_string(wait.count()) + " ms").c_str());
        // The last try lands on the deadline itself.
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(backoff.delay, deadline - now));
        backoff.grow();
    }
}

Status ControlChannel::reconnect(std::chrono::milliseconds wait) noexcept {
    auto st = redial_with_backoff(wait, "lost the connection and it did not come back");
    if (st) ++reconnects_;
    return st;
}

void ControlChannel::drop() noexcept {
    if (sock_ >= 0) close(sock_);
    sock_ = -1;
}

Result<std::shared_ptr<ControlChannel>> ControlChannel::connect(const std::string& dir, const std::string& name,
                                                                std::chrono::milliseconds timeout,
                                                                std::chrono::milliseconds wait, bool watch,
                                                                bool named_dir) noexcept {
    std::shared_ptr<ControlChannel> ch(new (std::nothrow) ControlChannel(dir, name, timeout, named_dir));
    if (!ch) return make_error(Errc::io_error, "out of memory");
    auto st = wait.count() > 0 ? ch->redial_with_backoff(wait, "it did not start") : ch->dial();
    if (!st) return st.error();
    if (watch) {
        ch->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (ch->wake_fd_ < 0) return make_error(Errc::io_error, std::string("eventfd: ") + strerror(errno));
        // The watcher starts with every signal blocked, so signals meant for the application (a
        // SIGINT that should interrupt its blocking read) are never delivered to our thread.
        sigset_t all, previous;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &previous);
        try {
            ch->watcher_owner_ = getpid();
            ch->watcher_ = std::thread([raw = ch.get()] { raw->watch(); });
        } catch (...) {  // no thread: requests still reconnect by themselves
            close(ch->wake_fd_);
            ch->wake_fd_ = -1;
        }
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    }
    return ch;
}

ControlChannel::~ControlChannel() {
    if (watcher_.joinable()) {
        if (getpid() != watcher_owner_) {
            watcher_.detach();  // a forked child has no watcher thread to join
        } else {
            const uint64_t one = 1;
            (void)!write(wake_fd_, &one, sizeof one);
            watcher_.join();
        }
    }
    if (wake_fd_ >= 0) close(wake_fd_);
    drop();
}

// Waits for shmbusd to hang up (it died or stopped), then reconnects with backoff until it is
// back or the channel is destroyed. Only hang-ups wake it: replies are the requester's to read.
void ControlChannel::watch() noexcept {
    Backoff backoff;
    for (;;) {
        int sock;
        uint64_t generation;
        {
            std::lock_guard lock(mutex_);
            sock = sock_;
            generation = generation_;
        }
        pollfd fds[2] = {{sock, POLLRDHUP, 0}, {wake_fd_, POLLIN, 0}};  // a negative fd is skipped
        const int rc = ::poll(fds, 2, sock < 0 ? int(backoff.delay.count()) : -1);
        if (fds[1].revents != 0) return;
        if (rc < 0 && errno != EINTR) return;
        std::lock_guard lock(mutex_);
        if (sock >= 0) {
            if ((fds[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0 && generation_ == generation) drop();
            backoff = {};
            continue;
        }
        if (sock_ >= 0) continue;  // a request reconnected meanwhile
        if (dial()) ++reconnects_;
        else backoff.grow();
    }
}

uint64_t ControlChannel::reconnects() const noexcept {
    std::lock_guard lock(mutex_);
    return reconnects_;
}

Result<Reply> ControlChannel::request(protocol::Type type, const void* body, std::size_t size,
                                      std::chrono::milliseconds extra_wait) noexcept {
    std::lock_guard lock(mutex_);
    return request_locked(type, body, size, timeout_, extra_wait);
}

Result<Reply> ControlChannel::request_if_connected(protocol::Type type, const void* body, std::size_t size) noexcept {
    std::lock_guard lock(mutex_);
    return request_locked(type, body, size, std::chrono::milliseconds(0));
}

Result<Reply> ControlChannel::request_locked(protocol::Type type, const void* body, std::size_t size,
                                             std::chrono::milliseconds wait, std::chrono::milliseconds extra_wait) noexcept {
    if (sock_ < 0)
        if (auto st = reconnect(wait); !st) return st.error();
    bool sent = false;
    auto reply = exchange(type, body, size, sent, timeout_ + extra_wait);
    if (!reply && reply.error().code == Errc::disconnected) {
        drop();
        if (sent) return reply;  // it may have been carried out: not ours to repeat
        if (auto st = reconnect(wait); !st) return st.error();
        reply = exchange(type, body, size, sent, timeout_ + extra_wait);
        if (!reply && reply.error().code == Errc::disconnected) drop();
    }
    return reply;
}

std::optional<Error> ControlChannel::connection_refusal() noexcept {
    if (!wait_readable(sock_, std::chrono::milliseconds(0))) return std::nullopt;
    std::vector<std::byte> buf;
    PassedFds fds;
    std::string why;
    if (!recv_frame(sock_, buf, fds, why)) return std::nullopt;
    fds.close_all();
    FrameHeader h{};
    const std::byte* b = nullptr;
    std::size_t n = 0;
    protocol::ErrorReply e{};
    if (!parse_frame(buf, h, b, n) || h.request_id != 0 || protocol::Type(h.type) != protocol::Type::error || n != sizeof e)
        return std::nullopt;
    std::memcpy(&e, b, sizeof e);
    e.message[sizeof e.message - 1] = '\0';
    return make_error(errc_from_code(e.code).value_or(Errc::protocol_error), e.message);
}

Result<Reply> ControlChannel::exchange(protocol::Type type, const void* body, std::size_t size, bool& sent,
                                       std::chrono::milliseconds reply_wait) noexcept {
    const uint32_t id = next_request_++;
    sent = false;
    if (!send_frame(sock_, type, id, body, size)) {
        const int err = errno;
        // shmbusd may have said why before it closed (refusing the connection): that reason, if
        // it is waiting to be read, is the answer.
        if (auto reason = connection_refusal()) return *reason;
        return make_error(Errc::disconnected, "lost the connection to shmbusd (" + std::string(strerror(err)) + ")");
    }
    sent = true;
    std::vector<std::byte> buf;
    for (;;) {
        if (!wait_readable(sock_, reply_wait))
            return make_error(Errc::timed_out, "shmbusd did not answer within " + std::to_string(reply_wait.count()) + " ms");
        PassedFds fds;
        std::string why;
        if (!recv_frame(sock_, buf, fds, why))
            return make_error(Errc::disconnected, "lost the connection to shmbusd before it answered (" + why +
                                                      "); the request may or may not have taken effect");
        FrameHeader h{};
        const std::byte* b = nullptr;
        std::size_t n = 0;
        if (!parse_frame(buf, h, b, n)) {
            fds.close_all();
            return make_error(Errc::protocol_error, "malformed reply from shmbusd");
        }
        // Request id 0 is about the connection itself (shmbusd refusing it, or a malformed frame):
        // its error answers this request too. Any other id: a stale reply to a request that timed out.
        const bool about_connection = h.request_id == 0 && protocol::Type(h.type) == protocol::Type::error;
        if (h.request_id != id && !about_connection) {
            fds.close_all();
            continue;
        }
        if (protocol::Type(h.type) == protocol::Type::error) {
            fds.close_all();
            protocol::ErrorReply e{};
            if (n != sizeof e) return make_error(Errc::protocol_error, "malformed error reply from shmbusd");
            std::memcpy(&e, b, sizeof e);
            e.message[sizeof e.message - 1] = '\0';
            const Errc code = errc_from_code(e.code).value_or(Errc::protocol_error);
            return make_error(code, e.message);
        }
        Reply r{protocol::Type(h.type), std::vector<std::byte>(b, b + n), fds};
        return r;
    }
}

}  // namespace shmbus::detail
