// The responder's side of request/reply (shmbus/request.h): a member of a service group that
// answers each request it is given on the caller's inbox, and answers "responder died" for the
// requests of a member that died holding them.
#include <algorithm>
#include <array>
#include <functional>
#include <optional>
#include <unistd.h>

#include "request/conversation.h"
#include "shmbus/client.h"
#include "shmbus/names.h"

namespace shmbus {
namespace detail {

// The publishers of the inboxes a responder answered lately (opening one asks shmbusd, once per
// caller), and what became of its answers.
class ReplyOutlets {
public:
    using Open = std::function<Result<Publisher>(std::string_view inbox)>;
    explicit ReplyOutlets(Open open) noexcept : open_(std::move(open)), pid_(number_text(uint64_t(getpid()))) {}

    // Answers `request` on its caller's inbox: `payload` and `headers`, or a status (kStatusError,
    // kStatusResponderDied) with its words. A request that names no inbox is answered nowhere.
    PublishStatus send(const Message& request, std::span<const std::byte> payload, std::span<const Header> headers,
                       std::string_view status = {}, std::string_view words = {}) noexcept {
        const auto inbox = request.headers.get(kReplyTo);
        const auto correlation = request.headers.get(kCorrelationId);
        if (!inbox || !correlation || !is_inbox_name(*inbox)) return PublishStatus::ok;
        ++answered_;
        Publisher* out = outlet(*inbox);
        if (out == nullptr) {
            ++undeliverable_;
            return PublishStatus::deleted;
        }
        const NumberText request_id = number_text(request.id);
        std::array<Header, kMaxHeaders> all{};
        std::size_t n = 0;
        all[n++] = {kCorrelationId, *correlation};
        all[n++] = {kRequestId, request_id.view()};
        all[n++] = {kResponderPid, pid_.view()};
        if (!status.empty()) {
            all[n++] = {kReplyStatus, status};
            all[n++] = {kReplyError, words.substr(0, kMaxHeaderValue)};
        }
        for (const Header& h : headers.first(std::min(headers.size(), all.size() - n))) all[n++] = h;
        // An inbox never holds a responder back (overwrite): a publish returns at once.
        PublishStatus st = out->publish(payload, std::span<const Header>(all.data(), n), std::chrono::milliseconds(10));
        if (st == PublishStatus::too_large && status.empty()) {
            const std::string why = "the reply (" + std::to_string(payload.size()) + " bytes) is larger than the caller's inbox takes";
            return send(request, {}, {}, kStatusError, why);
        }
        if (st == PublishStatus::deleted) forget(*inbox);  // the caller is gone
        if (st != PublishStatus::ok) ++undeliverable_;
        return st;
    }
    [[nodiscard]] uint64_t answered() const noexcept { return answered_; }
    [[nodiscard]] uint64_t undeliverable() const noexcept { return undeliverable_; }

private:
    static constexpr std::size_t kMaxOutlets = 64;
    struct Outlet {
        std::string inbox;
        Publisher publisher;
        uint64_t used;
    };

    Publisher* outlet(std::string_view inbox) noexcept {
        for (auto& o : outlets_)
            if (o.inbox == inbox) {
                o.used = ++clock_;
                return &o.publisher;
            }
        auto p = open_(inbox);
        if (!p) return nullptr;
        if (outlets_.size() >= kMaxOutlets)  // the one used longest ago makes room
            outlets_.erase(std::min_element(outlets_.begin(), outlets_.end(),
                                            [](const Outlet& a, const Outlet& b) { return a.used < b.used; }));
        outlets_.push_back({std::string(inbox), std::move(*p), ++clock_});
        return &outlets_.back().publisher;
    }
    void forget(std::string_view inbox) noexcept {
        std::erase_if(outlets_, [&](const Outlet& o) { return o.inbox == inbox; });
    }

    Open open_;
    NumberText pid_;
    std::vector<Outlet> outlets_;
    uint64_t clock_ = 0;
    uint64_t answered_ = 0;
    uint64_t undeliverable_ = 0;
};

struct ResponderCore {
    std::string topic;
    Subscriber member;
    std::shared_ptr<ReplyOutlets> outlets;  // shared with the member's dead-letter redirect

    [[nodiscard]] PollResult handle(RequestHandler handler, std::optional<std::chrono::nanoseconds> timeout,
                                    std::size_t max) noexcept {
        auto each = [&](const Message& request) {
            Answer answer(*this, request);
            handler(request, answer);
        };
        return timeout ? member.receive(each, *timeout, max) : member.poll(each, max);
    }
};

}  // namespace detail

PublishStatus Answer::reply(std::span<const std::byte> payload, std::span<const Header> headers) noexcept {
    if (answered_) return PublishStatus::aborted;
    answered_ = true;
    for (const Header& h : headers)
        if (is_shmbus_header(h.key)) return PublishStatus::bad_headers;
    return core_.outlets->send(request_, payload, headers);
}

PublishStatus Answer::reply(std::string_view payload, std::span<const Header> headers) noexcept {
    return reply(std::as_bytes(std::span(payload.data(), payload.size())), headers);
}

PublishStatus Answer::fail(std::string_view why) noexcept {
    if (answered_) return PublishStatus::aborted;
    answered_ = true;
    return core_.outlets->send(request_, {}, {}, detail::kStatusError, why);
}

Result<Responder> Client::serve(std::string_view topic, ServeOptions options) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    SubscribeOptions so;
    so.group = options.group;
    so.group_settings.window = options.window;
    so.group_settings.visibility = options.visibility;
    so.group_settings.max_deliveries = 1;  // a request is acted on once at most: never handed on
    so.group_settings.service = true;
    so.wait = options.wait;
    so.spin_polls = options.spin_polls;
    so.create_config = options.create_config;
    so.from = StartFrom::latest;
    auto member = join_group(topic, so);
    if (!member) return member.error();
    auto outlets = std::make_shared<detail::ReplyOutlets>([channel = channel_](std::string_view inbox) {
        return open_publisher(channel, inbox, {});
    });
    // A request whose member died (or sat on it past the visibility timeout) comes here instead of
    // the dead-letter topic: its caller is told.
    detail::Conversation::core(*member).group->redirect_dead_letters([outlets](const detail::DeadLetterInfo& letter) {
        (void)outlets->send(letter.message, {}, {}, detail::kStatusResponderDied,
                            "the responder that took the request died or held it past the visibility timeout");
        return detail::DeadLetterOutcome::sent;
    });
    auto core = std::unique_ptr<detail::ResponderCore>(
        new (std::nothrow) detail::ResponderCore{std::string(topic), std::move(*member), std::move(outlets)});
    if (!core) return make_error(Errc::io_error, "out of memory");
    return Responder(std::move(core));
}

Responder::Responder(std::unique_ptr<detail::ResponderCore> core) noexcept : core_(std::move(core)) {}
Responder::Responder(Responder&&) noexcept = default;
Responder& Responder::operator=(Responder&&) noexcept = default;
Responder::~Responder() = default;

PollResult Responder::poll(RequestHandler handler, std::size_t max) noexcept { return core_->handle(handler, std::nullopt, max); }
PollResult Responder::serve(RequestHandler handler, std::chrono::nanoseconds timeout, std::size_t max) noexcept {
    return core_->handle(handler, timeout, max);
}
uint64_t Responder::answered() const noexcept { return core_->outlets->answered(); }
uint64_t Responder::undeliverable() const noexcept { return core_->outlets->undeliverable(); }
const std::string& Responder::topic() const noexcept { return core_->topic; }

}  // namespace shmbus
