// What bus-top shows, sampled: a view of each topic, its subscriptions and groups, with rates and
// trouble worked out from two samples of the statistics. Included by bus_top.cpp only.
#pragma once

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "shmbus/shmbus.h"

namespace bus_top {

using Clock = std::chrono::steady_clock;
using shmbus::SubscriptionStats;
using shmbus::TopicStats;

struct SubscriptionView {
    std::string name;  // "-" for an ephemeral one
    std::string kind;
    int32_t pid = 0;
    bool alive = false;  // attached: its owner runs
    uint64_t lag = 0;
    std::optional<uint64_t> lag_bytes;
    double rate = 0;     // messages delivered per second
    std::optional<double> idle_s;  // since its delivered count last moved, if seen moving
    bool lag_growing = false;
    std::optional<uint64_t> processing_p50_ns, processing_p99_ns;  // delivery to ack, durable only
};

struct GroupView {
    std::string name;
    std::size_t members = 0;
    uint64_t lag = 0, in_flight = 0, waiting_retry = 0, waiting_key = 0, dead_lettered = 0, expired = 0;
    double acked_per_s = 0, nacked_per_s = 0;
    std::optional<double> oldest_unsettled_s;
    double visibility_s = 0;  // its visibility timeout
    bool lag_growing = false;
    // Its oldest unsettled message was first delivered longer ago than the visibility timeout:
    // processing that keeps failing or never finishes.
    [[nodiscard]] bool overdue() const { return oldest_unsettled_s && visibility_s > 0 && *oldest_unsettled_s > visibility_s; }
};

// The topic as a service (request/reply): rates over the last interval, totals, responders now.
struct RequestView {
    bool service = false;  // called or served: the view is shown
    double requests_per_s = 0, replies_per_s = 0;
    uint64_t timed_out = 0, no_responder = 0, responder_died = 0, late_replies = 0;
    uint64_t failed_now = 0;  // timed out, no responder or responder died during the last interval
    uint32_t responders = 0;
};

struct TopicView {
    std::string name;
    double messages_per_s = 0, bytes_per_s = 0;
    uint64_t depth_bytes = 0;
    double depth_percent = 0;
    uint32_t publishers = 0;
    uint64_t slowest_lag = 0;  // of its subscriptions and its groups
    uint64_t full_refusals = 0, blocked_now = 0;  // in all, and during the last interval
    uint32_t waiting_publishers = 0;  // waiting for room now
    double waited_s = 0;              // publishers' time waiting for room during the last interval
    std::string held_back_by;         // the reader furthest behind, while publishers wait
    std::optional<double> oldest_unsettled_s;  // of its groups' messages
    uint64_t lost = 0;
    std::vector<SubscriptionView> subscriptions;
    std::vector<GroupView> groups;
    RequestView requests;
    std::vector<std::string> patterns;  // the pattern subscriptions covering it: "sensors.* (pid 12)"
    [[nodiscard]] std::vector<std::string> trouble() const {
        std::vector<std::string> t;
        if (requests.failed_now > 0) t.push_back("requests failing (timed out, no responder or responder died)");
        if (blocked_now > 0) t.push_back("blocked publishers");
        if (waiting_publishers > 0 || waited_s > 0)
            t.push_back("publishers waiting for room" + (held_back_by.empty() ? std::string() : ", held back by " + held_back_by));
        for (const auto& g : groups) {
            if (g.members == 0 && (g.lag > 0 || g.waiting_retry > 0)) t.push_back("group '" + g.name + "' has work and no members");
            if (g.lag_growing) t.push_back("group '" + g.name + "' lag growing");
            if (g.overdue())
                t.push_back("group '" + g.name + "' has a message unsettled for " +
                            shmbus::short_duration(uint64_t(*g.oldest_unsettled_s * 1e9)) + " (visibility " +
                            shmbus::short_duration(uint64_t(g.visibility_s * 1e9)) + ")");
        }
        for (const auto& s : subscriptions) {
            if (!s.alive && s.kind == "durable") t.push_back("subscription '" + s.name + "' has no owner");
            if (s.lag_growing) t.push_back("subscription '" + s.name + "' lag growing");
        }
        return t;
    }
};

struct Snapshot {
    shmbus::BusInfo bus;
    double interval_s = 0;
    std::vector<TopicView> topics;
    std::vector<std::string> errors;  // topics that could not be read
};

// Samples the bus and turns two samples into rates.
class Sampler {
public:
    explicit Sampler(shmbus::Client& client) : client_(client) {}

