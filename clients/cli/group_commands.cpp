// `shmbus group create|info|delete|list` and how a group is shown (text and JSON), also by
// `topic info`.
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli/work.h"

namespace cli {

nlohmann::json group_json(const shmbus::GroupStats& g) {
    const auto& s = g.settings;
    nlohmann::json settings = {{"window", s.window},
                               {"visibility_ms", to_ms(s.visibility)},
                               {"dead_letter_expired", s.dead_letter_expired},
                               {"ordered_by_key", s.ordered_by_key},
                               {"service", s.service},
                               {"max_deliveries", s.max_deliveries},
                               {"backoff_initial_ms", to_ms(s.backoff_initial)},
                               {"backoff_max_ms", to_ms(s.backoff_max)},
                               {"backoff_factor", s.backoff_factor},
                               {"rate_per_second", s.rate.per_second > 0 ? nlohmann::json(s.rate.per_second) : nlohmann::json(nullptr)},
                               {"rate_burst", s.rate.per_second > 0 ? nlohmann::json(s.rate.burst) : nlohmann::json(nullptr)}};
    return {{"name", g.name},
            {"members", g.members},
            {"next_id", g.next_id},
            {"lag", g.lag},
            {"in_flight", g.in_flight},
            {"waiting_retry", g.waiting_retry},
            {"waiting_key", g.waiting_key},
            {"dead_letters_refused", g.dead_letters_refused},
            {"delivered", g.delivered},
            {"acked", g.acked},
            {"redelivered", g.redelivered},
            {"nacked", g.nacked},
            {"dead_lettered", g.dead_lettered},
            {"ack_too_late", g.ack_too_late},
            {"reparked", g.reparked},
            {"expired", g.expired},
            {"oldest_unsettled_ms", g.oldest_unsettled_age ? nlohmann::json(to_ms(*g.oldest_unsettled_age)) : nlohmann::json(nullptr)},
            // The settings also at the top level, as earlier versions showed them.
            {"window", s.window},
            {"max_deliveries", s.max_deliveries},
            {"visibility_ms", to_ms(s.visibility)},
            {"settings", std::move(settings)}};
}

namespace {
std::string pid_text(const std::vector<int32_t>& pids) {
    std::string out;
    for (int32_t p : pids) out += (out.empty() ? "" : ",") + std::to_string(p);
    return out;
}
std::string oldest_text(const shmbus::GroupStats& g) {
    return g.oldest_unsettled_age ? shmbus::short_duration(uint64_t(g.oldest_unsettled_age->count())) : std::string("-");
}
}  // namespace

void print_group_text(const shmbus::GroupStats& g) {
    const std::string pids = pid_text(g.members);
    std::printf("  group     %-20s members %zu%s%s%s, lag %llu, in flight %llu, waiting retry %llu, acked %llu, redelivered %llu, "
                "nacked %llu, dead-lettered %llu, expired %llu, oldest unsettled %s\n",
                g.name.c_str(), g.members.size(), pids.empty() ? "" : " (pid ", pids.c_str(), pids.empty() ? "" : ")",
                (unsigned long long)g.lag, (unsigned long long)g.in_flight, (unsigned long long)g.waiting_retry,
                (unsigned long long)g.acked, (unsigned long long)g.redelivered, (unsigned long long)g.nacked,
                (unsigned long long)g.dead_lettered, (unsigned long long)g.expired, oldest_text(g).c_str());
    // Said only when it happens: a message that can never be dead-lettered as it is.
    if (g.dead_letters_refused != 0)
        std::printf("  group     %-20s %llu message(s) refused by the dead-letter topic (too large for it); they wait "
                    "in retry until it can take them\n",
                    g.name.c_str(), (unsigned long long)g.dead_letters_refused);
}

int group_create(shmbus::Client& client, const std::string& topic, const std::string& group,
                 const shmbus::GroupSettings& settings, const shmbus::SubscribeOptions& from) {
    if (auto st = client.create_group(topic, group, settings, from.from, from.from_id); !st) return fail(st.error());
    return 0;
}

namespace {
std::optional<shmbus::GroupStats> find_group_stats(shmbus::Client& client, const std::string& topic, const std::string& group,
                                                    int& rc) {
    auto stats = client.topic_stats(topic);
    if (!stats) {
        rc = fail(stats.error());
        return std::nullopt;
    }
    for (auto& g : stats->groups)
        if (g.name == group) return std::move(g);
    std::cerr << "shmbus: no group '" << group << "' on '" << topic << "'\n";
    rc = kExitError;
    return std::nullopt;
}
}  // namespace

int group_info(shmbus::Client& client, const std::string& topic, const std::string& group, bool json) {
    int rc = 0;
    const auto g = find_group_stats(client, topic, group, rc);
    if (!g) return rc;
    if (json) {
        nlohmann::json j = group_json(*g);
        j["topic"] = topic;
        std::cout << j.dump(2) << "\n";
        return 0;
    }
    const auto& s = g->settings;
    std::printf("group %s of %s\n", g->name.c_str(), topic.c_str());
    std::printf("  members %zu%s%s%s\n", g->members.size(), g->members.empty() ? "" : " (pid ", pid_text(g->members).c_str(),
                g->members.empty() ? "" : ")");
    std::printf("  window %u, visibility %s, max-deliveries %u, backoff %s..%s x%g, rate %s%s%s%s\n", s.window,
                duration_text(s.visibility, "0").c_str(), s.max_deliveries, duration_text(s.backoff_initial, "0").c_str(),
                duration_text(s.backoff_max, "0").c_str(), s.backoff_factor, rate_text(s.rate).c_str(),
                s.ordered_by_key ? ", ordered by key" : "", s.dead_letter_expired ? ", dead-letters expired messages" : "",
                s.service ? ", service (its members are responders)" : "");
    std::printf("  next id %llu, lag %llu, in flight %llu, waiting retry %llu, waiting key %llu, oldest unsettled %s\n",
                (unsigned long long)g->next_id, (unsigned long long)g->lag, (unsigned long long)g->in_flight,
                (unsigned long long)g->waiting_retry, (unsigned long long)g->waiting_key, oldest_text(*g).c_str());
    std::printf("  delivered %llu, acked %llu, redelivered %llu, nacked %llu, dead-lettered %llu, acks too late %llu, expired %llu%s\n",
                (unsigned long long)g->delivered, (unsigned long long)g->acked, (unsigned long long)g->redelivered,
                (unsigned long long)g->nacked, (unsigned long long)g->dead_lettered, (unsigned long long)g->ack_too_late,
                (unsigned long long)g->expired, s.dead_letter_expired ? " (dead-lettered)" : "");
    return 0;
}

int group_delete(shmbus::Client& client, const std::string& topic, const std::string& group) {
    if (auto st = client.delete_group(topic, group); !st) return fail(st.error());
    return 0;
}

int group_list(shmbus::Client& client, const std::string& topic, bool json) {
    auto stats = client.topic_stats(topic);
    if (!stats) return fail(stats.error());
    if (json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& g : stats->groups) out.push_back(group_json(g));
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    if (stats->groups.empty()) std::printf("topic %s has no groups\n", topic.c_str());
    for (const auto& g : stats->groups) print_group_text(g);
    return 0;
}

}  // namespace cli
