// A wait set in a Boost.Asio event loop: the set's descriptor is watched by the io_context beside
// a timer, so one thread serves the topics and the rest of the program. Prints every message of
// the topics named on the command line as "TOPIC ID PAYLOAD", and a line of totals each second;
// stops after --count messages.
//
//   wait_asio [--dir BUS_DIR] [--count N] TOPIC...
#include <utility>  // Boost 1.74's asio uses std::exchange without including it (C++20)

#include <boost/asio.hpp>

#include "topics.h"

namespace asio = boost::asio;

class Reader {
public:
    Reader(asio::io_context& io, Topics& topics) : io_(io), topics_(topics), descriptor_(io, topics.fd), timer_(io) {}
    ~Reader() { (void)descriptor_.release(); }  // the set owns the descriptor

    void start() {
        wait_for_messages();
        tick();
    }

private:
    void wait_for_messages() {
        descriptor_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
            if (ec) return;
            if (!print_ready(topics_, printed_) || printed_ == topics_.count) return io_.stop();
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
    Topics& topics_;
    asio::posix::stream_descriptor descriptor_;
    asio::steady_timer timer_;
    long printed_ = 0;
};

int main(int argc, char** argv) {
    auto topics = subscribe_all(argc, argv, "wait_asio");
    if (!topics) return 1;
    asio::io_context io;
    Reader reader(io, *topics);
    reader.start();
    std::printf("ready\n");
    std::fflush(stdout);
    io.run();
    return 0;
}
