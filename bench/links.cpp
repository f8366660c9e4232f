// The transports of shmbus-bench. Each is what a careful user would write with that tool.
#include "links.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include <boost/interprocess/ipc/message_queue.hpp>

#include "aeron.h"
#include "harness.h"
#include "shmbus/shmbus.h"
#include "shmbus/shmbus_c.h"

#if SHMBUS_BENCH_HAVE_ZMQ
#include <zmq.h>
#endif
#if SHMBUS_BENCH_HAVE_ICEORYX
#include "iceoryx_posh/mepoo/chunk_header.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"
#endif

namespace bench {
namespace {

inline void relax() {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

std::atomic<uint64_t> g_link_counter{0};
std::string unique_name(const char* what) {
    return std::string("shmbus-bench-") + what + "-" + std::to_string(getpid()) + "-" + std::to_string(g_link_counter++);
}

// ---------------------------------------------------------------------------------------------
// cacheline and futex: the floors. Two processes take turns on one 64-byte line holding a turn
// word and the first 56 bytes of the message. `cacheline` spins on the word; `futex` sleeps on it
// in the kernel and every send wakes (the floor for blocking waits).
struct alignas(64) TurnLine {
    std::atomic<uint32_t> turn;  // odd: the first side wrote last; even: the second side
    uint32_t pad;
    std::byte data[56];
};
static_assert(sizeof(TurnLine) == 64);

template <bool Sleep>
class TurnLink final : public Link {
public:
    TurnLink() : line_(shared_object<TurnLine>()) {}
    ~TurnLink() override { release_shared(line_); }
    bool open(bool first, std::size_t size) override {
        first_ = first;
        buf_.assign(size, std::byte{0});
        return line_ != nullptr && size <= 64;
    }
    bool send(std::span<const std::byte> m) override {
        std::memcpy(line_->data, m.data(), std::min(m.size(), sizeof line_->data));
        sent_ = line_->turn.load(std::memory_order_relaxed) + 1;  // relaxed: we own the turn
        line_->turn.store(sent_, std::memory_order_release);     // pairs with recv's acquire
        if (Sleep) syscall(SYS_futex, reinterpret_cast<uint32_t*>(&line_->turn), FUTEX_WAKE, 1, nullptr, nullptr, 0);
        return true;
    }
    std::span<const std::byte> recv() override {
        // The first side waits for an even turn above its own, the second for an odd one.
        const uint32_t want_parity = first_ ? 0 : 1;
        for (;;) {
            const uint32_t t = line_->turn.load(std::memory_order_acquire);
            if ((t & 1) == want_parity && t > sent_) {
                sent_ = t;
                break;
            }
            if (Sleep) syscall(SYS_futex, reinterpret_cast<uint32_t*>(&line_->turn), FUTEX_WAIT, t, nullptr, nullptr, 0);
            else relax();
        }
        std::memcpy(buf_.data(), line_->data, std::min(buf_.size(), sizeof line_->data));
        return buf_;
    }

private:
    TurnLine* line_;
    bool first_ = false;
    uint32_t sent_ = 0;
    std::vector<std::byte> buf_;
};

// ---------------------------------------------------------------------------------------------
// raw_ring: a bare single-producer single-consumer byte ring (length-prefixed records, cached
// head and tail, nothing else): the ceiling for what a shared-memory ring can move.
class SpscRing {
public:
    static constexpr std::size_t kHeader = 2 * 64;
    static std::size_t bytes_for(std::size_t capacity) { return kHeader + capacity; }
    void init(std::byte* base, std::size_t capacity) {
        base_ = base;
        cap_ = capacity;
        head_ = reinterpret_cast<std::atomic<uint64_t>*>(base);        // consumer's line
        tail_ = reinterpret_cast<std::atomic<uint64_t>*>(base + 64);   // producer's line
        data_ = base + kHeader;
    }
    bool push(std::span<const std::byte> m) {
        const uint64_t need = (8 + m.size() + 7) & ~uint64_t{7};
        uint64_t pos = local_tail_;
        const uint64_t off = pos % cap_;
        const uint64_t pad = off + need > cap_ ? cap_ - off : 0;
        while (pos + pad + need - cached_head_ > cap_) {
            cached_head_ = head_->load(std::memory_order_acquire);  // pairs with pop's release
            relax();
        }
        if (pad) {
            const uint64_t marker = ~0ull;
            std::memcpy(data_ + off, &marker, 8);
            pos += pad;
        }
        const uint64_t len = m.size();
        std::memcpy(data_ + pos % cap_, &len, 8);
        std::memcpy(data_ + pos % cap_ + 8, m.data(), m.size());
        local_tail_ = pos + need;
        tail_->store(local_tail_, std::memory_order_release);  // pairs with pop's acquire
        return true;
    }
    std::span<const std::byte> pop() {
        if (pending_) {
            head_->store(local_head_, std::memory_order_release);  // frees the previous record
            pending_ = false;
        }
        for (;;) {
            while (local_head_ == cached_tail_) {
                cached_tail_ = tail_->load(std::memory_order_acquire);
                if (local_head_ == cached_tail_) relax();
            }
            uint64_t len;
            std::memcpy(&len, data_ + local_head_ % cap_, 8);
            if (len == ~0ull) {
                local_head_ += cap_ - local_head_ % cap_;
                continue;
            }
            const std::byte* p = data_ + local_head_ % cap_ + 8;
            local_head_ += (8 + len + 7) & ~uint64_t{7};
            pending_ = true;
            return {p, len};
        }
    }

private:
    std::byte* base_ = nullptr;
    std::byte* data_ = nullptr;
    std::size_t cap_ = 0;
    std::atomic<uint64_t>* head_ = nullptr;
    std::atomic<uint64_t>* tail_ = nullptr;
    uint64_t local_tail_ = 0, cached_head_ = 0, local_head_ = 0, cached_tail_ = 0;
    bool pending_ = false;
};

class RawRingLink final : public Link {
public:
    explicit RawRingLink(std::size_t size) {
        cap_ = 1;
        while (cap_ < std::max<std::size_t>(64 * 1024, 4 * (size + 64))) cap_ <<= 1;
        bytes_ = 2 * SpscRing::bytes_for(cap_);
        void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        mem_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
    }
    ~RawRingLink() override {
        if (mem_) munmap(mem_, bytes_);
    }
    bool open(bool first, std::size_t) override {
        if (!mem_) return false;
        std::byte* a = mem_;
        std::byte* b = mem_ + SpscRing::bytes_for(cap_);
        out_.init(first ? a : b, cap_);
        in_.init(first ? b : a, cap_);
        return true;
    }
    bool send(std::span<const std::byte> m) override { return out_.push(m); }
    std::span<const std::byte> recv() override { return in_.pop(); }

private:
    std::size_t cap_ = 0, bytes_ = 0;
    std::byte* mem_ = nullptr;
    SpscRing out_, in_;
};

// ---------------------------------------------------------------------------------------------
// uds and pipe: byte streams of fixed-size messages, blocking reads.
bool write_all(int fd, const std::byte* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= std::size_t(w);
    }
    return true;
}
bool read_all(int fd, std::byte* p, std::size_t n) {
    while (n > 0) {
        ssize_t r = ::read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= std::size_t(r);
    }
    return true;
}

class FdLink final : public Link {
public:
    explicit FdLink(bool socket) {
        if (socket) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
                a_in_ = a_out_ = sv[0];
                b_in_ = b_out_ = sv[1];
            }
        } else {
            int ab[2], ba[2];
            if (pipe2(ab, O_CLOEXEC) == 0 && pipe2(ba, O_CLOEXEC) == 0) {
                a_out_ = ab[1];
                b_in_ = ab[0];
                b_out_ = ba[1];
                a_in_ = ba[0];
            }
        }
    }
    ~FdLink() override {
        for (int fd : {a_in_, a_out_, b_in_, b_out_})
            if (fd >= 0) ::close(fd);
    }
    bool open(bool first, std::size_t size) override {
        in_ = first ? a_in_ : b_in_;
        out_ = first ? a_out_ : b_out_;
        buf_.resize(size);
        return in_ >= 0 && out_ >= 0;
    }
    bool send(std::span<const std::byte> m) override { return write_all(out_, m.data(), m.size()); }
    std::span<const std::byte> recv() override {
        if (!read_all(in_, buf_.data(), buf_.size())) return {};
        return buf_;
    }

private:
    int a_in_ = -1, a_out_ = -1, b_in_ = -1, b_out_ = -1, in_ = -1, out_ = -1;
    std::vector<std::byte> buf_;
};

