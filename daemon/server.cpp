#include "server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <type_traits>
#include <utility>

#include "control/control.h"
#include "core/errno_error.h"
#include "shmbus/client.h"

namespace shmbus::daemon {

using detail::errno_error;
using protocol::Type;

namespace {

// The body of a frame, accepted only if its size is exactly that of T (none for NoBody).
template <class T>
bool read_body(const std::byte* body, std::size_t size, T& out) {
    if constexpr (std::is_empty_v<T>) {
        return size == 0;
    } else {
        if (size != sizeof(T)) return false;
        std::memcpy(&out, body, sizeof(T));
        return true;
    }
}

// A fixed-size name field must hold a NUL; anything else is a malformed frame.
template <std::size_t N>
bool terminated(const char (&field)[N]) {
    return std::memchr(field, '\0', N) != nullptr;
}

enum class Outcome : uint8_t { keep, close, malformed };

// One row of the routing table: decodes the body of `Req`, checks that each of its `Names` is
// terminated, and calls the handler.
using RouteFn = Outcome (*)(RequestHandlers&, Conn&, uint32_t id, const std::byte* body, std::size_t size);
struct Route {
    Type type;
    RouteFn handle;
};

template <class Req, bool (RequestHandlers::*Handler)(Conn&, uint32_t, const Req&), auto... Names>
Outcome decode(RequestHandlers& h, Conn& c, uint32_t id, const std::byte* body, std::size_t size) {
    Req req{};
    if (!read_body(body, size, req) || !(terminated(req.*Names) && ...)) return Outcome::malformed;
    return (h.*Handler)(c, id, req) ? Outcome::keep : Outcome::close;
}

using namespace protocol;
using H = RequestHandlers;
constexpr std::array kRoutes{
    Route{Type::hello, decode<Hello, &H::on_hello, &Hello::client_name>},
    Route{Type::open_topic, decode<OpenTopic, &H::on_open_topic, &OpenTopic::topic, &OpenTopic::producer>},
    Route{Type::delete_topic, decode<DeleteTopic, &H::on_delete_topic, &DeleteTopic::topic>},
    Route{Type::list_topics, decode<ListTopics, &H::on_list_topics>},
    Route{Type::subscribe, decode<Subscribe, &H::on_subscribe, &Subscribe::topic, &Subscribe::durable_name>},
    Route{Type::unsubscribe, decode<Unsubscribe, &H::on_unsubscribe, &Unsubscribe::topic>},
    Route{Type::close_producer, decode<Unsubscribe, &H::on_close_producer, &Unsubscribe::topic>},
    Route{Type::gc, decode<NoBody, &H::on_gc>},
    Route{Type::bus_info, decode<NoBody, &H::on_bus_info>},
    Route{Type::set_topic, decode<SetTopic, &H::on_set_topic, &SetTopic::topic>},
    Route{Type::join_group, decode<JoinGroup, &H::on_join_group, &JoinGroup::topic, &JoinGroup::group>},
    Route{Type::delete_group, decode<SubscriptionName, &H::on_delete_group, &SubscriptionName::topic, &SubscriptionName::name>},
    Route{Type::set_archive, decode<SetArchive, &H::on_set_archive, &SetArchive::topic>},
    Route{Type::open_archive, decode<TopicName, &H::on_open_archive, &TopicName::topic>},
    Route{Type::watch_pattern, decode<PatternWatch, &H::on_watch_pattern, &PatternWatch::pattern>},
    Route{Type::list_patterns, decode<ListTopics, &H::on_list_patterns>},
    Route{Type::delete_subscription,
          decode<SubscriptionName, &H::on_delete_subscription, &SubscriptionName::topic, &SubscriptionName::name>},
};

const Route* route_for(uint16_t type) {
    const auto it = std::find_if(kRoutes.begin(), kRoutes.end(), [&](const Route& r) { return uint16_t(r.type) == type; });
    return it == kRoutes.end() ? nullptr : &*it;
}

}  // namespace

bool reply(Conn& c, protocol::Type type, uint32_t id, const void* body, std::size_t size, detail::PassedFds fds) {
    if (detail::send_frame(c.fd, type, id, body, size, fds)) return true;
    spdlog::warn("pid {}: cannot send a reply ({}), closing", c.process.pid,
                 errno == EAGAIN ? "client does not read" : strerror(errno));
    return false;
}

bool reply_error(Conn& c, uint32_t id, const Error& e) {
    protocol::ErrorReply r{};
    r.code = uint32_t(e.code);
    detail::copy_name(r.message, e.message);
    return reply(c, protocol::Type::error, id, &r, sizeof r);
}

Server::Server(EventLoop& loop, RequestHandlers& handlers) : loop_(loop), handlers_(handlers) {
    while (next_session_ == 0 && getrandom(&next_session_, sizeof next_session_, 0) != sizeof next_session_) {
    }
    next_session_ >>= 1;  // room to count up without reaching 0
}

Server::~Server() {
    for (auto& [fd, c] : conns_) {
        loop_.remove(fd);
        close(fd);
    }
    if (spare_fd_ >= 0) close(spare_fd_);
    if (listen_fd_ >= 0) {
        loop_.remove(listen_fd_);
        close(listen_fd_);
        unlink(socket_path_.c_str());
    }
}

Status Server::listen(const std::string& dir, std::optional<gid_t> group) {
    socket_path_ = shmbus::socket_path(dir);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path_.size() >= sizeof addr.sun_path)
        return make_error(Errc::invalid_argument, "bus directory path too long for a Unix socket: " + dir);
    std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
    if (unlink(socket_path_.c_str()) == 0)  // we hold the directory lock: any socket file here is stale
        spdlog::warn("gc: removed socket {} (left by a shmbusd that did not stop cleanly)", socket_path_);
    listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) return errno_error(Errc::io_error, "socket");
    // Born 0600 (the umask is ours alone: no other thread of shmbusd creates files), so nobody else can connect
    // before the mode below is set.
    const mode_t umask_was = umask(0177);
    const int bound = bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    umask(umask_was);
    if (bound != 0) return errno_error(Errc::io_error, "bind " + socket_path_);
    if (group && (chown(socket_path_.c_str(), uid_t(-1), *group) != 0 || chmod(socket_path_.c_str(), 0660) != 0))
        return errno_error(Errc::permission_denied, "cannot give the access group the socket " + socket_path_);
    if (::listen(listen_fd_, 128) != 0) return errno_error(Errc::io_error, "listen");
    if (!loop_.add(listen_fd_, EPOLLIN, [this](uint32_t) { accept_clients(); }))
        return make_error(Errc::io_error, "cannot watch the listening socket");
    spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return ok_status();
}

