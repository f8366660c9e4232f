// The caller's side of request/reply (shmbus/request.h): an inbox per concurrent call, a request
// published with the inbox and a correlation number, and the wait for its reply.
#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "control/control.h"
#include "request/conversation.h"
#include "shmbus/client.h"
#include "shmbus/names.h"

namespace shmbus {

using detail::Conversation;
using detail::Inbox;

namespace {

// How often a waiting caller looks again at who serves the topic, and how long a count of
// responders is trusted before a request: a caller learns within this that every responder left.
constexpr uint64_t kResponderCheckNs = 1'000'000;

Result<std::string> random_inbox_name() noexcept {
    std::array<unsigned char, 16> bytes{};
    std::size_t got = 0;
    while (got < bytes.size()) {
        const ssize_t n = getrandom(bytes.data() + got, bytes.size() - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return make_error(Errc::io_error, std::string("getrandom: ") + std::strerror(errno));
        }
        got += std::size_t(n);
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string name(kInboxPrefix);
    for (unsigned char b : bytes) {
        name.push_back(kHex[b >> 4]);
        name.push_back(kHex[b & 15]);
    }
    return name;
}

layout::ProducerRegionHead& counters(Inbox::Service& s) noexcept {
    return Conversation::core(s.publisher).seg.producers();
}
// relaxed: statistics, read racily by `topic info`.
void count(std::atomic<uint64_t>& counter, uint64_t n = 1) noexcept { counter.fetch_add(n, std::memory_order_relaxed); }

Error publish_error(PublishStatus st, std::string_view topic) {
    const std::string t(topic);
    switch (st) {
        case PublishStatus::too_large: return make_error(Errc::message_too_large, "the request is larger than topic '" + t + "' takes");
        case PublishStatus::would_block:
        case PublishStatus::timed_out: return make_error(Errc::timed_out, "topic '" + t + "' is full: the request could not be published");
        case PublishStatus::deleted: return make_error(Errc::topic_not_found, "topic '" + t + "' was deleted");
        case PublishStatus::bad_headers: return make_error(Errc::invalid_argument, "a request header breaks the header rules");
        case PublishStatus::corrupt: return make_error(Errc::corrupt_segment, "topic '" + t + "' failed a check");
        default: return make_error(Errc::io_error, std::string("the request was not published: ") + to_string(st));
    }
}

// A reply as the caller keeps it: copied out of the inbox, the conversation's headers read.
Reply copy_reply(const Message& m) {
    Reply r;
    r.payload.assign(m.payload.begin(), m.payload.end());
    for (const Header& h : m.headers) {
        if (h.key == kReplyStatus) {
            r.status = h.value == detail::kStatusResponderDied ? Errc::responder_died : Errc::responder_error;
        } else if (h.key == kReplyError) {
            r.error.assign(h.value);
        } else if (h.key == kResponderPid) {
            r.responder_pid = int32_t(detail::parse_number(h.value).value_or(0));
        } else if (h.key == detail::kRequestId) {
            r.request_id = detail::parse_number(h.value).value_or(0);
        } else if (!is_shmbus_header(h.key)) {
            r.headers.emplace_back(std::string(h.key), std::string(h.value));
        }
    }
    return r;
}

// Lets the publisher of services[i] go, with the timeouts remembered for it.
void forget_service(Inbox& inbox, std::size_t i) noexcept {
    inbox.services.erase(inbox.services.begin() + std::ptrdiff_t(i));
    std::erase_if(inbox.timed_out, [&](const Inbox::TimedOut& t) { return t.service == i; });
    for (auto& t : inbox.timed_out)
        if (t.service > i) --t.service;
}

Inbox::Service* find_service(Inbox& inbox, std::string_view topic) noexcept {
    for (auto& s : inbox.services)
        if (s.topic == topic) return &s;
    return nullptr;
}

}  // namespace

// Here, where a Client's inboxes are known: the control folder makes Clients, this one calls.
Client::Client(std::shared_ptr<detail::ControlChannel> channel) noexcept
    : channel_(std::move(channel)), conversations_(std::make_shared<detail::Conversations>()) {}

Result<std::unique_ptr<Inbox>> Client::open_inbox(const RequestOptions& options) noexcept {
    auto name = random_inbox_name();
    if (!name) return name.error();
    SubscribeOptions so;
    so.from = StartFrom::earliest;  // it is new: everything in it is for us
    so.wait = WaitStrategy::spin_then_sleep;
    so.spin_polls = options.spin_polls;
    so.in_place_from = 0;  // an overwrite ring: every reply is copied, then checked
    auto reader = subscribe(*name, so);
    if (!reader) return make_error(reader.error().code, "cannot open a reply inbox: " + reader.error().message);
    auto inbox = std::unique_ptr<Inbox>(new (std::nothrow) Inbox{*name, std::move(*reader), reconnects(), 1, {}, {}});
    if (!inbox) return make_error(Errc::io_error, "out of memory");
    return inbox;
}

Result<Reply> Client::request(std::string_view topic, std::span<const std::byte> payload, const RequestOptions& options) noexcept {
    auto replies = call(topic, payload, options, 1, false);
    if (!replies) return replies.error();
    return std::move(replies->front());
}

Result<Reply> Client::request(std::string_view topic, std::string_view payload, const RequestOptions& options) noexcept {
    return request(topic, std::as_bytes(std::span(payload.data(), payload.size())), options);
}

Result<std::vector<Reply>> Client::gather(std::string_view topic, std::span<const std::byte> payload,
                                          const GatherOptions& options) noexcept {
    return call(topic, payload, options.request, options.max_replies, true);
}

Result<std::vector<Reply>> Client::gather(std::string_view topic, std::string_view payload, const GatherOptions& options) noexcept {
    return gather(topic, std::as_bytes(std::span(payload.data(), payload.size())), options);
}

Result<std::vector<Reply>> Client::call(std::string_view topic, std::span<const std::byte> payload, const RequestOptions& options,
                                        uint32_t max_replies, bool gather) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    if (options.timeout <= std::chrono::nanoseconds::zero()) return make_error(Errc::invalid_argument, "a request needs a timeout above 0");
    if (options.headers.size() > kMaxHeaders - 4)
        return make_error(Errc::invalid_argument, "a request carries at most " + std::to_string(kMaxHeaders - 4) + " headers of its own");
    for (const Header& h : options.headers)
        if (is_shmbus_header(h.key))
            return make_error(Errc::invalid_argument, "header '" + std::string(h.key) + "': the shmbus- prefix is the bus's own");
    // An inbox no other call uses now; one made before a reconnect is gone (a restarted shmbusd removed it).
    std::unique_ptr<Inbox> inbox = conversations_->take();
    while (inbox && inbox->reconnects != reconnects()) inbox = conversations_->take();
    if (!inbox) {
        auto fresh = open_inbox(options);
        if (!fresh) return fresh.error();
        inbox = std::move(*fresh);
    }
    struct GiveBack {
        detail::Conversations& pool;
        std::unique_ptr<Inbox>& inbox;
        ~GiveBack() {
            if (inbox) pool.give_back(std::move(inbox));
        }
    } give_back{*conversations_, inbox};

