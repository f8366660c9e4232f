// Subscriptions by pattern: a subscription per matching topic, found by listing the topics now
// and then, all waited on through one WaitSet.
#include "shmbus/pattern.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <thread>

#include <sys/inotify.h>
#include <unistd.h>

#include "control/control.h"
#include "core/bus_files.h"
#include "core/futex.h"
#include "shmbus/client.h"
#include "shmbus/names.h"
#include "shmbus/wait_set.h"

namespace shmbus {

namespace {

// The tokens of a dotted name or pattern.
std::vector<std::string_view> tokens_of(std::string_view text) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    for (;;) {
        const std::size_t dot = text.find('.', start);
        out.push_back(text.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
        if (dot == std::string_view::npos) return out;
        start = dot + 1;
    }
}

}  // namespace

bool is_topic_pattern(std::string_view text) noexcept {
    return text.find('*') != std::string_view::npos || text.find('>') != std::string_view::npos;
}

Status validate_topic_pattern(std::string_view pattern) noexcept {
    auto bad = [&](const std::string& why) {
        return make_error(Errc::invalid_name, "invalid topic pattern '" + std::string(pattern) + "': " + why);
    };
    try {
        if (!is_topic_pattern(pattern)) return bad("it has no '*' or '>' (a topic name is not a pattern)");
        if (pattern.size() > 255) return bad("longer than 255 characters");
        const auto tokens = tokens_of(pattern);
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            const std::string_view t = tokens[i];
            if (t.empty()) return bad("an empty token (two dots, or a dot at an end)");
            if (t == "*") continue;
            if (t == ">") {
                if (i + 1 != tokens.size()) return bad("'>' may only be the last token");
                continue;
            }
            if (is_topic_pattern(t)) return bad("'*' and '>' stand alone as a whole token");
            // A plain token: the characters of a topic name (checked as one, starting with a letter or digit).
            if (auto st = validate_topic_name(t); !st) return bad("token '" + std::string(t) + "': " + st.error().message);
        }
        return ok_status();
    } catch (...) {
        return make_error(Errc::io_error, "out of memory");
    }
}

bool topic_matches(std::string_view pattern, std::string_view topic) noexcept {
    try {
        const auto p = tokens_of(pattern), t = tokens_of(topic);
        for (std::size_t i = 0; i < p.size(); ++i) {
            if (p[i] == ">") return t.size() > i;  // one or more tokens left
            if (i >= t.size()) return false;
            if (p[i] != "*" && p[i] != t[i]) return false;
        }
        return p.size() == t.size();
    } catch (...) {
        return false;
    }
}

namespace detail {

struct PatternCore {
    Client client;
    std::string pattern;
    SubscribeOptions options;
    // One subscription per covered topic; a Subscriber never moves (the wait set refers to it).
    std::map<std::string, std::unique_ptr<Subscriber>, std::less<>> topics;
    std::set<std::string, std::less<>> refused;
    WaitSet set;
    uint64_t next_refresh_ns = 0;
    std::size_t next_first = 0;  // the topic a poll starts with, in turn, so none starves

    PatternCore(Client c, std::string p, SubscribeOptions o) : client(std::move(c)), pattern(std::move(p)), options(std::move(o)) {}
    PatternCore(const PatternCore&) = delete;
    PatternCore& operator=(const PatternCore&) = delete;
    // The end of the subscription, said to shmbusd (which also forgets it when the connection closes).
    ~PatternCore() {
        if (shown_at_reconnects) (void)client.watch_pattern(pattern, true);
        if (notices >= 0) close(notices);
    }

    // The kernel's notice of new objects in /dev/shm (-1: none; the topics are listed every
    // kPatternRefresh instead), and the names of this bus's objects there.
    int notices = -1;
    std::string bus_prefix;
    uint64_t next_notice_check_ns = 0;

    void watch_for_new_topics() {
        notices = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (notices >= 0 && inotify_add_watch(notices, "/dev/shm", IN_CREATE | IN_MOVED_TO) < 0) {
            close(notices);
            notices = -1;
        }
        bus_prefix = shm_prefix(client.bus_id());
    }
    // Whether an object of this bus that may be a new topic (not a reply inbox) appeared since the
    // last look. Reads every notice waiting.
    bool new_topic_noticed() {
        bool seen = false;
        alignas(inotify_event) char buf[4096];
        for (;;) {
            const ssize_t n = read(notices, buf, sizeof buf);
            if (n <= 0) return seen;
            for (ssize_t at = 0; at < n;) {
                const auto* e = reinterpret_cast<const inotify_event*>(buf + at);
                const std::string_view name = e->len != 0 ? std::string_view(e->name) : std::string_view();
                if (e->mask & IN_Q_OVERFLOW) seen = true;  // notices were lost: look anyway
                if (name.substr(0, bus_prefix.size()) == bus_prefix && name.find(kInboxPrefix) == std::string_view::npos) seen = true;
                at += ssize_t(sizeof(inotify_event) + e->len);
            }
        }
    }
    // When to look for new topics next: now, if the kernel said a topic may have been made.
    void check_notices(uint64_t now) {
        if (notices < 0 || now < next_notice_check_ns) return;
        next_notice_check_ns = now + uint64_t(std::chrono::nanoseconds(kPatternNoticeCheck).count());
        if (new_topic_noticed()) next_refresh_ns = now;
    }
    // The longest a wait may sleep before it looks for notices or new topics again.
    [[nodiscard]] uint64_t next_look_ns() const noexcept {
        return notices < 0 ? next_refresh_ns : std::min(next_refresh_ns, next_notice_check_ns);
    }

