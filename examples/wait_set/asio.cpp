// A wait set in a Boost.Asio event loop: the set's descriptor is watched by the io_context beside
// a timer, so one thread serves the topics and the rest of the program. Prints every message of
// the topics named on the command line as "TOPIC ID PAYLOAD", and a line of totals each second;
// stops after --count messages.
//
//   wait_asio [--dir BUS_DIR] [--count N] TOPIC...
#include <utility>  // Boost 1.74's asio uses std::exchange without including it (C++20)

#include <boost/asio.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "shmbus/shmbus.h"

namespace asio = boost::asio;

class Reader {
public:
    Reader(asio::io_context& io, shmbus::WaitSet& waits, int fd, long count)
        : io_(io), waits_(waits), descriptor_(io, fd), timer_(io), count_(count) {}
    ~Reader() { (void)descriptor_.release(); }  // the set owns the descriptor

    void start() {
        wait_for_messages();
        tick();
    }

private:
    void wait_for_messages() {
        descriptor_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
            if (ec) return;
            auto ready = waits_.wait(std::chrono::nanoseconds(0));  // which ones; re-arms the descriptor
            if (!ready) return io_.stop();
            for (shmbus::Subscriber* s : *ready) {
                (void)s->poll([&](const shmbus::Message& m) {
                    if (printed_ == count_) return;
                    std::printf("%s %llu %.*s\n", s->topic().c_str(), static_cast<unsigned long long>(m.id),
                                static_cast<int>(m.payload.size()), reinterpret_cast<const char*>(m.payload.data()));
                    ++printed_;
                });
            }
            std::fflush(stdout);
            if (printed_ == count_) return io_.stop();
            wait_for_messages();
        });
    }

    void tick() {
        timer_.expires_after(std::chrono::seconds(1));
        timer_.async_wait([this](const boost::system::error_code& ec) {
            if (ec) return;
            std::fprintf(stderr, "wait_asio: %ld messages so far\n", printed_);
            tick();
        });
    }

    asio::io_context& io_;
    shmbus::WaitSet& waits_;
    asio::posix::stream_descriptor descriptor_;
    asio::steady_timer timer_;
    long count_;
    long printed_ = 0;
};

int main(int argc, char** argv) {
    shmbus::ClientOptions options;
    long count = -1;
    std::vector<std::string> topics;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--dir") == 0 && i + 1 < argc) options.dir = argv[++i];
        else if (std::strcmp(argv[i], "--count") == 0 && i + 1 < argc) count = std::atol(argv[++i]);
        else topics.emplace_back(argv[i]);
    }
    if (topics.empty()) {
        std::fprintf(stderr, "usage: wait_asio [--dir BUS_DIR] [--count N] TOPIC...\n");
        return 64;
    }
    auto client = shmbus::Client::connect(options);
    if (!client) {
        std::fprintf(stderr, "wait_asio: %s\n", client.error().message.c_str());
        return 1;
    }
    std::vector<shmbus::Subscriber> subs;
    subs.reserve(topics.size());
    shmbus::WaitSet waits;
    for (const auto& t : topics) {
        auto s = client->subscribe(t);
        if (!s) {
            std::fprintf(stderr, "wait_asio: %s\n", s.error().message.c_str());
            return 1;
        }
        subs.push_back(std::move(s.value()));
        if (auto added = waits.add(subs.back()); !added) return 1;
    }
    auto fd = waits.fd();
    if (!fd) {
        std::fprintf(stderr, "wait_asio: %s\n", fd.error().message.c_str());
        return 1;
    }
    asio::io_context io;
    Reader reader(io, waits, *fd, count);
    reader.start();
    std::printf("ready\n");
    std::fflush(stdout);
    io.run();
    return 0;
}