    shmbus::Result<Snapshot> sample() {
        auto info = client_.bus_info();
        if (!info) return info.error();
        auto names = client_.list_topics();
        if (!names) return names.error();
        const auto now = Clock::now();
        Snapshot snap;
        snap.bus = *info;
        snap.interval_s = first_ ? 0 : std::chrono::duration<double>(now - taken_).count();
        std::map<std::string, TopicStats> current;
        const auto patterns = client_.pattern_subscriptions();  // none shown when shmbusd cannot say
        for (const auto& n : *names) {
            auto stats = client_.topic_stats(n);
            if (!stats) {
                if (stats.error().code != shmbus::Errc::topic_not_found) snap.errors.push_back(n + ": " + stats.error().message);
                continue;
            }
            snap.topics.push_back(view(*stats, snap.interval_s, now));
            if (patterns)
                for (const auto& p : *patterns)
                    if (shmbus::topic_matches(p.pattern, n))
                        snap.topics.back().patterns.push_back(p.pattern + " (pid " + std::to_string(p.pid) + ")");
            current.emplace(n, std::move(*stats));
        }
        previous_ = std::move(current);
        taken_ = now;
        first_ = false;
        return snap;
    }

private:
    TopicView view(const TopicStats& t, double dt, Clock::time_point now) {
        TopicView v;
        v.name = t.name;
        v.publishers = t.producers;
        v.full_refusals = t.full_refusals;
        const TopicStats* before = nullptr;
        if (auto it = previous_.find(t.name); it != previous_.end()) before = &it->second;
        if (before != nullptr && dt > 0) {
            v.messages_per_s = double(t.published - before->published) / dt;
            v.bytes_per_s = double(t.tail_position - before->tail_position) / dt;
            v.blocked_now = t.full_refusals - before->full_refusals;
            v.waited_s = double(t.full_wait_ns - std::min(t.full_wait_ns, before->full_wait_ns)) / 1e9;
        }
        for (const auto& s : t.subscriptions) {
            v.lost += s.lost;
            v.slowest_lag = std::max(v.slowest_lag, s.lag);
            if (s.lag_bytes) v.depth_bytes = std::max(v.depth_bytes, *s.lag_bytes);
            v.subscriptions.push_back(subscription_view(t, s, before, dt, now));
        }
        v.depth_percent = t.config.capacity > 0 ? 100.0 * double(v.depth_bytes) / double(t.config.capacity) : 0;
        v.waiting_publishers = t.waiting_publishers;
        for (const auto& g : t.groups) {
            GroupView gv;
            gv.name = g.name;
            gv.members = g.members.size();
            gv.lag = g.lag;
            v.slowest_lag = std::max(v.slowest_lag, g.lag);  // a group's backlog is the topic's too
            gv.in_flight = g.in_flight;
            gv.waiting_retry = g.waiting_retry;
            gv.dead_lettered = g.dead_lettered;
            gv.waiting_key = g.waiting_key;
            gv.expired = g.expired;
            if (g.oldest_unsettled_age) gv.oldest_unsettled_s = double(g.oldest_unsettled_age->count()) / 1e9;
            gv.visibility_s = double(g.settings.visibility.count()) / 1e9;
            if (gv.oldest_unsettled_s) v.oldest_unsettled_s = std::max(v.oldest_unsettled_s.value_or(0), *gv.oldest_unsettled_s);
            if (before != nullptr && dt > 0)
                for (const auto& old : before->groups)
                    if (old.name == g.name) {
                        gv.lag_growing = g.lag > old.lag;
                        gv.acked_per_s = double(g.acked - std::min(g.acked, old.acked)) / dt;
                        gv.nacked_per_s = double(g.nacked - std::min(g.nacked, old.nacked)) / dt;
                    }
            v.groups.push_back(std::move(gv));
        }
        if (v.waiting_publishers > 0 || v.waited_s > 0) v.held_back_by = furthest_behind(t);
        v.requests = request_view(t.requests, before != nullptr ? &before->requests : nullptr, dt);
        return v;
    }

    static RequestView request_view(const shmbus::RequestStats& r, const shmbus::RequestStats* before, double dt) {
        RequestView v;
        v.service = r.requests != 0 || r.service_groups != 0 || r.no_responder != 0;
        v.timed_out = r.timed_out;
        v.no_responder = r.no_responder;
        v.responder_died = r.responder_died;
        v.late_replies = r.late_replies;
        v.responders = r.responders;
        if (before != nullptr && dt > 0) {
            auto grew = [](uint64_t now, uint64_t then) { return now - std::min(now, then); };
            v.requests_per_s = double(grew(r.requests, before->requests)) / dt;
            v.replies_per_s = double(grew(r.replies, before->replies)) / dt;
            v.failed_now = grew(r.timed_out, before->timed_out) + grew(r.no_responder, before->no_responder) +
                           grew(r.responder_died, before->responder_died);
        }
        return v;
    }

    // The durable subscription or group with the most messages unacknowledged: what holds
    // publishers back on a full ring ("durable subscription 'audit' (812 behind)").
    static std::string furthest_behind(const TopicStats& t) {
        std::string who;
        uint64_t most = 0;
        for (const auto& s : t.subscriptions)
            if (s.durable && s.lag > most) most = s.lag, who = "durable subscription '" + s.name + "'";
        for (const auto& g : t.groups)
            if (g.lag > most) most = g.lag, who = "group '" + g.name + "'";
        return who.empty() ? who : who + " (" + std::to_string(most) + " behind)";
    }

    SubscriptionView subscription_view(const TopicStats& t, const SubscriptionStats& s, const TopicStats* before, double dt,
                                       Clock::time_point now) {
        SubscriptionView v;
        v.name = s.durable ? s.name : "-";
        v.kind = s.durable ? "durable" : "ephemeral";
        v.pid = s.pid;
        v.alive = s.attached;
        v.lag = s.lag;
        v.lag_bytes = s.lag_bytes;
        v.processing_p50_ns = s.processing_p50_ns;
        v.processing_p99_ns = s.processing_p99_ns;
        const std::string key = t.name + "/" + std::to_string(s.slot) + "/" + s.name + "/" + std::to_string(s.pid);
        if (before != nullptr)
            for (const auto& old : before->subscriptions) {
                if (old.slot != s.slot || old.name != s.name || old.pid != s.pid) continue;
                if (dt > 0) v.rate = double(s.delivered - old.delivered) / dt;
                v.lag_growing = s.lag > old.lag;
                if (s.delivered != old.delivered) last_moved_[key] = now;
            }
        if (auto it = last_moved_.find(key); it != last_moved_.end())
            v.idle_s = std::chrono::duration<double>(now - it->second).count();
        return v;
    }

    shmbus::Client& client_;
    std::map<std::string, TopicStats> previous_;
    std::map<std::string, Clock::time_point> last_moved_;
    Clock::time_point taken_{};
    bool first_ = true;
};

}  // namespace bus_top
