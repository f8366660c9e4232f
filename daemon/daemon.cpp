#include "daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <filesystem>

#include "control.h"
#include "cursor.h"
#include "futex.h"
#include "proc.h"
#include "recovery.h"
#include "ring.h"
#include "wall_clock.h"
#include "shmbus/client.h"
#include "shmbus/names.h"

namespace shmbus::daemon {

using detail::copy_name;
using detail::field_name;
using layout::ConsumerSlot;
using layout::SlotKind;
using layout::SlotState;

namespace {

Error sys_error(Errc code, const std::string& what) { return make_error(code, what + ": " + strerror(errno)); }

// The body of a frame, accepted only if its size is exactly that of T.
template <class T>
bool read_body(const std::byte* body, std::size_t size, T& out) {
    if (size != sizeof(T)) return false;
    std::memcpy(&out, body, sizeof(T));
    return true;
}

// A fixed-size name field must hold a NUL; anything else is a malformed frame.
template <std::size_t N>
bool terminated(const char (&field)[N]) {
    return std::memchr(field, '\0', N) != nullptr;
}

TopicConfig from_wire(const protocol::WireConfig& w) {
    TopicConfig c;
    c.capacity = w.capacity;
    c.max_message = w.max_message;
    c.on_full = OnFull(w.on_full);
    c.max_producers = w.max_producers;
    c.max_consumers = w.max_consumers;
    c.unblock_timeout = detail::duration_from_ns(w.unblock_timeout_ns);
    c.expire_detached = detail::duration_from_ns(w.expire_detached_ns);
    return c;
}

}  // namespace

Daemon::Daemon(Options options) : options_(std::move(options)) {}

Daemon::~Daemon() {
    for (auto& [fd, c] : conns_) close(fd);
    if (listen_fd_ >= 0) {
        close(listen_fd_);
        unlink(socket_path_.c_str());
    }
    if (epoll_fd_ >= 0) close(epoll_fd_);
    if (signal_fd_ >= 0) close(signal_fd_);
    if (timer_fd_ >= 0) close(timer_fd_);
    for (const auto& [pidfd, owner] : watched_) close(pidfd);
    if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
}

Status Daemon::prepare_dir() {
    std::error_code ec;
    std::filesystem::create_directories(options_.dir, ec);
    if (ec) return make_error(Errc::permission_denied, "cannot create bus directory " + options_.dir + ": " + ec.message());
    if (access(options_.dir.c_str(), W_OK | X_OK) != 0)
        return sys_error(Errc::permission_denied, "bus directory " + options_.dir + " is not writable");
    return ok_status();
}

Status Daemon::take_lock() {
    const std::string path = options_.dir + "/shmbusd.lock";
    lock_fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) return sys_error(Errc::permission_denied, "cannot open " + path);
    if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {};
        ssize_t n = pread(lock_fd_, buf, sizeof buf - 1, 0);
        const std::string pid = n > 0 ? std::string(buf, size_t(n)) : "unknown";
        return make_error(Errc::daemon_running, "another shmbusd (pid " + pid.substr(0, pid.find('\n')) +
                                                    ") already serves " + options_.dir);
    }
    const std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(lock_fd_, 0) != 0 || pwrite(lock_fd_, pid.data(), pid.size(), 0) < 0)
        return sys_error(Errc::io_error, "cannot write " + path);
    return ok_status();
}

Status Daemon::load_bus_id() {
    bus_id_ = read_bus_id(options_.dir);
    if (bus_id_ != 0) return ok_status();
    const std::string path = options_.dir + "/bus.id";
    while (bus_id_ == 0)
        if (getrandom(&bus_id_, sizeof bus_id_, 0) != sizeof bus_id_) return sys_error(Errc::io_error, "getrandom");
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) return sys_error(Errc::permission_denied, "cannot write " + path);
    std::fprintf(f, "%016" PRIx64 "\n", bus_id_);
    std::fclose(f);
    return ok_status();
}

Status Daemon::listen_socket() {
    socket_path_ = socket_path(options_.dir);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path_.size() >= sizeof addr.sun_path)
        return make_error(Errc::invalid_argument, "bus directory path too long for a Unix socket: " + options_.dir);
    std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
    if (unlink(socket_path_.c_str()) == 0)  // we hold the directory lock: any socket file here is stale
        spdlog::warn("gc: removed socket {} (left by a shmbusd that did not stop cleanly)", socket_path_);
    listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) return sys_error(Errc::io_error, "socket");
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        return sys_error(Errc::io_error, "bind " + socket_path_);
    chmod(socket_path_.c_str(), 0600);
    if (listen(listen_fd_, 128) != 0) return sys_error(Errc::io_error, "listen");
    return ok_status();
}