    // Shown by shmbusd (topic info, bus-top, metrics) as of this many reconnects of the Client: a
    // restarted shmbusd knows nothing of it, so it is said again.
    std::optional<uint64_t> shown_at_reconnects;
    void show() {
        const uint64_t now = client.reconnects();
        if (shown_at_reconnects == now) return;
        if (client.watch_pattern(pattern, false)) shown_at_reconnects = now;
    }

    // A topic found after the first look was made after the subscription: all of it is new to
    // it, so it is read from its first message (from a time, still from that time).
    bool first_look_done = false;

    SubscribeOptions options_for_new_topic() const {
        SubscribeOptions o = options;
        if (first_look_done && o.from != StartFrom::time) o.from = StartFrom::earliest;
        return o;
    }

    Result<std::size_t> refresh() {
        const auto period = notices >= 0 ? std::chrono::nanoseconds(kPatternRelist) : std::chrono::nanoseconds(kPatternRefresh);
        next_refresh_ns = monotonic_ns() + uint64_t(period.count());
        if (notices >= 0) (void)new_topic_noticed();  // what came before this look is in it
        auto names = client.list_topics();
        if (!names) return names.error();
        show();
        std::size_t added = 0;
        for (const std::string& name : *names) {
            if (topics.count(name) != 0 || refused.count(name) != 0 || !topic_matches(pattern, name)) continue;
            auto sub = client.subscribe(name, options_for_new_topic());
            if (!sub) {
                // Not readable by the caller: left out, and said (refused()). Gone meanwhile: nothing.
                if (sub.error().code == Errc::permission_denied) refused.insert(name);
                continue;
            }
            auto owned = std::make_unique<Subscriber>(std::move(sub.value()));
            if (!set.add(*owned)) continue;
            topics.emplace(name, std::move(owned));
            ++added;
        }
        first_look_done = true;
        return added;
    }

    void drop(const std::string& name) {
        auto it = topics.find(name);
        if (it == topics.end()) return;
        set.remove(*it->second);
        topics.erase(it);
    }

    PollResult poll(Handler handler, std::size_t max) {
        const uint64_t now = monotonic_ns();
        check_notices(now);
        if (now >= next_refresh_ns) (void)refresh();
        PollResult total{ReceiveStatus::empty, 0};
        if (topics.empty()) return total;
        std::vector<std::string> gone;
        auto it = std::next(topics.begin(), std::ptrdiff_t(next_first % topics.size()));
        for (std::size_t n = 0; n < topics.size() && total.count < max; ++n, ++it) {
            if (it == topics.end()) it = topics.begin();
            const std::string& name = it->first;
            const PollResult r = it->second->poll(
                [&](const Message& m) {
                    Message named = m;  // the same message, saying its topic
                    named.topic = name;
                    handler(named);
                },
                max - total.count);
            if (r.status == ReceiveStatus::deleted) gone.push_back(name);
            if (r.status == ReceiveStatus::corrupt) total.status = ReceiveStatus::corrupt;
            total.count += r.count;
        }
        next_first = (next_first + 1) % std::max<std::size_t>(topics.size(), 1);
        for (const std::string& name : gone) drop(name);
        if (total.count > 0 && total.status != ReceiveStatus::corrupt) total.status = ReceiveStatus::ok;
        return total;
    }

    PollResult receive(Handler handler, std::chrono::nanoseconds timeout, std::size_t max) {
        const uint64_t deadline = monotonic_ns() + uint64_t(std::max<int64_t>(0, timeout.count()));
        for (;;) {
            const PollResult r = poll(handler, max);
            const uint64_t now = monotonic_ns();
            if (r.count > 0 || r.status == ReceiveStatus::corrupt || now >= deadline) return r;
            // Asleep on every covered topic at once, and up to the next look for new topics.
            const uint64_t until = std::min(deadline, next_look_ns());
            const auto wait = std::chrono::nanoseconds(until > now ? until - now : 0);
            if (topics.empty()) {
                std::this_thread::sleep_for(wait);
                continue;
            }
            (void)set.wait(wait);
        }
    }
};

}  // namespace detail

