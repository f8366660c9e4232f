// One thread, many topics, and the rest of the program's descriptors in one epoll set: prints every
// message of the topics named on the command line as "TOPIC ID PAYLOAD", and stops after --count
// messages or when stdin closes (a stand-in for any other descriptor the program watches).
//
//   wait_epoll [--dir BUS_DIR] [--count N] TOPIC...
#include <sys/epoll.h>
#include <unistd.h>

#include "topics.h"

int main(int argc, char** argv) {
    auto topics = subscribe_all(argc, argv, "wait_epoll");
    if (!topics) return 1;
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = topics->fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, topics->fd, &ev);
    ev.data.fd = STDIN_FILENO;
    epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
    std::printf("ready\n");
    std::fflush(stdout);

    long printed = 0;
    for (bool running = true; running && printed != topics->count;) {
        epoll_event events[2];
        const int n = epoll_wait(ep, events, 2, -1);
        for (int i = 0; i < n; ++i) {
            if (events[i].data.fd == STDIN_FILENO) {
                char buf[256];
                if (read(STDIN_FILENO, buf, sizeof buf) <= 0) running = false;  // closed: done
                continue;
            }
            if (!print_ready(*topics, printed)) return 1;  // the set's descriptor was readable
        }
    }
    close(ep);
    return 0;
}