Status Daemon::start() {
    if (options_.dir.empty()) options_.dir = default_bus_dir();
    if (auto st = prepare_dir(); !st) return st;
    // Absolute and canonical: segments record it, and another bus's gc judges from its own
    // working directory whether it still exists.
    std::error_code ec;
    if (auto canonical = std::filesystem::canonical(options_.dir, ec); !ec) options_.dir = canonical.string();
    if (auto st = take_lock(); !st) return st;
    if (auto st = load_bus_id(); !st) return st;
    for (const auto& r : collect_stale(bus_id_)) spdlog::warn("gc: removed {} ({})", r.what, r.why);
    registry_ = std::make_unique<Registry>(bus_id_, options_.dir);
    const uint64_t t0 = detail::monotonic_ns();
    auto report = registry_->adopt_existing();
    for (const auto& r : report.removed) spdlog::warn("removed invalid segment {}", r);
    registry_->for_each([&](TopicEntry& t) { reconcile(t); });
    if (!report.adopted.empty())
        spdlog::info("re-adopted {} topic(s) in {:.1f} ms", report.adopted.size(), double(detail::monotonic_ns() - t0) / 1e6);
    if (auto st = listen_socket(); !st) return st;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);  // a segment over RLIMIT_FSIZE must fail with EFBIG, not kill us
    signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (signal_fd_ < 0 || epoll_fd_ < 0 || timer_fd_ < 0) return sys_error(Errc::io_error, "epoll/signalfd/timerfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    ev.data.fd = signal_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, signal_fd_, &ev);
    ev.data.fd = timer_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev);
    for (const auto& [pidfd, owner] : watched_) {
        ev.data.fd = pidfd;
        epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, pidfd, &ev);
    }
    rearm_timer();
    return ok_status();
}

int Daemon::run() {
    spdlog::info("shmbusd ready: bus {} (id {:016x}), socket {}", options_.dir, bus_id_, socket_path_);
    epoll_event events[64];
    for (;;) {
        int n = epoll_wait(epoll_fd_, events, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            spdlog::critical("epoll_wait: {}", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; ++i) {
            const int fd = events[i].data.fd;
            if (fd == signal_fd_) {
                signalfd_siginfo si{};
                if (read(signal_fd_, &si, sizeof si) == sizeof si) {
                    spdlog::info("shmbusd stopping on signal {}", si.ssi_signo);
                    return 0;
                }
            } else if (fd == listen_fd_) {
                accept_clients();
            } else if (fd == timer_fd_) {
                uint64_t expirations = 0;
                if (read(timer_fd_, &expirations, sizeof expirations) == sizeof expirations) on_tick();
            } else if (watched_.count(fd) != 0) {
                owner_died(fd);
            } else if (auto it = conns_.find(fd); it != conns_.end()) {
                if (events[i].events & (EPOLLIN)) serve(it->second);
                else disconnect(fd);
            }
        }
    }
}

void Daemon::accept_clients() {
    for (;;) {
        // Non-blocking: a client that stops reading its replies fills its socket and is dropped
        // (send fails with EAGAIN) instead of stalling the daemon.
        int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) spdlog::warn("accept: {}", strerror(errno));
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;
        }
        Conn c;
        c.fd = fd;
        ucred cred{};
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            close(fd);
            continue;
        }
        c.pid = cred.pid;
        c.uid = cred.uid;
        c.gid = cred.gid;
        c.start_time = detail::process_start_time(cred.pid);
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.fd = fd;
        epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
        conns_.emplace(fd, std::move(c));
    }
}

void Daemon::serve(Conn& c) {
    std::vector<std::byte> buf;
    int passed_fd = -1;
    std::string why;
    if (!detail::recv_frame(c.fd, buf, passed_fd, why)) {
        disconnect(c.fd);
        return;
    }
    if (passed_fd >= 0) close(passed_fd);  // clients never send descriptors
    protocol::FrameHeader h{};
    const std::byte* body = nullptr;
    std::size_t size = 0;
    bool keep = false;
    if (!detail::parse_frame(buf, h, body, size)) {
        spdlog::warn("pid {}: malformed frame ({} bytes), closing", c.pid, buf.size());
        reply_error(c, 0, make_error(Errc::protocol_error, "malformed frame"));
    } else {
        keep = dispatch(c, h, body, size);
    }
    if (!keep) disconnect(c.fd);
}