PatternSubscriber::PatternSubscriber(std::unique_ptr<detail::PatternCore> core) noexcept : core_(std::move(core)) {}
PatternSubscriber::PatternSubscriber(PatternSubscriber&&) noexcept = default;
PatternSubscriber& PatternSubscriber::operator=(PatternSubscriber&&) noexcept = default;
PatternSubscriber::~PatternSubscriber() = default;

PollResult PatternSubscriber::poll(Handler handler, std::size_t max) noexcept {
    try {
        return core_->poll(handler, max);
    } catch (...) {  // out of memory: nothing delivered this time
        return {ReceiveStatus::empty, 0};
    }
}

PollResult PatternSubscriber::receive(Handler handler, std::chrono::nanoseconds timeout, std::size_t max) noexcept {
    try {
        return core_->receive(handler, timeout, max);
    } catch (...) {
        return {ReceiveStatus::empty, 0};
    }
}

AckStatus PatternSubscriber::ack(const Message& message) noexcept {
    const auto it = core_->topics.find(message.topic);
    return it == core_->topics.end() ? AckStatus::not_delivered : it->second->ack(message);
}

void PatternSubscriber::ack_delivered() noexcept {
    for (auto& [name, sub] : core_->topics) sub->ack_delivered();
}

Result<std::size_t> PatternSubscriber::refresh() noexcept {
    try {
        return core_->refresh();
    } catch (...) {
        return make_error(Errc::io_error, "out of memory");
    }
}

const std::string& PatternSubscriber::pattern() const noexcept { return core_->pattern; }

std::vector<std::string> PatternSubscriber::topics() const {
    std::vector<std::string> out;
    for (const auto& [name, sub] : core_->topics) out.push_back(name);
    return out;
}

std::vector<std::string> PatternSubscriber::refused() const { return {core_->refused.begin(), core_->refused.end()}; }

uint64_t PatternSubscriber::lost() const noexcept {
    uint64_t total = 0;
    for (const auto& [name, sub] : core_->topics) total += sub->lost();
    return total;
}

Result<PatternSubscriber> Client::subscribe_pattern(std::string_view pattern, SubscribeOptions options) noexcept {
    if (auto st = validate_topic_pattern(pattern); !st) return st.error();
    if (!options.group.empty())
        return make_error(Errc::invalid_argument, "a pattern subscription is not a group member (one group per topic)");
    try {
        auto core = std::make_unique<detail::PatternCore>(Client(channel_), std::string(pattern), std::move(options));
        core->watch_for_new_topics();
        if (auto added = core->refresh(); !added) return added.error();
        return PatternSubscriber(std::move(core));
    } catch (...) {
        return make_error(Errc::io_error, "out of memory");
    }
}

// What shmbusd is told of pattern subscriptions, and what it shows of them.
Status Client::watch_pattern(std::string_view pattern, bool stop) noexcept {
    protocol::PatternWatch req{};
    detail::copy_name(req.pattern, pattern);
    req.stop = stop ? 1 : 0;
    // The end is said best-effort, from a destructor: shmbusd forgets it with the connection anyway.
    auto reply = stop ? channel_->request_if_connected(protocol::Type::watch_pattern, &req, sizeof req)
                      : channel_->request(protocol::Type::watch_pattern, &req, sizeof req);
    if (!reply) return reply.error();
    return ok_status();
}

Result<std::vector<PatternSubscriptionInfo>> Client::pattern_subscriptions() noexcept {
    std::vector<PatternSubscriptionInfo> out;
    for (;;) {
        protocol::ListTopics req{uint32_t(out.size()), 0};
        auto reply = channel_->request(protocol::Type::list_patterns, &req, sizeof req);
        if (!reply) return reply.error();
        protocol::PatternList head{};
        if (reply->type != protocol::Type::pattern_list || reply->body.size() < sizeof head)
            return make_error(Errc::protocol_error, "unexpected reply from shmbusd");
        std::memcpy(&head, reply->body.data(), sizeof head);
        if (reply->body.size() != sizeof head + std::size_t(head.count) * sizeof(protocol::PatternEntry))
            return make_error(Errc::protocol_error, "malformed pattern list from shmbusd");
        for (uint32_t i = 0; i < head.count; ++i) {
            protocol::PatternEntry e{};
            std::memcpy(&e, reply->body.data() + sizeof(protocol::PatternList) + std::size_t(i) * sizeof e, sizeof e);
            out.push_back({std::string(detail::field_name(e.pattern)), e.pid, e.uid});
        }
        if (head.count == 0 || out.size() >= head.total) return out;
    }
}

}  // namespace shmbus
