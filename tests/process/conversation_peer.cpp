// A test peer for request/reply through a real shmbusd.
//   conversation_peer respond DIR TOPIC [--group NAME] [--hold-us N] [--busy-file F]
//       serves TOPIC until killed: each request "CALLER:SEQ:CHECK" is answered "re:CALLER:SEQ:CHECK"
//       (anything else: fail("not a numbered request")), N microseconds after it came. With
//       --busy-file, F is created when a request comes, before the wait.
//   conversation_peer call DIR TOPIC COUNT CALLER [--timeout-ms T]
//       makes COUNT requests in turn, each "CALLER:SEQ:CHECK" (CHECK a hash of CALLER and SEQ), and
//       checks each reply is the answer to that very request (no other caller's, no earlier one).
//       Prints one line: ok=N responder_died=D timed_out=T no_responder=Z responder_error=E other=O wrong=W
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "shmbus/shmbus.h"

namespace {

std::string flag(int argc, char** argv, const char* name, const std::string& fallback = "") {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
    return fallback;
}

uint64_t check_of(const std::string& caller, uint64_t seq) {
    uint64_t h = 1469598103934665603ull ^ seq;
    for (char c : caller) h = (h ^ uint8_t(c)) * 1099511628211ull;
    return h;
}

shmbus::Result<shmbus::Client> connect(const std::string& dir, const char* name) {
    shmbus::ClientOptions o;
    o.dir = dir;
    o.name = name;
    o.connect_wait = std::chrono::seconds(30);
    return shmbus::Client::connect(o);
}

int respond(const std::string& dir, const std::string& topic, int argc, char** argv) {
    auto client = connect(dir, "responder");
    if (!client) return std::fprintf(stderr, "connect: %s\n", client.error().message.c_str()), 2;
    shmbus::ServeOptions o;
    o.group = flag(argc, argv, "--group", std::string(shmbus::kDefaultServiceGroup));
    auto responder = client->serve(topic, o);
    if (!responder) return std::fprintf(stderr, "serve: %s\n", responder.error().message.c_str()), 2;
    const auto hold = std::chrono::microseconds(std::atoll(flag(argc, argv, "--hold-us", "0").c_str()));
    const std::string busy_file = flag(argc, argv, "--busy-file");
    for (;;) {
        const auto r = responder->serve(
            [&](const shmbus::Message& request, shmbus::Answer& answer) {
                if (!busy_file.empty())
                    if (FILE* f = std::fopen(busy_file.c_str(), "w")) std::fclose(f);
                if (hold.count() != 0) std::this_thread::sleep_for(hold);
                const std::string text(request.text());
                if (std::count(text.begin(), text.end(), ':') != 2) {
                    (void)answer.fail("not a numbered request");
                    return;
                }
                (void)answer.reply("re:" + text);
            },
            std::chrono::seconds(1));
        if (r.status == shmbus::ReceiveStatus::corrupt || r.status == shmbus::ReceiveStatus::deleted) return 3;
    }
}

int call(const std::string& dir, const std::string& topic, uint64_t count, const std::string& caller, int argc, char** argv) {
    auto client = connect(dir, "caller");
    if (!client) return std::fprintf(stderr, "connect: %s\n", client.error().message.c_str()), 2;
    shmbus::RequestOptions o;
    o.timeout = std::chrono::milliseconds(std::atoll(flag(argc, argv, "--timeout-ms", "5000").c_str()));
    uint64_t ok = 0, died = 0, timed_out = 0, none = 0, failed = 0, other = 0, wrong = 0;
    for (uint64_t seq = 0; seq < count; ++seq) {
        const std::string request = caller + ":" + std::to_string(seq) + ":" + std::to_string(check_of(caller, seq));
        auto reply = client->request(topic, request, o);
        if (reply) {
            if (reply->text() == "re:" + request && reply->status == shmbus::Errc::ok) {
                ++ok;
            } else {
                if (wrong++ < 5) std::fprintf(stderr, "wrong reply to '%s': '%.*s'\n", request.c_str(), int(reply->text().size()), reply->text().data());
            }
            continue;
        }
        switch (reply.error().code) {
            case shmbus::Errc::responder_died: ++died; break;
            case shmbus::Errc::timed_out: ++timed_out; break;
            case shmbus::Errc::no_responder: ++none; break;
            case shmbus::Errc::responder_error: ++failed; break;
            default:
                if (other++ < 5) std::fprintf(stderr, "request %llu: %s\n", (unsigned long long)seq, reply.error().message.c_str());
        }
    }
    std::printf("ok=%llu responder_died=%llu timed_out=%llu no_responder=%llu responder_error=%llu other=%llu wrong=%llu\n",
                (unsigned long long)ok, (unsigned long long)died, (unsigned long long)timed_out, (unsigned long long)none,
                (unsigned long long)failed, (unsigned long long)other, (unsigned long long)wrong);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) return std::fprintf(stderr, "usage: conversation_peer respond|call DIR TOPIC ...\n"), 2;
    const std::string mode = argv[1], dir = argv[2], topic = argv[3];
    if (mode == "respond") return respond(dir, topic, argc, argv);
    if (mode == "call" && argc >= 6) return call(dir, topic, std::strtoull(argv[4], nullptr, 10), argv[5], argc, argv);
    return std::fprintf(stderr, "unknown mode '%s'\n", mode.c_str()), 2;
}