bool Daemon::dispatch(Conn& c, const protocol::FrameHeader& h, const std::byte* body, std::size_t size) {
    using protocol::Type;
    const auto malformed = [&] {
        spdlog::warn("pid {}: malformed {} frame ({} bytes), closing", c.pid, h.type, size);
        reply_error(c, h.request_id, make_error(Errc::protocol_error, "malformed frame of type " + std::to_string(h.type)));
        return false;
    };
    if (!c.said_hello && Type(h.type) != Type::hello) {
        reply_error(c, h.request_id, make_error(Errc::protocol_error, "hello expected first"));
        return false;
    }
    switch (Type(h.type)) {
        case Type::hello: {
            protocol::Hello r{};
            if (!read_body(body, size, r) || !terminated(r.client_name)) return malformed();
            return on_hello(c, h.request_id, r);
        }
        case Type::open_topic: {
            protocol::OpenTopic r{};
            if (!read_body(body, size, r) || !terminated(r.topic)) return malformed();
            return on_open_topic(c, h.request_id, r);
        }
        case Type::delete_topic: {
            protocol::TopicName r{};
            if (!read_body(body, size, r) || !terminated(r.topic)) return malformed();
            return on_delete_topic(c, h.request_id, r);
        }
        case Type::list_topics: {
            protocol::ListTopics r{};
            if (!read_body(body, size, r)) return malformed();
            return on_list_topics(c, h.request_id, r);
        }
        case Type::subscribe: {
            protocol::Subscribe r{};
            if (!read_body(body, size, r) || !terminated(r.topic) || !terminated(r.durable_name)) return malformed();
            return on_subscribe(c, h.request_id, r);
        }
        case Type::unsubscribe: {
            protocol::Unsubscribe r{};
            if (!read_body(body, size, r) || !terminated(r.topic)) return malformed();
            return on_unsubscribe(c, h.request_id, r);
        }
        case Type::close_producer: {
            protocol::Unsubscribe r{};
            if (!read_body(body, size, r) || !terminated(r.topic)) return malformed();
            return on_close_producer(c, h.request_id, r);
        }
        case Type::gc:
            if (size != 0) return malformed();
            return on_gc(c, h.request_id);
        case Type::delete_subscription: {
            protocol::SubscriptionName r{};
            if (!read_body(body, size, r) || !terminated(r.topic) || !terminated(r.name)) return malformed();
            return on_delete_subscription(c, h.request_id, r);
        }
        default:
            return malformed();
    }
}

bool Daemon::reply(Conn& c, protocol::Type type, uint32_t id, const void* body, std::size_t size, int fd) {
    if (detail::send_frame(c.fd, type, id, body, size, fd)) return true;
    spdlog::warn("pid {}: cannot send a reply ({}), closing", c.pid, errno == EAGAIN ? "client does not read" : strerror(errno));
    return false;  // the caller's false closes the connection
}

bool Daemon::reply_error(Conn& c, uint32_t id, const Error& e) {
    protocol::ErrorReply r{};
    r.code = uint32_t(e.code);
    copy_name(r.message, e.message);
    return reply(c, protocol::Type::error, id, &r, sizeof r);
}

bool Daemon::on_hello(Conn& c, uint32_t id, const protocol::Hello& req) {
    if (req.protocol_version != protocol::kProtocolVersion) {
        reply_error(c, id, make_error(Errc::protocol_error, "protocol version " + std::to_string(req.protocol_version) +
                                                                " is not supported (shmbusd speaks " +
                                                                std::to_string(protocol::kProtocolVersion) + ")"));
        return false;
    }
    c.said_hello = true;
    c.name = std::string(field_name(req.client_name));
    spdlog::debug("client pid {} uid {} '{}' connected", c.pid, c.uid, c.name);
    protocol::HelloOk ok{protocol::kProtocolVersion, getpid(), bus_id_};
    return reply(c, protocol::Type::hello_ok, id, &ok, sizeof ok);
}