// ---------------------------------------------------------------------------------------------
// boost_mq: boost::interprocess::message_queue, one per direction.
class BoostMqLink final : public Link {
    using Mq = boost::interprocess::message_queue;

public:
    explicit BoostMqLink(std::size_t size) : ab_(unique_name("mq")), ba_(unique_name("mq")) {
        try {
            Mq::remove(ab_.c_str());
            Mq::remove(ba_.c_str());
            Mq(boost::interprocess::create_only, ab_.c_str(), 8, size);
            Mq(boost::interprocess::create_only, ba_.c_str(), 8, size);
            ok_ = true;
        } catch (...) {
        }
    }
    ~BoostMqLink() override {
        out_.reset();
        in_.reset();
        Mq::remove(ab_.c_str());
        Mq::remove(ba_.c_str());
    }
    bool open(bool first, std::size_t size) override {
        if (!ok_) return false;
        try {
            out_ = std::make_unique<Mq>(boost::interprocess::open_only, (first ? ab_ : ba_).c_str());
            in_ = std::make_unique<Mq>(boost::interprocess::open_only, (first ? ba_ : ab_).c_str());
        } catch (...) {
            return false;
        }
        buf_.resize(size);
        return true;
    }
    bool send(std::span<const std::byte> m) override {
        try {
            out_->send(m.data(), m.size(), 0);
            return true;
        } catch (...) {
            return false;
        }
    }
    std::span<const std::byte> recv() override {
        try {
            Mq::size_type got = 0;
            unsigned prio = 0;
            in_->receive(buf_.data(), buf_.size(), got, prio);
            return {buf_.data(), got};
        } catch (...) {
            return {};
        }
    }

private:
    std::string ab_, ba_;
    bool ok_ = false;
    std::unique_ptr<Mq> out_, in_;
    std::vector<std::byte> buf_;
};

