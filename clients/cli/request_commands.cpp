// `request` and `serve`: calls that expect an answer, over topics (shmbus/request.h).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <thread>

#include "cli/command.h"
#include "cli/common.h"
#include "cli/work.h"

namespace cli {
namespace {

struct RequestArgs {
    std::string topic;
    std::optional<std::string> message;
    DurationOption timeout{{}, kDurationExamples};
    std::vector<std::string> header_texts;
    std::vector<shmbus::Header> headers;
    bool gather = false;
    uint32_t max_replies = 0;
    shmbus::RequestOptions options;
};

int check_request(RequestArgs& a) {
    int rc = 0;
    if (auto t = a.timeout.parse("timeout", rc)) a.options.timeout = *t;
    if (rc != 0) return rc;
    if (a.options.timeout <= std::chrono::nanoseconds::zero()) {
        std::cerr << "shmbus: request: --timeout must be above 0\n";
        return kExitUsage;
    }
    a.headers = parse_headers(a.header_texts, rc);
    if (rc != 0) return rc;
    for (const auto& h : a.headers)
        if (shmbus::is_shmbus_header(h.key)) {
            std::cerr << "shmbus: request: header '" << h.key << "': the shmbus- prefix is the bus's own\n";
            return kExitUsage;
        }
    if (a.max_replies != 0 && !a.gather) {
        std::cerr << "shmbus: request: --max-replies needs --gather\n";
        return kExitUsage;
    }
    a.options.headers = a.headers;
    return check_topic_name(a.topic);
}

// The payload, then a newline unless it ends with one: one reply per line for text.
void print_reply(const shmbus::Reply& r) {
    std::fwrite(r.payload.data(), 1, r.payload.size(), stdout);
    if (r.payload.empty() || r.payload.back() != std::byte{'\n'}) std::fputc('\n', stdout);
}

std::string read_stdin() {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

int request(shmbus::Client& client, RequestArgs& a) {
    const std::string payload = a.message ? *a.message : read_stdin();
    if (!a.gather) {
        auto reply = client.request(a.topic, payload, a.options);
        if (!reply) return fail(reply.error());
        print_reply(*reply);
        return std::fflush(stdout) == 0 ? 0 : kExitError;
    }
    shmbus::GatherOptions g;
    g.request = a.options;
    g.max_replies = a.max_replies;
    auto replies = client.gather(a.topic, payload, g);
    if (!replies) return fail(replies.error());
    int rc = 0;
    for (const auto& r : *replies) {
        if (r.status != shmbus::Errc::ok) {
            std::cerr << "shmbus: responder pid " << r.responder_pid << ": "
                      << (r.status == shmbus::Errc::responder_died ? "died before replying" : "failed: " + r.error) << "\n";
            rc = kExitError;
            continue;
        }
        print_reply(r);
    }
    return std::fflush(stdout) == 0 ? rc : kExitError;
}

struct ServeArgs {
    std::string topic, exec, group{shmbus::kDefaultServiceGroup};
    std::optional<uint64_t> count;
    DurationOption visibility{{}, kDurationExamples};
    shmbus::ServeOptions options;
};

int check_serve(ServeArgs& a) {
    int rc = 0;
    if (auto v = a.visibility.parse("visibility", rc)) a.options.visibility = *v;
    if (rc != 0) return rc;
    if (a.exec.empty()) {
        std::cerr << "shmbus: serve: --exec CMD is required (each request runs it: the request on its standard input, "
                     "the reply from its standard output)\n";
        return kExitUsage;
    }
    if (const int bad = check_subscription_name(a.group); bad != 0) return bad;
    a.options.group = a.group;
    return check_topic_name(a.topic);
}

// The whole of a memory file.
std::string contents(int fd) {
    std::string text;
    char buf[65536];
    ssize_t n;
    off_t at = 0;
    while ((n = pread(fd, buf, sizeof buf, at)) > 0) {
        text.append(buf, std::size_t(n));
        at += n;
    }
    return text;
}

// Runs the command for one request and answers with what it printed (exit 0) or why it failed. A
// command still running when the request's deadline passes is killed: nobody waits for it.
void answer_with_command(const std::string& command, const std::string& topic, const shmbus::Message& request,
                         shmbus::Answer& answer) {
    const int out = memfd_create("shmbus-serve-output", MFD_CLOEXEC);
    const int err = memfd_create("shmbus-serve-error", MFD_CLOEXEC);
    const pid_t pid = out < 0 || err < 0 ? -1 : start_job(command, topic, request, err, out);
    if (pid < 0) {
        const std::string why = std::string("cannot start the command: ") + std::strerror(errno);
        std::cerr << "shmbus: serve: " << why << "\n";
        (void)answer.fail(why);
        if (out >= 0) close(out);
        if (err >= 0) close(err);
        return;
    }
    int status = 0;
    bool killed = false;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        const bool late = request.expires_at_ns != 0 && uint64_t(std::chrono::nanoseconds(now).count()) > request.expires_at_ns;
        if (!killed && (late || g_stop.load(std::memory_order_relaxed))) {
            kill(-pid, SIGKILL);
            killed = true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const std::string errors = pass_on_error_output(err);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        const std::string reply = contents(out);
        if (const auto st = answer.reply(reply); st != shmbus::PublishStatus::ok)
            std::cerr << "shmbus: serve: the reply to request " << request.id << " was not delivered (" << shmbus::to_string(st) << ")\n";
    } else if (!killed) {
        (void)answer.fail(exit_text(status) + (errors.empty() ? "" : ": " + errors));
    }
    close(out);
}

int serve(shmbus::Client& client, ServeArgs& a) {
    auto responder = client.serve(a.topic, a.options);
    if (!responder) return fail(responder.error());
    install_stop_handlers();
    uint64_t handled = 0;
    while (!g_stop.load(std::memory_order_relaxed) && (!a.count || handled < *a.count)) {
        const std::size_t room = a.count ? std::size_t(std::min<uint64_t>(*a.count - handled, 64)) : 64;
        const auto r = responder->serve(
            [&](const shmbus::Message& request, shmbus::Answer& answer) { answer_with_command(a.exec, a.topic, request, answer); },
            std::chrono::milliseconds(200), room);
        if (r.status == shmbus::ReceiveStatus::corrupt) {
            std::cerr << "shmbus: serve: topic '" << a.topic << "' failed a check; stopping\n";
            return kExitError;
        }
        if (r.status == shmbus::ReceiveStatus::deleted) {
            std::cerr << "shmbus: serve: topic '" << a.topic << "' was deleted\n";
            return kExitError;
        }
        handled += r.count;
    }
    return 0;
}

}  // namespace

void add_request_commands(CLI::App& app, Commands& out) {
    auto r = std::make_shared<RequestArgs>();
    auto* req = app.add_subcommand("request", "send MESSAGE (or stdin) to the responders of TOPIC and print the reply");
    req->add_option("TOPIC", r->topic, "topic")->required();
    req->add_option("MESSAGE", r->message, "the request (default: all of stdin)");
    req->add_option("--timeout", r->timeout.text, "wait this long for the reply (default 5s)");
    req->add_option("--header", r->header_texts, "KEY=VALUE: a header the request carries (repeatable)")->allow_extra_args(false);
    req->add_flag("--gather", r->gather, "ask every service group of the topic and print each reply, one per line, "
                                         "until one from each or the timeout");
    req->add_option("--max-replies", r->max_replies, "N: with --gather, stop after N replies")->check(CLI::PositiveNumber);
    out.push_back({req, [r] { return check_request(*r); }, [r](shmbus::Client& c) { return request(c, *r); }, {}});

    auto s = std::make_shared<ServeArgs>();
    auto* srv = app.add_subcommand("serve", "answer the requests of TOPIC: each runs CMD, the request on its standard input, "
                                            "its standard output the reply (runs until SIGTERM)");
    srv->add_option("TOPIC", s->topic, "topic")->required();
    srv->add_option("--exec", s->exec, "CMD: run with sh -c per request; exit 0 replies with its output, anything else "
                                       "answers the caller with an error (exit status and standard error)");
    srv->add_option("--group", s->group, "NAME: the service group to join (default responders); each group gets every "
                                         "request, each request goes to one member of a group");
    srv->add_option("--count", s->count, "N: stop after N requests");
    srv->add_option("--visibility", s->visibility.text, "a request unanswered this long is answered 'responder died' "
                                                        "(default 30s)");
    out.push_back({srv, [s] { return check_serve(*s); }, [s](shmbus::Client& c) { return serve(c, *s); }, {}});
}

}  // namespace cli