Result<TopicEntry*> Daemon::find_or_create(const std::string& name, const protocol::WireConfig& wire, bool create) {
    if (auto st = validate_topic_name(name); !st) return st.error();
    if (TopicEntry* t = registry_->find(name)) return t;
    if (!create)
        return make_error(Errc::topic_not_found, "no topic named '" + name + "' (create it with: shmbus topic create " + name + ")");
    auto t = registry_->create(name, from_wire(wire));
    if (!t) return t.error();
    const auto c = t.value()->segment.config();
    spdlog::info("created topic '{}': capacity {} B, max message {} B, on-full {}, unblock-timeout {} ms, "
                 "expire-detached {} s",
                 name, c.capacity, c.max_message, to_string(c.on_full), c.unblock_timeout.count() / 1'000'000,
                 c.expire_detached.count() / 1'000'000'000);
    rearm_timer();
    return t;
}

bool Daemon::on_open_topic(Conn& c, uint32_t id, const protocol::OpenTopic& req) {
    const std::string name(field_name(req.topic));
    const bool existed = registry_->find(name) != nullptr;
    if (existed && (req.flags & protocol::kExclusive))
        return reply_error(c, id, make_error(Errc::topic_exists, "topic '" + name + "' already exists"));
    auto t = find_or_create(name, req.config, req.flags & protocol::kCreateIfMissing);
    if (!t) return reply_error(c, id, t.error());
    auto& seg = t.value()->segment;
    protocol::TopicOk ok{seg.size(), protocol::kNoSlot, existed ? 0u : 1u};
    if (req.flags & protocol::kAsPublisher) {
        ok.producer_slot = retried_producer(seg, c, req.token);
        for (uint32_t i = 0; i < seg.max_producers() && ok.producer_slot == protocol::kNoSlot; ++i) {
            auto& p = seg.producer_slot(i);
            if (p.state.load(std::memory_order_acquire) != 0) continue;
            p.pid = c.pid;
            p.start_time = c.start_time;
            p.owner_token = req.token;
            // relaxed: published to the new owner by the release store of state below.
            p.claim_start.store(0, std::memory_order_relaxed);
            p.intent.store(0, std::memory_order_relaxed);
            p.revoked.store(0, std::memory_order_relaxed);
            p.state.store(1, std::memory_order_release);  // SYNC: pairs with collect_stats' acquire load
            ok.producer_slot = i;
        }
        if (ok.producer_slot == protocol::kNoSlot)
            return reply_error(c, id, make_error(Errc::no_free_slot, "topic '" + name + "' has no free producer slot (max " +
                                                                         std::to_string(seg.max_producers()) + ")"));
        c.owned.push_back({name, ok.producer_slot, false});
    }
    return reply(c, protocol::Type::topic_ok, id, &ok, sizeof ok, t.value()->fd);
}

bool Daemon::on_delete_topic(Conn& c, uint32_t id, const protocol::TopicName& req) {
    const std::string name(field_name(req.topic));
    if (auto st = validate_topic_name(name); !st) return reply_error(c, id, st.error());
    if (auto st = registry_->remove(name); !st) return reply_error(c, id, st.error());
    for (auto& [fd, conn] : conns_)
        std::erase_if(conn.owned, [&](const Owned& o) { return o.topic == name; });
    spdlog::info("deleted topic '{}'", name);
    rearm_timer();
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool Daemon::on_list_topics(Conn& c, uint32_t id, const protocol::ListTopics& req) {
    const auto names = registry_->names();
    const uint32_t total = uint32_t(names.size());
    const uint32_t first = std::min(req.offset, total);
    const uint32_t count = std::min(protocol::kNamesPerList, total - first);
    std::vector<std::byte> body(sizeof(protocol::TopicList) + std::size_t(count) * protocol::kNameField);
    protocol::TopicList head{total, count};
    std::memcpy(body.data(), &head, sizeof head);
    for (uint32_t i = 0; i < count; ++i) {
        const auto& n = names[first + i];
        std::memcpy(body.data() + sizeof head + std::size_t(i) * protocol::kNameField, n.data(),
                    std::min(n.size(), protocol::kNameField - 1));
    }
    return reply(c, protocol::Type::topic_list, id, body.data(), body.size());
}

bool Daemon::on_subscribe(Conn& c, uint32_t id, const protocol::Subscribe& req) {
    const std::string topic(field_name(req.topic));
    const std::string durable_name(field_name(req.durable_name));
    const bool durable = !durable_name.empty();
    if (durable)
        if (auto st = validate_subscription_name(durable_name); !st) return reply_error(c, id, st.error());
    StartFrom from{};
    if (!protocol::start_from_wire(req.from, from))
        return reply_error(c, id, make_error(Errc::invalid_argument, "unknown start position"));
    auto t = find_or_create(topic, req.config, true);
    if (!t) return reply_error(c, id, t.error());
    auto& seg = t.value()->segment;
    protocol::SubscribeOk ok{seg.size(), protocol::kNoSlot, 0, 0, 0};
    const auto resume = [&](uint32_t i) {  // an existing cursor: reading goes on from its last ack
        auto& s = seg.consumer_slot(i);
        ok.slot = i;
        ok.resumed = 1;
        ok.position = s.ack_position.load(std::memory_order_acquire);
        ok.next_id = s.ack_id.load(std::memory_order_acquire);
    };

    if (const uint32_t again = retried_consumer(seg, c, req.token); again != protocol::kNoSlot) {
        resume(again);  // the same request, repeated after the connection broke before its reply
    } else if (durable) {  // reattach to an existing cursor by name
        for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
            auto& s = seg.consumer_slot(i);
            const auto state = SlotState(s.state.load(std::memory_order_acquire));
            if ((state != SlotState::attached && state != SlotState::detached) || s.kind != uint32_t(SlotKind::durable) ||
                field_name(s.name) != durable_name)
                continue;
            if (state == SlotState::attached && detail::process_alive(s.pid, s.start_time))
                return reply_error(c, id, make_error(Errc::busy, "durable subscription '" + durable_name + "' on '" + topic +
                                                                     "' is attached by pid " + std::to_string(s.pid)));
            s.pid = c.pid;
            s.start_time = c.start_time;
            s.owner_token = req.token;
            s.state.store(uint32_t(SlotState::attached), std::memory_order_release);
            resume(i);
            break;
        }
    }
    if (ok.slot == protocol::kNoSlot) {
        auto slot = detail::reserve_consumer_slot(seg);
        if (!slot)
            return reply_error(c, id, make_error(Errc::no_free_slot, "topic '" + topic + "' has no free subscription slot (max " +
                                                                         std::to_string(seg.max_consumers()) + ")"));
        auto start = detail::attach_new_cursor(seg, *slot, durable ? SlotKind::durable : SlotKind::ephemeral, durable_name,
                                               {c.pid, c.start_time, req.token}, from, req.from_id);
        if (!start) return reply_error(c, id, start.error());
        ok.position = start->position;
        ok.next_id = start->id;
        ok.slot = *slot;
    }
    c.owned.push_back({topic, ok.slot, true});
    spdlog::info("pid {} subscribed to '{}' ({}{}{}) slot {} at id {}", c.pid, topic, durable ? "durable " : "ephemeral",
                 durable_name, ok.resumed ? ", resumed" : "", ok.slot, ok.next_id);
    return reply(c, protocol::Type::subscribe_ok, id, &ok, sizeof ok, t.value()->fd);
}

// A registration request carries a random token that the slot keeps. A slot of this process with
// the same token means the request is a repeat (its first reply was lost with the connection).
uint32_t Daemon::retried_consumer(const detail::Segment& seg, const Conn& c, uint64_t token) const {
    if (token == 0) return protocol::kNoSlot;
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        const auto& s = seg.consumer_slot(i);
        if (owned_by(s, {c.pid, c.start_time}) && s.owner_token == token) return i;
    }
    return protocol::kNoSlot;
}

