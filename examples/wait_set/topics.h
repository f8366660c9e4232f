// What both wait-set examples do first: read `[--dir BUS_DIR] [--count N] TOPIC...`, connect,
// subscribe to each topic and put every subscription in one WaitSet; and how they print a message.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "shmbus/shmbus.h"

struct Topics {
    std::unique_ptr<shmbus::Client> client;
    std::vector<shmbus::Subscriber> subs;
    shmbus::WaitSet waits;
    int fd = -1;     // the set's descriptor
    long count = -1; // messages to print before stopping (-1: no limit)
};

// Null after saying why on stderr (`program` names the example).
inline std::unique_ptr<Topics> subscribe_all(int argc, char** argv, const char* program) {
    auto t = std::make_unique<Topics>();
    shmbus::ClientOptions options;
    std::vector<std::string> names;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--dir") == 0 && i + 1 < argc) options.dir = argv[++i];
        else if (std::strcmp(argv[i], "--count") == 0 && i + 1 < argc) t->count = std::atol(argv[++i]);
        else names.emplace_back(argv[i]);
    }
    if (names.empty()) {
        std::fprintf(stderr, "usage: %s [--dir BUS_DIR] [--count N] TOPIC...\n", program);
        return nullptr;
    }
    auto fail = [&](const shmbus::Error& e) {
        std::fprintf(stderr, "%s: %s\n", program, e.message.c_str());
        return nullptr;
    };
    auto client = shmbus::Client::connect(options);
    if (!client) return fail(client.error());
    t->client = std::make_unique<shmbus::Client>(std::move(client.value()));
    t->subs.reserve(names.size());
    for (const auto& name : names) {
        auto s = t->client->subscribe(name);
        if (!s) return fail(s.error());
        t->subs.push_back(std::move(s.value()));
        if (auto added = t->waits.add(t->subs.back()); !added) return fail(added.error());
    }
    auto fd = t->waits.fd();
    if (!fd) return fail(fd.error());
    t->fd = *fd;
    return t;
}

// Polls the subscriptions the set says are ready (which also re-arms its descriptor), printing
// each message as "TOPIC ID PAYLOAD" until `printed` reaches the count. False on an error.
inline bool print_ready(Topics& t, long& printed) {
    auto ready = t.waits.wait(std::chrono::nanoseconds(0));
    if (!ready) return false;
    for (shmbus::Subscriber* s : *ready) {
        (void)s->poll([&](const shmbus::Message& m) {
            if (printed == t.count) return;
            std::printf("%s %llu %.*s\n", s->topic().c_str(), static_cast<unsigned long long>(m.id),
                        static_cast<int>(m.payload.size()), reinterpret_cast<const char*>(m.payload.data()));
            ++printed;
        });
    }
    std::fflush(stdout);
    return true;
}
