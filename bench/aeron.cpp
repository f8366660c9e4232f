// Aeron IPC beside shmbus (aeron.h). Built only when CMake is given an Aeron install tree
// (-DSHMBUS_BENCH_AERON_DIR=..., scripts/bench-aeron.sh builds one from Aeron's source): Aeron is
// not packaged for Debian, and nothing else in the project needs it.
//
// What runs is what Aeron's own C samples run (cping/cpong, streaming_publisher/rate_subscriber):
// a media driver (aeronmd, shared threading mode, its default idle strategy, term buffers
// pre-touched and not sparse) in a process of its own, publications on `aeron:ipc` with an
// explicit term length, offers retried while back-pressured, images polled by the reader. On two
// cores the driver shares them with the two peers; it works only when a publication's limit
// moves (the reader's position is tracked by its duty cycle) and sleeps in between.
#include "aeron.h"

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "services.h"

#if SHMBUS_BENCH_HAVE_AERON
extern "C" {
#include <aeronc.h>
#include <protocol/aeron_udp_protocol.h>
}
#endif

namespace bench {

#if SHMBUS_BENCH_HAVE_AERON
namespace {

constexpr int32_t kStreamPing = 1001;
constexpr int32_t kStreamPong = 1002;
constexpr int kFragmentLimit = 10;  // what Aeron's samples poll with

Service g_driver;

void stop_driver() { stop(g_driver, SIGINT); }  // aeronmd shuts down cleanly and deletes its directory

bool ensure_driver(std::string& why) {
    if (g_driver.pid > 0) return true;
    g_driver.dir = "/dev/shm/shmbus-bench-aeron-" + std::to_string(getpid());
    const std::string log = "/tmp/shmbus-bench-aeronmd-" + std::to_string(getpid()) + ".log";
    g_driver.pid = spawn_quiet({SHMBUS_BENCH_AERONMD, "-Daeron.dir=" + g_driver.dir, "-Daeron.threading.mode=SHARED",
                                "-Daeron.term.buffer.sparse.file=false", "-Daeron.pre.touch.mapped.memory=true",
                                "-Daeron.dir.delete.on.start=true", "-Daeron.dir.delete.on.shutdown=true"},
                               log);
    g_driver.owner = getpid();
    std::atexit(stop_driver);
    if (!wait_for([&] { return std::filesystem::exists(g_driver.dir + "/cnc.dat"); }, std::chrono::seconds(10))) {
        why = "aeronmd did not start (see " + log + ")";
        return false;
    }
    return true;
}

std::string ipc_channel(std::size_t term_length) { return "aeron:ipc?term-length=" + std::to_string(term_length); }

// A term that holds the largest message: Aeron refuses messages above an eighth of the term.
std::size_t term_for(std::size_t size) {
    std::size_t term = 1 << 20;
    while (term / 8 < size + 64) term <<= 1;
    return term;
}

// One Aeron client, its publication (concurrent or exclusive) and its subscription's image.
class AeronEnd {
public:
    ~AeronEnd() {
        if (image_) aeron_subscription_image_release(sub_, image_);
        if (assembler_) aeron_image_fragment_assembler_delete(assembler_);
        if (sub_) aeron_subscription_close(sub_, nullptr, nullptr);
        if (pub_) aeron_publication_close(pub_, nullptr, nullptr);
        if (xpub_) aeron_exclusive_publication_close(xpub_, nullptr, nullptr);
        if (aeron_) aeron_close(aeron_);
        if (context_) aeron_context_close(context_);
    }
    bool connect() {
        if (aeron_context_init(&context_) < 0 || aeron_context_set_dir(context_, g_driver.dir.c_str()) < 0) return false;
        return aeron_init(&aeron_, context_) == 0 && aeron_start(aeron_) == 0;
    }
    bool add_publication(const std::string& channel, int32_t stream, bool exclusive) {
        exclusive_ = exclusive;
        if (exclusive) {
            aeron_async_add_exclusive_publication_t* async = nullptr;
            if (aeron_async_add_exclusive_publication(&async, aeron_, channel.c_str(), stream) < 0) return false;
            int rc = 0;
            while ((rc = aeron_async_add_exclusive_publication_poll(&xpub_, async)) == 0) std::this_thread::yield();
            return rc > 0;
        }
        aeron_async_add_publication_t* async = nullptr;
        if (aeron_async_add_publication(&async, aeron_, channel.c_str(), stream) < 0) return false;
        int rc = 0;
        while ((rc = aeron_async_add_publication_poll(&pub_, async)) == 0) std::this_thread::yield();
        return rc > 0;
    }
    bool add_subscription(const std::string& channel, int32_t stream) {
        aeron_async_add_subscription_t* async = nullptr;
        if (aeron_async_add_subscription(&async, aeron_, channel.c_str(), stream, nullptr, nullptr, nullptr, nullptr) < 0)
            return false;
        int rc = 0;
        while ((rc = aeron_async_add_subscription_poll(&sub_, async)) == 0) std::this_thread::yield();
        return rc > 0;
    }
    // Waits until the publication has a reader and the subscription an image (both directions).
    bool wait_connected(bool need_publication, bool need_image) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (;;) {
            const bool pub_ok = !need_publication || (exclusive_ ? aeron_exclusive_publication_is_connected(xpub_)
                                                                 : aeron_publication_is_connected(pub_));
            const bool sub_ok = !need_image || aeron_subscription_is_connected(sub_);
            if (pub_ok && sub_ok) break;
            if (std::chrono::steady_clock::now() > deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (need_image) {
            image_ = aeron_subscription_image_at_index(sub_, 0);
            if (image_ == nullptr) return false;
        }
        return true;
    }
    // Offers until the publication takes it; false on an error other than back pressure.
    bool offer(const std::byte* data, std::size_t n) {
        for (;;) {
            const int64_t r = exclusive_ ? aeron_exclusive_publication_offer(xpub_, reinterpret_cast<const uint8_t*>(data), n, nullptr, nullptr)
                                         : aeron_publication_offer(pub_, reinterpret_cast<const uint8_t*>(data), n, nullptr, nullptr);
            if (r > 0) return true;
            if (r != AERON_PUBLICATION_BACK_PRESSURED && r != AERON_PUBLICATION_ADMIN_ACTION) return false;
            __builtin_ia32_pause();
        }
    }
    // Polls the image once; whole messages (reassembled where fragmented) go to `handler`.
    int poll(aeron_fragment_handler_t handler, void* clientd, int limit) {
        if (assembler_ == nullptr || handler != handler_ || clientd != clientd_) {
            if (assembler_) aeron_image_fragment_assembler_delete(assembler_);
            handler_ = handler;
            clientd_ = clientd;
            if (aeron_image_fragment_assembler_create(&assembler_, handler, clientd) < 0) return -1;
        }
        return aeron_image_poll(image_, aeron_image_fragment_assembler_handler, assembler_, std::size_t(limit));
    }

private:
    aeron_context_t* context_ = nullptr;
    aeron_t* aeron_ = nullptr;
    aeron_publication_t* pub_ = nullptr;
    aeron_exclusive_publication_t* xpub_ = nullptr;
    aeron_subscription_t* sub_ = nullptr;
    aeron_image_t* image_ = nullptr;
    aeron_image_fragment_assembler_t* assembler_ = nullptr;
    aeron_fragment_handler_t handler_ = nullptr;
    void* clientd_ = nullptr;
    bool exclusive_ = false;
};

// The ping-pong link: ping on one stream, pong on the other, one client per process.
class AeronLink final : public Link {
public:
    AeronLink(bool exclusive, std::size_t size) : exclusive_(exclusive), channel_(ipc_channel(term_for(size))) {}
    bool open(bool first, std::size_t) override {
        end_ = std::make_unique<AeronEnd>();
        return end_->connect() && end_->add_subscription(channel_, first ? kStreamPong : kStreamPing) &&
               end_->add_publication(channel_, first ? kStreamPing : kStreamPong, exclusive_) && end_->wait_connected(true, true);
    }
    bool send(std::span<const std::byte> m) override { return end_->offer(m.data(), m.size()); }
    // A fragmented message is handed over in the assembler's buffer, which stays as it is until
    // the next poll; an unfragmented one lies in the term buffer, which the driver cleans once the
    // reader has passed it, so it is copied out (at most one MTU's payload).
    std::span<const std::byte> recv() override {
        got_ = {};
        while (got_.data() == nullptr)
            if (end_->poll(&AeronLink::on_message, this, 1) < 0) return {};
        return got_;
    }
    void close() override { end_.reset(); }

private:
    static void on_message(void* clientd, const uint8_t* buffer, size_t length, aeron_header_t* header) {
        auto* self = static_cast<AeronLink*>(clientd);
        aeron_header_values_t values{};
        const bool whole = aeron_header_values(header, &values) == 0 &&
                           (values.frame.flags & AERON_DATA_HEADER_UNFRAGMENTED) == AERON_DATA_HEADER_UNFRAGMENTED;
        if (!whole) {
            self->got_ = {reinterpret_cast<const std::byte*>(buffer), length};
            return;
        }
        self->copy_.resize(length);
        std::memcpy(self->copy_.data(), buffer, length);
        self->got_ = {self->copy_.data(), length};
    }
    bool exclusive_;
    std::string channel_;
    std::unique_ptr<AeronEnd> end_;
    std::span<const std::byte> got_;
    std::vector<std::byte> copy_;
};

struct StreamCheck {
    uint64_t next = 0;
    uint64_t bad = 0;
    std::size_t size = 0;
};

void on_stream_message(void* clientd, const uint8_t* buffer, size_t length, aeron_header_t*) {
    auto* c = static_cast<StreamCheck*>(clientd);
    if (!verify({reinterpret_cast<const std::byte*>(buffer), length}, c->next, c->size)) ++c->bad;
    ++c->next;
}

struct AeronStream {
    std::atomic<uint64_t> start_ticks;
    std::atomic<uint64_t> end_ticks;
    std::atomic<uint64_t> bad;
    std::atomic<uint32_t> subscribed;
};

}  // namespace

bool aeron_available() { return true; }
std::string aeron_missing_reason() { return {}; }

std::unique_ptr<Link> make_aeron_link(const std::string& transport, std::size_t size, std::string& why) {
    if (!ensure_driver(why)) return nullptr;
    return std::make_unique<AeronLink>(transport == "aeron_ipc_exclusive", size);
}

StreamRate stream_aeron(bool exclusive, std::size_t size, std::size_t term_length, uint64_t count) {
    StreamRate out;
    if (!ensure_driver(out.error)) return out;
    auto* r = shared_object<AeronStream>();
    const std::string channel = ipc_channel(term_length);
    Partner consumer(1, [&] {
        AeronEnd end;
        if (!end.connect() || !end.add_subscription(channel, kStreamPing)) return 2;
        r->subscribed = 1;
        if (!end.wait_connected(false, true)) return 3;
        StreamCheck check;
        check.size = size;
        while (check.next < count)
            if (end.poll(on_stream_message, &check, kFragmentLimit) < 0) return 4;
        r->end_ticks = Clock::ticks();
        r->bad = check.bad;
        return 0;
    });
    Partner producer(0, [&] {
        while (r->subscribed.load() == 0) std::this_thread::yield();
        AeronEnd end;
        if (!end.connect() || !end.add_publication(channel, kStreamPing, exclusive) || !end.wait_connected(true, false)) return 2;
        std::vector<std::byte> msg(size);
        r->start_ticks = Clock::ticks();
        for (uint64_t i = 0; i < count; ++i) {
            stamp(msg, i);
            if (!end.offer(msg.data(), msg.size())) return 3;
        }
        // The publication stays open until the reader has everything (closing it ends the image).
        while (r->end_ticks.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return 0;
    });
    const int rc_p = producer.join(std::chrono::seconds(120)), rc_c = consumer.join(std::chrono::seconds(120));
    if (rc_p != 0 || rc_c != 0) out.error = "an Aeron partner failed";
    else if (r->bad != 0) out.error = "the Aeron reader saw a message out of order or with a bad checksum";
    else {
        out.secs = double(r->end_ticks - r->start_ticks) * Clock::ns_per_tick() / 1e9;
        out.received = count;
    }
    release_shared(r);
    return out;
}

void throughput_aeron(benchmark::State& state, bool exclusive, std::size_t size, std::size_t term_length, uint64_t count) {
    report_stream(state, stream_aeron(exclusive, size, term_length, count), size, 1, count);
}

#else

bool aeron_available() { return false; }
std::string aeron_missing_reason() {
    return "aeron_ipc: built without Aeron (configure with -DSHMBUS_BENCH_AERON_DIR=<install tree>; scripts/bench-aeron.sh)";
}
std::unique_ptr<Link> make_aeron_link(const std::string&, std::size_t, std::string& why) {
    why = aeron_missing_reason();
    return nullptr;
}
StreamRate stream_aeron(bool, std::size_t, std::size_t, uint64_t) {
    StreamRate out;
    out.error = aeron_missing_reason();
    return out;
}
void throughput_aeron(benchmark::State& state, bool, std::size_t, std::size_t, uint64_t) {
    fail_run(state, aeron_missing_reason());
}

#endif

}  // namespace bench