// ---------------------------------------------------------------------------------------------
#if SHMBUS_BENCH_HAVE_ZMQ
// zmq_ipc: a ZMQ_PAIR socket over ipc://, created after fork in each process.
class ZmqLink final : public Link {
public:
    ZmqLink() : endpoint_("ipc:///tmp/" + unique_name("zmq") + ".ipc") {}
    ~ZmqLink() override {
        close();
        std::error_code ec;
        std::filesystem::remove(endpoint_.substr(6), ec);
    }
    void close() override {  // the default infinite linger makes these wait until sent
        if (sock_) zmq_close(std::exchange(sock_, nullptr));
        if (ctx_) zmq_ctx_term(std::exchange(ctx_, nullptr));
    }
    bool open(bool first, std::size_t size) override {
        ctx_ = zmq_ctx_new();
        sock_ = zmq_socket(ctx_, ZMQ_PAIR);
        buf_.resize(size);
        return (first ? zmq_bind(sock_, endpoint_.c_str()) : zmq_connect(sock_, endpoint_.c_str())) == 0;
    }
    bool send(std::span<const std::byte> m) override { return zmq_send(sock_, m.data(), m.size(), 0) == int(m.size()); }
    std::span<const std::byte> recv() override {
        const int n = zmq_recv(sock_, buf_.data(), buf_.size(), 0);
        if (n < 0) return {};
        return {buf_.data(), std::size_t(n)};
    }

private:
    std::string endpoint_;
    void* ctx_ = nullptr;
    void* sock_ = nullptr;
    std::vector<std::byte> buf_;
};
#endif

