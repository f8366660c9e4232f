// Request/reply: calls that expect an answer, over topics (docs/requests.md).
//
//   // A service: responders of topic "quote" form a group; each request goes to one of them.
//   auto responder = client.serve("quote");
//   responder->serve([](const shmbus::Message& request, shmbus::Answer& answer) {
//       answer.reply(price_of(request.text()));
//   }, std::chrono::seconds(1));
//
//   // A caller: the reply, or an error that says why there is none.
//   auto reply = client.request("quote", "EURUSD", {.timeout = std::chrono::milliseconds(200)});
//   if (reply) use(reply->text());
//   else if (reply.error().code == shmbus::Errc::no_responder) ...
//
// A request is a message of the topic carrying the caller's inbox and a correlation number in
// headers (kReplyTo, kCorrelationId) and its deadline as its time to live, so a request nobody
// took in time expires unseen. Replies travel on the caller's inbox: a small overwrite topic that
// shmbusd makes for the caller's connection, serves to it alone and removes when it closes
// (shmbus/names.h, is_inbox_name). Nothing is made per call.
//
// The outcomes: a reply; `no_responder` at once when no responder serves the topic; `timed_out`
// when the deadline passes (a reply that comes later is dropped and counted as late);
// `responder_died` when the responder that took the request dies (or every responder goes away)
// before replying — the request is not given to another responder, since it may have been acted on;
// `responder_error` when the responder answered with fail(). Counted per topic (TopicStats).
//
// Threads: request() and gather() may be called by any number of threads of one Client at once;
// each call uses an inbox no other call uses meanwhile (a thread's first call makes one). A
// Responder is used by one thread at a time, as a Subscriber.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shmbus/function_ref.h"
#include "shmbus/headers.h"
#include "shmbus/publisher.h"
#include "shmbus/result.h"
#include "shmbus/subscriber.h"

namespace shmbus {

// The headers that carry a conversation (reserved: the shmbus- prefix).
inline constexpr std::string_view kReplyTo = "shmbus-reply-to";            // the caller's inbox
inline constexpr std::string_view kCorrelationId = "shmbus-correlation-id";  // which of its calls
inline constexpr std::string_view kReplyStatus = "shmbus-status";           // absent: ok; "error", "responder-died"
inline constexpr std::string_view kReplyError = "shmbus-error";             // the status's words
inline constexpr std::string_view kResponderPid = "shmbus-responder";       // the replying process

// The consumer group responders join unless they name another (ServeOptions::group).
inline constexpr std::string_view kDefaultServiceGroup = "responders";

struct RequestOptions {
    std::chrono::nanoseconds timeout = std::chrono::seconds(5);
    std::span<const Header> headers{};  // the request's own headers, besides the conversation's
    // How the caller waits for its reply: busy_spin for the shortest round trip (one core spins),
    // spin_then_sleep to sleep on a futex after `spin_polls` empty polls.
    WaitStrategy wait = WaitStrategy::spin_then_sleep;
    uint32_t spin_polls = 2000;
};

struct GatherOptions {
    RequestOptions request{};
    // Stop once this many replies came; 0: one from each service group that had a responder
    // when the request was made (each group gives a request to one of its members).
    uint32_t max_replies = 0;
};

// One answer, copied out of the inbox.
struct Reply {
    Errc status = Errc::ok;  // gather(): ok, responder_error or responder_died, per reply
    std::string error;       // the responder's (or shmbus's) words when status is not ok
    std::vector<std::byte> payload;
    std::vector<std::pair<std::string, std::string>> headers;  // the responder's own (not shmbus-*)
    int32_t responder_pid = 0;
    uint64_t request_id = 0;  // the request's message id in its topic
    [[nodiscard]] std::string_view text() const noexcept {
        return {reinterpret_cast<const char*>(payload.data()), payload.size()};
    }
};

struct ServeOptions {
    // Responders of one group share the requests (each to one of them). Responders of different
    // groups each get every request: a caller that gather()s hears one reply per group.
    std::string group{kDefaultServiceGroup};
    uint32_t window = 64;  // requests one responder may hold unanswered
    // A request held longer than this without a reply is answered "responder died" (it is stuck).
    std::chrono::nanoseconds visibility = std::chrono::seconds(30);
    WaitStrategy wait = WaitStrategy::spin_then_sleep;
    uint32_t spin_polls = 2000;
    TopicConfig create_config{};  // used only if the topic does not exist yet
};

namespace detail {
struct ResponderCore;
}

// How a handler answers a request: reply() or fail(), once; neither sends no reply (the caller
// times out, or, gathering, counts one reply fewer).
class Answer {
public:
    PublishStatus reply(std::span<const std::byte> payload, std::span<const Header> headers = {}) noexcept;
    PublishStatus reply(std::string_view payload, std::span<const Header> headers = {}) noexcept;
    // The caller's request() returns responder_error with `why`.
    PublishStatus fail(std::string_view why) noexcept;
    [[nodiscard]] bool answered() const noexcept { return answered_; }

private:
    friend struct detail::ResponderCore;
    Answer(detail::ResponderCore& core, const Message& request) noexcept : core_(core), request_(request) {}
    detail::ResponderCore& core_;
    const Message& request_;
    bool answered_ = false;
};

using RequestHandler = FunctionRef<void(const Message& request, Answer& answer)>;

class Responder {
public:
    Responder(Responder&&) noexcept;
    Responder& operator=(Responder&&) noexcept;
    ~Responder();  // leaves the group: requests it holds unanswered are answered "responder died"

    // Handles up to `max` waiting requests without waiting.
    [[nodiscard]] PollResult poll(RequestHandler handler, std::size_t max = 64) noexcept;
    // Like poll, but waits up to `timeout` for the first request.
    [[nodiscard]] PollResult serve(RequestHandler handler, std::chrono::nanoseconds timeout, std::size_t max = 64) noexcept;

    [[nodiscard]] uint64_t answered() const noexcept;       // replies (and failures) sent
    [[nodiscard]] uint64_t undeliverable() const noexcept;  // answers whose caller had gone (its inbox removed)
    [[nodiscard]] const std::string& topic() const noexcept;

private:
    friend class Client;
    explicit Responder(std::unique_ptr<detail::ResponderCore> core) noexcept;
    std::unique_ptr<detail::ResponderCore> core_;
};

}  // namespace shmbus