void Server::accept_clients() {
    for (;;) {
        // Non-blocking: a client that stops reading its replies fills its socket and is dropped
        // (send fails with EAGAIN) instead of stalling the daemon.
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            // Linux reserves the descriptor before it looks for a client: EMFILE says nothing
            // about whether one is waiting, and refuse_one_client finds out.
            if ((errno == EMFILE || errno == ENFILE) && refuse_one_client()) continue;
            if (errno != EAGAIN) spdlog::warn("accept: {}", strerror(errno));
            return;
        }
        ucred cred{};
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            close(fd);
            continue;
        }
        Conn c;
        c.fd = fd;
        c.process = {cred.pid, detail::process_start_time(cred.pid)};
        c.who = identity_of_peer(fd);
        c.session = ++next_session_;
        if (!watch(fd)) {
            close(fd);
            continue;
        }
        handlers_.on_connect(c);
        conns_.emplace(fd, std::move(c));
    }
}

bool Server::watch(int fd) {
    return loop_.add(fd, EPOLLIN | EPOLLRDHUP, [this, fd](uint32_t events) {
        auto it = conns_.find(fd);
        if (it == conns_.end()) return;
        if (events & EPOLLIN) serve(it->second);
        else disconnect(fd);
    });
}

// Out of descriptors: a waiting client would stay in the backlog and keep the socket readable, so
// the loop would spin on it. The spare descriptor is given up to accept it and close it at once
// (it sees its connection closed); without a spare, listening pauses until a client leaves.
// True if a client was refused (look for another), false once none is waiting.
bool Server::refuse_one_client() {
    const int why = errno;
    if (spare_fd_ >= 0) {
        close(spare_fd_);
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            // Told why before it is closed (request id 0: about the connection, not a request),
            // so the client does not take a closed connection for a shmbusd that is not running.
            const auto e = make_error(Errc::io_error, "shmbusd is out of file descriptors (" + std::string(strerror(why)) +
                                                          ") and refused this connection; raise its limit (ulimit -n, "
                                                          "LimitNOFILE=) or close idle clients");
            protocol::ErrorReply body{};
            body.code = uint32_t(e.code);
            detail::copy_name(body.message, e.message);
            // Its hello is read first, and again before closing: a socket closed with unread data
            // resets the connection, and the client would see the reset instead of the reason.
            auto drain = [fd] {
                std::byte sink[256];
                while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
                }
            };
            drain();
            (void)detail::send_frame(fd, protocol::Type::error, 0, &body, sizeof body);
            drain();
            close(fd);
        }
        spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) return false;  // nobody was waiting
    } else {
        loop_.remove(listen_fd_);
        listening_paused_ = true;
    }
    ++refused_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_log_ >= std::chrono::seconds(1)) {
        spdlog::warn("out of file descriptors ({}): refused {} client(s) so far", strerror(why), refused_);
        last_refusal_log_ = now;
    }
    return !listening_paused_;
}

