// Pattern subscriptions as shmbusd sees them: each connection says which it holds, so that
// `topic info`, bus-top and the metrics can show them. A pattern subscription needs nothing else
// from shmbusd (it subscribes to each covered topic, each checked as any subscription).
#include "handlers/handlers.h"
#include "handlers/support.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "shmbus/pattern.h"

namespace shmbus::daemon {

bool RequestHandlers::on_watch_pattern(Conn& c, uint32_t id, const protocol::PatternWatch& req) {
    const std::string pattern(field_name(req.pattern));
    if (auto st = validate_topic_pattern(pattern); !st) return reply_error(c, id, st.error());
    if (req.stop != 0) {
        const auto it = std::find_if(patterns_.begin(), patterns_.end(),
                                     [&](const PatternRecord& p) { return p.session == c.session && p.pattern == pattern; });
        if (it != patterns_.end()) patterns_.erase(it);
        return reply(c, protocol::Type::ok, id, nullptr, 0);
    }
    const auto held = std::count_if(patterns_.begin(), patterns_.end(), [&](const PatternRecord& p) { return p.session == c.session; });
    if (std::size_t(held) >= kMaxPatternsPerConnection)
        return reply_error(c, id, make_error(Errc::no_free_slot, "this connection already holds " + std::to_string(held) +
                                                                     " pattern subscriptions, the most shmbusd keeps per connection"));
    patterns_.push_back({pattern, c.session, c.process.pid, c.who.uid});
    spdlog::debug("pid {} subscribed to pattern '{}'", c.process.pid, pattern);
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool RequestHandlers::on_list_patterns(Conn& c, uint32_t id, const protocol::ListTopics& req) {
    // The bus owner and root see every user's; anyone else their own uid's.
    std::vector<const PatternRecord*> visible;
    for (const auto& p : patterns_)
        if (access_.privileged(c.who) || p.uid == c.who.uid) visible.push_back(&p);
    const uint32_t total = uint32_t(visible.size());
    const uint32_t first = std::min(req.offset, total);
    const uint32_t count = std::min(protocol::kPatternsPerList, total - first);
    std::vector<std::byte> body(sizeof(protocol::PatternList) + std::size_t(count) * sizeof(protocol::PatternEntry));
    const protocol::PatternList head{total, count};
    std::memcpy(body.data(), &head, sizeof head);
    for (uint32_t i = 0; i < count; ++i) {
        protocol::PatternEntry e{};
        copy_name(e.pattern, visible[first + i]->pattern);
        e.pid = visible[first + i]->pid;
        e.uid = visible[first + i]->uid;
        std::memcpy(body.data() + sizeof head + std::size_t(i) * sizeof e, &e, sizeof e);
    }
    return reply(c, protocol::Type::pattern_list, id, body.data(), body.size());
}

}  // namespace shmbus::daemon
