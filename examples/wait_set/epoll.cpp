// One thread, many topics, and the rest of the program's descriptors in one epoll set: prints every
// message of the topics named on the command line as "TOPIC ID PAYLOAD", and stops after --count
// messages or when stdin closes (a stand-in for any other descriptor the program watches).
//
//   wait_epoll [--dir BUS_DIR] [--count N] TOPIC...
#include <sys/epoll.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "shmbus/shmbus.h"

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
        std::fprintf(stderr, "usage: wait_epoll [--dir BUS_DIR] [--count N] TOPIC...\n");
        return 64;
    }
    auto client = shmbus::Client::connect(options);
    if (!client) {
        std::fprintf(stderr, "wait_epoll: %s\n", client.error().message.c_str());
        return 1;
    }
    std::vector<shmbus::Subscriber> subs;
    subs.reserve(topics.size());
    shmbus::WaitSet waits;
    for (const auto& t : topics) {
        auto s = client->subscribe(t);
        if (!s) {
            std::fprintf(stderr, "wait_epoll: %s\n", s.error().message.c_str());
            return 1;
        }
        subs.push_back(std::move(s.value()));
        if (auto added = waits.add(subs.back()); !added) return 1;
    }
    auto fd = waits.fd();
    if (!fd) {
        std::fprintf(stderr, "wait_epoll: %s\n", fd.error().message.c_str());
        return 1;
    }
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = *fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, *fd, &ev);
    ev.data.fd = STDIN_FILENO;
    epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
    std::printf("ready\n");
    std::fflush(stdout);

    long printed = 0;
    for (bool running = true; running && printed != count;) {
        epoll_event events[2];
        const int n = epoll_wait(ep, events, 2, -1);
        for (int i = 0; i < n; ++i) {
            if (events[i].data.fd == STDIN_FILENO) {
                char buf[256];
                if (read(STDIN_FILENO, buf, sizeof buf) <= 0) running = false;  // closed: done
                continue;
            }
            // The set's descriptor: ask which subscriptions are ready (this also re-arms it).
            auto ready = waits.wait(std::chrono::nanoseconds(0));
            if (!ready) return 1;
            for (shmbus::Subscriber* s : *ready) {
                (void)s->poll([&](const shmbus::Message& m) {
                    if (printed == count) return;
                    std::printf("%s %llu %.*s\n", s->topic().c_str(), static_cast<unsigned long long>(m.id),
                                static_cast<int>(m.payload.size()), reinterpret_cast<const char*>(m.payload.data()));
                    ++printed;
                });
            }
            std::fflush(stdout);
        }
    }
    close(ep);
    return 0;
}