// ---------------------------------------------------------------------------------------------
#if SHMBUS_BENCH_HAVE_ICEORYX
// iceoryx: untyped publisher/subscriber pairs through RouDi, busy-polling take().
void init_iceoryx_runtime() {
    static bool done = false;
    static pid_t pid = 0;
    if (done && pid == getpid()) return;
    const std::string name = "shmbus-bench-" + std::to_string(getpid());
    iox::runtime::PoshRuntime::initRuntime(iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name.c_str()));
    done = true;
    pid = getpid();
}

class IceoryxLink final : public Link {
public:
    IceoryxLink() : instance_("l" + std::to_string(g_link_counter++)) {}
    ~IceoryxLink() override {
        if (pending_ && sub_) sub_->release(pending_);
    }
    bool open(bool first, std::size_t size) override {
        init_iceoryx_runtime();
        auto id = [&](const char* event) {
            return iox::capro::ServiceDescription{"ShmbusBench", iox::capro::IdString_t(iox::cxx::TruncateToCapacity, instance_.c_str()),
                                                  iox::capro::IdString_t(iox::cxx::TruncateToCapacity, event)};
        };
        iox::popo::SubscriberOptions so;
        so.queueCapacity = 16;
        so.historyRequest = 0;
        // Lossless, like every other transport here: a full queue holds the publisher back.
        so.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
        iox::popo::PublisherOptions po;
        po.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
        pub_ = std::make_unique<iox::popo::UntypedPublisher>(id(first ? "ping" : "pong"), po);
        sub_ = std::make_unique<iox::popo::UntypedSubscriber>(id(first ? "pong" : "ping"), so);
        size_ = size;
        // Both directions must be connected before the first message.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!(pub_->hasSubscribers() && sub_->getSubscriptionState() == iox::SubscribeState::SUBSCRIBED)) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }
    bool send(std::span<const std::byte> m) override {
        for (int attempt = 0; attempt < 1000000; ++attempt) {  // a loan fails while the pool is drained
            bool ok = false;
            pub_->loan(uint32_t(m.size())).and_then([&](void* chunk) {
                std::memcpy(chunk, m.data(), m.size());
                pub_->publish(chunk);
                ok = true;
            });
            if (ok) return true;
            relax();
        }
        return false;
    }
    std::span<const std::byte> recv() override {
        if (pending_) {
            sub_->release(pending_);
            pending_ = nullptr;
        }
        for (;;) {
            auto r = sub_->take();
            if (!r.has_error()) {
                pending_ = r.value();
                const auto* header = iox::mepoo::ChunkHeader::fromUserPayload(pending_);
                return {static_cast<const std::byte*>(pending_), header->userPayloadSize()};
            }
            relax();
        }
    }

private:
    std::string instance_;
    std::unique_ptr<iox::popo::UntypedPublisher> pub_;
    std::unique_ptr<iox::popo::UntypedSubscriber> sub_;
    const void* pending_ = nullptr;
    std::size_t size_ = 0;
};
#endif

// ---------------------------------------------------------------------------------------------
// shmbus: two topics (ping, pong) through the real daemon; each process connects after fork.
class ShmbusLink final : public Link {
public:
    ShmbusLink(std::string mode, std::size_t size) : mode_(std::move(mode)), base_(unique_name("lat")) {
        // shmbus_wait<N> / shmbus_fd<N>: the reader sleeps in a wait set of N subscriptions (the
        // link's and N-1 idle ones), in wait() or on the set's descriptor through epoll.
        for (const char* kind : {"shmbus_wait", "shmbus_fd"})
            if (mode_.rfind(kind, 0) == 0 && mode_.size() > std::strlen(kind)) {
                set_size_ = std::max(1, std::atoi(mode_.c_str() + std::strlen(kind)));
                use_fd_ = std::strcmp(kind, "shmbus_fd") == 0;
            }
        auto client = connect();
        if (!client) return;
        shmbus::TopicConfig c;
        c.capacity = std::max<uint64_t>(1u << 20, 16 * (size + 64));
        c.max_message = uint32_t(std::max<std::size_t>(size, 64));
        c.single_producer = mode_.rfind("shmbus_exclusive", 0) == 0;  // each side is its topic's only publisher
        c.timestamps = mode_.find("_untimed") == std::string::npos;   // *_untimed: topics without timestamps
        ok_ = client->create_topic(base_ + ".ping", c).has_value() && client->create_topic(base_ + ".pong", c).has_value();
        if (ok_ && mode_ == "shmbus_archived")  // the same link with an archiver reading behind each topic
            ok_ = client->set_archive(base_ + ".ping", {}).has_value() && client->set_archive(base_ + ".pong", {}).has_value();
        shmbus::TopicConfig idle;
        idle.capacity = 64 * 1024;
        for (int i = 1; ok_ && i < set_size_; ++i) ok_ = client->create_topic(idle_topic(i), idle).has_value();
    }
    ~ShmbusLink() override {
        if (epoll_ >= 0) ::close(epoll_);
        sub_.reset();
        pub_.reset();
        if (creator_pid_ == getpid())
            if (auto c = connect()) {
                (void)c->delete_topic(base_ + ".ping");
                (void)c->delete_topic(base_ + ".pong");
                for (int i = 1; i < set_size_; ++i) (void)c->delete_topic(idle_topic(i), true);
            }
    }
    bool open(bool first, std::size_t) override {
        if (!ok_) return false;
        auto client = connect();
        if (!client) return false;
        client_ = std::make_unique<shmbus::Client>(std::move(client.value()));
        shmbus::SubscribeOptions o;
        o.from = shmbus::StartFrom::earliest;  // fresh topics: nothing sent before we subscribe is missed
        const bool sleeps = mode_ == "shmbus_block" || set_size_ != 0;
        o.wait = sleeps ? shmbus::WaitStrategy::spin_then_sleep : shmbus::WaitStrategy::busy_spin;
        o.spin_polls = 0;  // shmbus_block sleeps at once: the figure to hold against the futex floor
        if (mode_ == "shmbus_durable") {
            o.durable_name = first ? "first" : "second";
            o.auto_ack = false;  // the view is used after receive returns; acked on the next recv
        }
        auto sub = client_->subscribe(base_ + (first ? ".pong" : ".ping"), o);
        shmbus::PublisherOptions po;
        po.reuse_space = mode_.find("_reuse") != std::string::npos;  // *_reuse: large messages into warm memory
        auto pub = client_->publisher(base_ + (first ? ".ping" : ".pong"), po);
        if (!sub || !pub) return false;
        sub_ = std::make_unique<shmbus::Subscriber>(std::move(sub.value()));
        pub_ = std::make_unique<shmbus::Publisher>(std::move(pub.value()));
        return set_size_ == 0 || join_wait_set(o);
    }
    bool send(std::span<const std::byte> m) override { return pub_->publish(m) == shmbus::PublishStatus::ok; }
    // The view is used after receive() returns, which a message read in place (64 KiB and up) only
    // promises until its handler returns: safe here because the partner sends the next message
    // into this topic only after this one is answered.
    std::span<const std::byte> recv() override {
        if (durable_pending_) sub_->ack_delivered();
        view_ = {};
        auto handler = [&](const shmbus::Message& m) { view_ = m.payload; };
        if (set_size_ != 0) return recv_through_wait_set(handler);
        for (;;) {
            const auto r = sub_->receive(handler, std::chrono::seconds(10), 1);
            if (r.status == shmbus::ReceiveStatus::ok) break;
            if (r.status == shmbus::ReceiveStatus::corrupt) return {};
        }
        durable_pending_ = mode_ == "shmbus_durable";
        return view_;
    }

private:
    static shmbus::Result<shmbus::Client> connect() {
        shmbus::ClientOptions o;
        o.dir = shmbus_dir();
        o.name = "bench";
        return shmbus::Client::connect(o);
    }
    [[nodiscard]] std::string idle_topic(int i) const { return base_ + ".idle" + std::to_string(i); }
    bool join_wait_set(const shmbus::SubscribeOptions& o) {
        waits_ = std::make_unique<shmbus::WaitSet>();
        if (!waits_->add(*sub_)) return false;
        idle_.reserve(std::size_t(set_size_));
        for (int i = 1; i < set_size_; ++i) {
            auto s = client_->subscribe(idle_topic(i), o);
            if (!s) return false;
            idle_.push_back(std::move(s.value()));
            if (!waits_->add(idle_.back())) return false;
        }
        if (!use_fd_) return true;
        auto fd = waits_->fd();
        if (!fd) return false;
        epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
        epoll_event ev{};
        ev.events = EPOLLIN;
        return epoll_ >= 0 && ::epoll_ctl(epoll_, EPOLL_CTL_ADD, *fd, &ev) == 0;
    }
    // Polls the link's subscription; when empty, sleeps in the set (wait() or epoll on its fd).
    template <class Handler>
    std::span<const std::byte> recv_through_wait_set(Handler& handler) {
        for (;;) {
            const auto r = sub_->poll(handler, 1);
            if (r.status == shmbus::ReceiveStatus::ok) return view_;
            if (r.status == shmbus::ReceiveStatus::corrupt) return {};
            auto ready = waits_->wait(use_fd_ ? std::chrono::nanoseconds(0) : std::chrono::nanoseconds(std::chrono::seconds(10)));
            if (!ready) return {};
            if (use_fd_ && ready->empty()) {
                epoll_event ev{};
                (void)::epoll_wait(epoll_, &ev, 1, 10000);
            }
        }
    }
    int set_size_ = 0;
    bool use_fd_ = false;
    int epoll_ = -1;
    std::unique_ptr<shmbus::WaitSet> waits_;
    std::vector<shmbus::Subscriber> idle_;
    std::string mode_, base_;
    bool ok_ = false;
    bool durable_pending_ = false;
    pid_t creator_pid_ = getpid();
    std::unique_ptr<shmbus::Client> client_;
    std::unique_ptr<shmbus::Publisher> pub_;
    std::unique_ptr<shmbus::Subscriber> sub_;
    std::span<const std::byte> view_;
};

// The same ping-pong through the C API (shmbus_c.h): busy-spinning subscriptions, shmbus_publish
// and shmbus_next, to hold against shmbus_spin (the C++ calls underneath).
class CApiLink final : public Link {
public:
    explicit CApiLink(std::size_t size) : base_(unique_name("c")) {
        if (shmbus_connect(shmbus_dir().c_str(), &client_) != SHMBUS_OK) return;
        shmbus_topic_config c = SHMBUS_TOPIC_CONFIG_INIT;
        c.capacity = std::max<uint64_t>(1u << 20, 16 * (size + 64));
        c.max_message = uint32_t(std::max<std::size_t>(size, 64));
        ok_ = shmbus_create_topic(client_, (base_ + ".ping").c_str(), &c) == SHMBUS_OK &&
              shmbus_create_topic(client_, (base_ + ".pong").c_str(), &c) == SHMBUS_OK;
    }
    ~CApiLink() override {
        shmbus_subscriber_close(sub_);
        shmbus_publisher_close(pub_);
        if (client_ && creator_pid_ == getpid()) {
            (void)shmbus_delete_topic(client_, (base_ + ".ping").c_str(), 1);
            (void)shmbus_delete_topic(client_, (base_ + ".pong").c_str(), 1);
        }
        shmbus_client_close(client_);
    }
    bool open(bool first, std::size_t) override {
        if (!ok_) return false;
        shmbus_client_close(client_);  // the parent's connection: each process makes its own
        client_ = nullptr;
        if (shmbus_connect(shmbus_dir().c_str(), &client_) != SHMBUS_OK) return false;
        shmbus_subscribe_options o = SHMBUS_SUBSCRIBE_OPTIONS_INIT;
        o.start = SHMBUS_START_EARLIEST;
        o.busy_spin = 1;
        return shmbus_subscribe(client_, (base_ + (first ? ".pong" : ".ping")).c_str(), &o, &sub_) == SHMBUS_OK &&
               shmbus_publisher_open(client_, (base_ + (first ? ".ping" : ".pong")).c_str(), nullptr, &pub_) == SHMBUS_OK;
    }
    bool send(std::span<const std::byte> m) override { return shmbus_publish(pub_, m.data(), m.size()) == SHMBUS_OK; }
    std::span<const std::byte> recv() override {
        for (;;) {
            const int st = shmbus_next(sub_, 10'000'000'000, &m_);
            if (st == SHMBUS_OK) return {static_cast<const std::byte*>(m_.payload), m_.size};
            if (st != SHMBUS_EMPTY) return {};
        }
    }

private:
    std::string base_;
    bool ok_ = false;
    pid_t creator_pid_ = getpid();
    shmbus_client* client_ = nullptr;
    shmbus_publisher* pub_ = nullptr;
    shmbus_subscriber* sub_ = nullptr;
    shmbus_message m_{};
};

}  // namespace

std::vector<std::string> available_transports() {
    std::vector<std::string> t = {"shmbus_spin", "shmbus_exclusive", "shmbus_archived", "shmbus_block", "shmbus_durable", "cacheline",
                                  "futex",       "raw_ring",        "uds",          "pipe",           "boost_mq",
                                  "shmbus_spin_untimed", "shmbus_exclusive_untimed", "shmbus_spin_reuse"};
#if SHMBUS_BENCH_HAVE_ZMQ
    t.push_back("zmq_ipc");
#endif
#if SHMBUS_BENCH_HAVE_ICEORYX
    t.push_back("iceoryx");
#endif
    if (aeron_available()) {
        t.push_back("aeron_ipc");
        t.push_back("aeron_ipc_exclusive");
    }
    return t;
}

std::vector<std::string> missing_transports() {
    std::vector<std::string> m;
#if !SHMBUS_BENCH_HAVE_ZMQ
    m.push_back("zmq_ipc: libzmq (libzmq3-dev) was not found at build time");
#endif
#if !SHMBUS_BENCH_HAVE_ICEORYX
    m.push_back("iceoryx: iceoryx_posh (libiceoryx-posh-dev) was not found at build time");
#endif
    if (!aeron_available()) m.push_back(aeron_missing_reason());
    return m;
}

std::unique_ptr<Link> make_link(const std::string& t, std::size_t size, std::string& why) {
    if (t == "shmbus_c") {
        if (!ensure_shmbusd(why)) return nullptr;
        return std::make_unique<CApiLink>(size);
    }
    if (t.rfind("shmbus_", 0) == 0) {
        if (!ensure_shmbusd(why)) return nullptr;
        return std::make_unique<ShmbusLink>(t, size);
    }
    if (t.rfind("aeron_", 0) == 0) return make_aeron_link(t, size, why);
    if (t == "cacheline") return std::make_unique<TurnLink<false>>();
    if (t == "futex") return std::make_unique<TurnLink<true>>();
    if (t == "raw_ring") return std::make_unique<RawRingLink>(size);
    if (t == "uds") return std::make_unique<FdLink>(true);
    if (t == "pipe") return std::make_unique<FdLink>(false);
    if (t == "boost_mq") return std::make_unique<BoostMqLink>(size);
#if SHMBUS_BENCH_HAVE_ZMQ
    if (t == "zmq_ipc") return std::make_unique<ZmqLink>();
#endif
#if SHMBUS_BENCH_HAVE_ICEORYX
    if (t == "iceoryx") {
        if (!ensure_roudi(why)) return nullptr;
        return std::make_unique<IceoryxLink>();
    }
#endif
    why = "transport " + t + " is not built into this binary";
    return nullptr;
}

}  // namespace bench