    Inbox::Service* service = find_service(*inbox, topic);
    if (service == nullptr) {
        if (inbox->services.size() >= detail::kMaxServicesPerInbox) forget_service(*inbox, 0);  // the oldest goes
        auto publisher = open_publisher(channel_, topic, {});
        if (!publisher) return publisher.error();
        inbox->services.push_back({std::string(topic), std::move(*publisher), 0, {}});
        service = &inbox->services.back();
    }
    const std::size_t service_index = std::size_t(service - inbox->services.data());
    const auto& seg = Conversation::core(service->publisher).seg;
    uint64_t now = detail::monotonic_ns();
    if (service->responders.members == 0 || now - service->checked_ns >= kResponderCheckNs) {
        service->responders = detail::live_responders(seg);
        service->checked_ns = now;
    }
    if (service->responders.members == 0) {
        count(counters(*service).no_responder);
        return make_error(Errc::no_responder, "no responder serves topic '" + std::string(topic) + "'");
    }
    const uint32_t wanted = max_replies != 0 ? max_replies : std::max<uint32_t>(1, service->responders.groups);

    const uint64_t correlation = inbox->next_correlation++;
    const detail::NumberText correlation_text = detail::number_text(correlation);
    std::array<Header, kMaxHeaders> headers{};
    headers[0] = {kReplyTo, inbox->name};
    headers[1] = {kCorrelationId, correlation_text.view()};
    std::copy(options.headers.begin(), options.headers.end(), headers.begin() + 2);
    MessageOptions message;
    message.headers = std::span<const Header>(headers.data(), 2 + options.headers.size());
    message.ttl = options.timeout;  // the deadline travels as the request's time to live
    const PublishStatus published = service->publisher.publish(payload, message, options.timeout);
    if (published == PublishStatus::deleted) forget_service(*inbox, service_index);  // made again, it is opened again
    if (published != PublishStatus::ok) return publish_error(published, topic);
    count(counters(*service).requests);