uint32_t Daemon::retried_producer(const detail::Segment& seg, const Conn& c, uint64_t token) const {
    if (token == 0) return protocol::kNoSlot;
    for (uint32_t i = 0; i < seg.max_producers(); ++i) {
        const auto& p = seg.producer_slot(i);
        if (owned_by(p, {c.pid, c.start_time}) && p.owner_token == token) return i;
    }
    return protocol::kNoSlot;
}

bool Daemon::on_unsubscribe(Conn& c, uint32_t id, const protocol::Unsubscribe& req) {
    const std::string topic(field_name(req.topic));
    auto it = std::find_if(c.owned.begin(), c.owned.end(),
                           [&](const Owned& o) { return o.consumer && o.topic == topic && o.slot == req.slot; });
    TopicEntry* t = registry_->find(topic);
    const Owner owner{c.pid, c.start_time};
    // A slot this process registered before shmbusd restarted is not in c.owned, but the slot
    // itself names us as its owner.
    const bool ours = it != c.owned.end() || (t != nullptr && req.slot < t->segment.max_consumers() &&
                                              owned_by(t->segment.consumer_slot(req.slot), owner));
    if (!ours)
        return reply_error(c, id, make_error(Errc::invalid_argument, "slot " + std::to_string(req.slot) + " of '" + topic +
                                                                         "' is not yours"));
    if (it != c.owned.end()) c.owned.erase(it);
    if (t != nullptr) release_consumer(*t, req.slot, owner, kUnsubscribed);
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool Daemon::on_close_producer(Conn& c, uint32_t id, const protocol::Unsubscribe& req) {
    const std::string topic(field_name(req.topic));
    TopicEntry* t = registry_->find(topic);
    const Owner owner{c.pid, c.start_time};
    if (t == nullptr || req.slot >= t->segment.max_producers() || t->segment.producer_slot(req.slot).pid != owner.pid ||
        t->segment.producer_slot(req.slot).start_time != owner.start_time)
        return reply_error(c, id, make_error(Errc::invalid_argument, "producer slot " + std::to_string(req.slot) + " of '" +
                                                                         topic + "' is not yours"));
    std::erase_if(c.owned, [&](const Owned& o) { return !o.consumer && o.topic == topic && o.slot == req.slot; });
    release_producer(*t, req.slot, owner, kClosed);
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool Daemon::on_gc(Conn& c, uint32_t id) {
    const auto removed = collect_stale(bus_id_, 60);
    for (const auto& r : removed) spdlog::warn("gc: removed {} ({})", r.what, r.why);
    const uint32_t count = uint32_t(std::min<std::size_t>(removed.size(), protocol::kGcEntriesPerReply));
    std::vector<std::byte> body(sizeof(protocol::GcReport) + count * sizeof(protocol::GcEntry));
    const protocol::GcReport head{uint32_t(removed.size()), count};
    std::memcpy(body.data(), &head, sizeof head);
    for (uint32_t i = 0; i < count; ++i) {
        protocol::GcEntry e{};
        copy_name(e.what, removed[i].what);
        copy_name(e.why, removed[i].why);
        std::memcpy(body.data() + sizeof head + i * sizeof e, &e, sizeof e);
    }
    return reply(c, protocol::Type::gc_report, id, body.data(), body.size());
}

bool Daemon::on_delete_subscription(Conn& c, uint32_t id, const protocol::SubscriptionName& req) {
    const std::string topic(field_name(req.topic));
    const std::string name(field_name(req.name));
    TopicEntry* t = registry_->find(topic);
    if (t == nullptr) return reply_error(c, id, make_error(Errc::topic_not_found, "no topic named '" + topic + "'"));
    auto& seg = t->segment;
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        auto& s = seg.consumer_slot(i);
        const auto state = SlotState(s.state.load(std::memory_order_acquire));
        if (s.kind != uint32_t(SlotKind::durable) || field_name(s.name) != name) continue;
        if (state == SlotState::attached && detail::process_alive(s.pid, s.start_time))
            return reply_error(c, id, make_error(Errc::busy, "durable subscription '" + name + "' is attached by pid " +
                                                                 std::to_string(s.pid)));
        if (state != SlotState::detached && state != SlotState::attached) continue;
        s.state.store(uint32_t(SlotState::free), std::memory_order_release);
        detail::futex_signal(seg.consumers().space_futex);  // it no longer holds producers back
        spdlog::info("deleted durable subscription '{}' of '{}'", name, topic);
        return reply(c, protocol::Type::ok, id, nullptr, 0);
    }
    return reply_error(c, id, make_error(Errc::invalid_argument, "no durable subscription '" + name + "' on '" + topic + "'"));
}

void Daemon::disconnect(int fd) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    for (const Owned& o : c.owned) {
        TopicEntry* t = registry_->find(o.topic);
        if (t == nullptr) continue;
        if (o.consumer) release_consumer(*t, o.slot, {c.pid, c.start_time}, kClientGone);
        else release_producer(*t, o.slot, {c.pid, c.start_time}, kClientGone);
    }
    if (!c.owned.empty()) spdlog::info("client pid {} '{}' disconnected; released {} slot(s)", c.pid, c.name, c.owned.size());
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns_.erase(it);
}

}  // namespace shmbus::daemon