void Server::resume_listening() {
    if (!listening_paused_) return;
    if (spare_fd_ < 0) spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    listening_paused_ = !loop_.add(listen_fd_, EPOLLIN, [this](uint32_t) { accept_clients(); });
}

void Server::serve(Conn& c) {
    std::vector<std::byte> buf;
    detail::PassedFds passed;
    std::string why;
    if (!detail::recv_frame(c.fd, buf, passed, why)) {
        disconnect(c.fd);
        return;
    }
    passed.close_all();  // clients never send descriptors
    if (!handle_frame(c, buf)) disconnect(c.fd);
    else if (c.parked) loop_.remove(c.fd);  // its next requests wait in the socket, in order
}

bool Server::handle_frame(Conn& c, std::vector<std::byte>& frame) {
    protocol::FrameHeader h{};
    const std::byte* body = nullptr;
    std::size_t size = 0;
    if (!detail::parse_frame(frame, h, body, size)) {
        // A client of another protocol version is told which versions meet (docs/protocol.md, "Versions").
        if (h.magic == protocol::kFrameMagic && h.version != protocol::kProtocolVersion) {
            spdlog::warn("pid {}: protocol version {} is not served, closing", c.process.pid, h.version);
            (void)reply_error(c, 0, make_error(Errc::protocol_error, "shmbusd speaks protocol version " +
                                                                         std::to_string(protocol::kProtocolVersion) + ", not " +
                                                                         std::to_string(h.version) +
                                                                         ": use a client library of the same shmbus release"));
            return false;
        }
        spdlog::warn("pid {}: malformed frame ({} bytes), closing", c.process.pid, frame.size());
        (void)reply_error(c, 0, make_error(Errc::protocol_error, "malformed frame"));
        return false;
    }
    const bool was_parked = std::exchange(c.parked, false);
    const bool keep = dispatch(c, h, body, size);
    if (keep && c.parked) {
        c.parked_frame = std::move(frame);
        if (!was_parked) c.parked_order = ++parked_so_far_;
    }
    return keep;
}

void Server::resume_parked() {
    std::vector<std::pair<uint64_t, int>> parked;  // (order, fd)
    for (const auto& [fd, c] : conns_)
        if (c.parked) parked.emplace_back(c.parked_order, fd);
    std::sort(parked.begin(), parked.end());
    for (const auto& [order, fd] : parked) {
        Conn& c = conns_.at(fd);
        std::vector<std::byte> frame = std::move(c.parked_frame);
        c.parked_frame.clear();
        if (!handle_frame(c, frame)) disconnect(fd);
        else if (!c.parked && !watch(fd)) disconnect(fd);
    }
}

bool Server::dispatch(Conn& c, const protocol::FrameHeader& h, const std::byte* body, std::size_t size) {
    if (!c.said_hello && Type(h.type) != Type::hello) {
        (void)reply_error(c, h.request_id, make_error(Errc::protocol_error, "hello expected first"));
        return false;
    }
    const Route* route = route_for(h.type);
    const Outcome outcome = route == nullptr ? Outcome::malformed : route->handle(handlers_, c, h.request_id, body, size);
    if (outcome != Outcome::malformed) return outcome == Outcome::keep;
    spdlog::warn("pid {}: malformed {} frame ({} bytes), closing", c.process.pid, h.type, size);
    (void)reply_error(c, h.request_id, make_error(Errc::protocol_error, "malformed frame of type " + std::to_string(h.type)));
    return false;
}

void Server::disconnect(int fd) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    handlers_.on_disconnect(it->second);
    loop_.remove(fd);
    close(fd);
    conns_.erase(it);
    resume_listening();  // a descriptor is free again
}

}  // namespace shmbus::daemon