    std::vector<Reply> replies;
    Error failure{};
    auto on_reply = [&](const Message& m) {
        const auto said = m.headers.get(kCorrelationId);
        const auto number = said ? detail::parse_number(*said) : std::nullopt;
        if (number == correlation) {
            Reply r = copy_reply(m);
            if (!gather && r.status != Errc::ok) {
                failure = make_error(r.status, r.status == Errc::responder_died
                                                   ? "the responder of topic '" + std::string(topic) + "' died before replying"
                                                   : "the responder failed: " + r.error);
                return;
            }
            replies.push_back(std::move(r));
            return;
        }
        // A reply to an earlier call that timed out: dropped, and counted against its topic.
        auto& late = inbox->timed_out;
        for (auto it = late.begin(); it != late.end(); ++it)
            if (number == it->correlation) {
                if (it->service < inbox->services.size()) count(counters(inbox->services[it->service]).late_replies);
                late.erase(it);
                return;
            }
    };
    const uint64_t deadline = now + uint64_t(options.timeout.count());
    uint64_t next_check = now + kResponderCheckNs;
    auto done = [&] { return failure.code != Errc::ok || replies.size() >= wanted; };
    while (!done()) {
        now = detail::monotonic_ns();
        if (now >= deadline) break;
        if (options.wait == WaitStrategy::busy_spin) {
            for (int spins = 0; spins < 256 && !done(); ++spins)
                if (inbox->reader.poll(on_reply, 16).status == ReceiveStatus::corrupt) break;
        } else {
            const uint64_t slice = std::min(deadline, next_check) - now;
            (void)inbox->reader.receive(on_reply, std::chrono::nanoseconds(slice), 16);
        }
        if (done()) break;
        now = detail::monotonic_ns();
        if (now >= next_check) {
            next_check = now + kResponderCheckNs;
            service->responders = detail::live_responders(seg);
            service->checked_ns = now;
            if (service->responders.members == 0) {
                // Every responder went away with the request unanswered: nobody is left to say so.
                failure = make_error(Errc::responder_died, "every responder of topic '" + std::string(topic) +
                                                               "' went away before replying");
                break;
            }
        }
    }
    if (failure.code == Errc::responder_died) count(counters(*service).responder_died);
    if (const std::size_t came = replies.size() + (failure.code == Errc::responder_error ? 1 : 0); came != 0)
        count(counters(*service).replies, came);
    if (failure.code != Errc::ok && !(gather && !replies.empty())) return failure;
    if (replies.empty() || (!gather && replies.size() < wanted)) {
        count(counters(*service).timed_out);
        auto& late = inbox->timed_out;
        if (late.size() >= detail::kRememberedTimeouts) late.erase(late.begin());
        late.push_back({correlation, service_index});
        return make_error(Errc::timed_out, "no reply from topic '" + std::string(topic) + "' within " +
                                               short_duration(uint64_t(options.timeout.count())));
    }
    return replies;
}

}  // namespace shmbus
