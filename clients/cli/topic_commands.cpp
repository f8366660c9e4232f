// `shmbus topic create|list|info|set|delete`, `shmbus subscription list|delete` and `shmbus gc`.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "cli/command.h"
#include "cli/common.h"
#include "cli/work.h"
#include "shmbus/shmbus.h"

namespace cli {
namespace {

// Every statistic of a table as JSON members of `out`, under its key.
template <class Stats>
void add_statistics(nlohmann::json& out, std::span<const shmbus::Statistic<Stats>> table, const Stats& stats) {
    for (const auto& s : table) out[s.key] = s.get(stats);
}

// "label value, label value" (or "value label, ..." for event counts) from a table.
template <class Stats>
std::string statistics_text(std::span<const shmbus::Statistic<Stats>> table, const Stats& stats, bool value_first) {
    std::string out;
    for (const auto& s : table) {
        if (!out.empty()) out += ", ";
        const std::string value = std::to_string(s.get(stats));
        out += value_first ? value + " " + s.label : std::string(s.label) + " " + value;
    }
    return out;
}

nlohmann::json optional_json(const std::optional<uint64_t>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

nlohmann::json subscription_json(const shmbus::SubscriptionStats& s) {
    nlohmann::json j = {{"name", s.name},
                        {"kind", s.durable ? "durable" : "ephemeral"},
                        {"state", s.attached ? "attached" : "detached"},
                        {"pid", s.pid},
                        {"slot", s.slot},
                        {"ack_position", optional_json(s.ack_position)},
                        {"lag_bytes", optional_json(s.lag_bytes)},
                        {"expires_in_ms", s.expires_in ? nlohmann::json(to_ms(*s.expires_in)) : nlohmann::json(nullptr)},
                        {"processing_samples", s.processing_samples},
                        {"processing_p50_ns", optional_json(s.processing_p50_ns)},
                        {"processing_p99_ns", optional_json(s.processing_p99_ns)}};
    add_statistics(j, shmbus::subscription_statistics(), s);
    return j;
}

// One line per subscription: kind, name, state, pid, its statistics.
void print_subscription_text(const shmbus::SubscriptionStats& s) {
    std::printf("  %-9s %-20s %-8s pid %-7d %s", s.durable ? "durable" : "ephemeral", s.durable ? s.name.c_str() : "-",
                s.attached ? "attached" : "detached", s.pid, statistics_text(shmbus::subscription_statistics(), s, false).c_str());
    if (s.expires_in) std::printf(", expires in %.1f s", double(s.expires_in->count()) / 1e9);
    if (s.processing_p50_ns)
        std::printf(", processing p50 <= %s, p99 <= %s", shmbus::short_duration(*s.processing_p50_ns).c_str(),
                    shmbus::short_duration(*s.processing_p99_ns).c_str());
    std::printf("\n");
}

// A compacted topic's key bound (archive settings, asked of shmbusd); none for any other topic.
std::optional<uint32_t> compacted_keys(shmbus::Client& client, const shmbus::TopicStats& t) {
    if (!t.archived) return std::nullopt;
    auto settings = client.archive_settings(t.name);
    if (!settings || !settings->compact) return std::nullopt;
    return shmbus::kept_keys(*settings);
}

using Patterns = std::vector<shmbus::PatternSubscriptionInfo>;

// The pattern subscriptions the caller may see, or none when shmbusd cannot say (shown as none).
Patterns visible_patterns(shmbus::Client& client) {
    auto p = client.pattern_subscriptions();
    return p ? std::move(*p) : Patterns{};
}

// Those of `all` that cover `topic`.
Patterns covering(const Patterns& all, const std::string& topic) {
    Patterns out;
    for (const auto& p : all)
        if (shmbus::topic_matches(p.pattern, topic)) out.push_back(p);
    return out;
}

nlohmann::json stats_json(const shmbus::TopicStats& t, std::optional<uint32_t> compacted, const Patterns& patterns) {
    nlohmann::json subs = nlohmann::json::array();
    for (const auto& s : t.subscriptions) subs.push_back(subscription_json(s));
    nlohmann::json groups = nlohmann::json::array();
    for (const auto& g : t.groups) groups.push_back(group_json(g));
    nlohmann::json named = nlohmann::json::array();
    for (const auto& p : t.named_producers)
        named.push_back({{"name", p.name}, {"last_sequence", p.last_sequence}, {"pid", p.pid == 0 ? nlohmann::json(nullptr) : nlohmann::json(p.pid)}});
    nlohmann::json recovery = nlohmann::json::object();
    add_statistics(recovery, shmbus::recovery_statistics(), t);
    nlohmann::json requests = nlohmann::json::object();
    add_statistics(requests, shmbus::request_statistics(), t);
    requests["service_groups"] = t.requests.service_groups;
    nlohmann::json by_pattern = nlohmann::json::array();
    for (const auto& p : covering(patterns, t.name)) by_pattern.push_back({{"pattern", p.pattern}, {"pid", p.pid}, {"uid", p.uid}});
    nlohmann::json j = {{"name", t.name},
                        {"capacity", t.config.capacity},
                        {"max_message", t.config.max_message},
                        {"on_full", shmbus::to_string(t.config.on_full)},
                        {"archived", t.archived},
                        {"compacted", compacted.has_value()},
                        {"max_keys", compacted ? nlohmann::json(*compacted) : nlohmann::json(nullptr)},
                        {"single_producer", t.config.single_producer},
                        {"timestamps", t.config.timestamps},
                        {"ttl_ms", to_ms(t.config.ttl)},
                        {"segment_bytes", t.segment_bytes},
                        {"unblock_timeout_ms", to_ms(t.config.unblock_timeout)},
                        {"expire_detached_ms", to_ms(t.config.expire_detached)},
                        {"recovery", std::move(recovery)},
                        {"requests", std::move(requests)},
                        {"pattern_subscriptions", std::move(by_pattern)},
                        {"subscriptions", std::move(subs)},
                        {"groups", std::move(groups)},
                        {"named_producers", std::move(named)}};
    add_statistics(j, shmbus::topic_statistics(), t);
    return j;
}

void print_stats_text(const shmbus::TopicStats& t, std::optional<uint32_t> compacted, const Patterns& patterns) {
    std::printf("topic %s\n", t.name.c_str());
    const std::string archived = !t.archived ? std::string()
                                 : compacted ? ", archived, compacted: the latest message of each key, at most " +
                                                   std::to_string(*compacted) + " keys (shmbus archive info)"
                                             : ", archived (shmbus archive info)";
    std::printf("  capacity %llu B, max message %u B, on-full %s%s%s%s\n", (unsigned long long)t.config.capacity,
                t.config.max_message, shmbus::to_string(t.config.on_full), t.config.single_producer ? ", single-producer" : "",
                t.config.timestamps ? "" : ", no timestamps", archived.c_str());
    std::printf("  unblock-timeout %s, expire-detached %s, ttl %s\n", duration_text(t.config.unblock_timeout, "off").c_str(),
                duration_text(t.config.expire_detached, "never").c_str(), duration_text(t.config.ttl, "none").c_str());
    std::printf("  %s\n", statistics_text(shmbus::topic_statistics(), t, false).c_str());
    std::printf("  recovery: %s\n", statistics_text(shmbus::recovery_statistics(), t, true).c_str());
    // A topic served or called as a service (shmbus request / serve).
    if (t.requests.requests != 0 || t.requests.service_groups != 0 || t.requests.no_responder != 0)
        std::printf("  requests: %s\n", statistics_text(shmbus::request_statistics(), t, false).c_str());
    for (const auto& s : t.subscriptions) print_subscription_text(s);
    for (const auto& p : covering(patterns, t.name))
        std::printf("  pattern   %-20s pid %d, uid %u (a subscription by pattern covers this topic)\n", p.pattern.c_str(), p.pid, p.uid);
    for (const auto& g : t.groups) print_group_text(g);
    for (const auto& p : t.named_producers)
        std::printf("  producer  %-20s %s last sequence %llu\n", p.name.c_str(),
                    p.pid != 0 ? ("held by pid " + std::to_string(p.pid) + ",").c_str() : "not held,", (unsigned long long)p.last_sequence);
}

// `topic create` options, parsed before anything talks to shmbusd: text that does not parse is
// exit status 2 whether or not a daemon runs (values out of range are the bus's to refuse: 1).
struct CreateOptions {
    SizeOption capacity{{}, kSizeExamples}, max_message{{}, kSizeExamples};
    DurationOption unblock_timeout{{}, kDurationExamples}, expire_detached{{}, kDurationExamples}, ttl{{}, kDurationExamples};
    std::string on_full;
    bool single_producer = false;
    bool no_timestamps = false;
    bool archive = false;
    SizeOption retain{{}, kSizeExamples}, archive_file_size{{}, kSizeExamples};
    DurationOption retain_time{{}, kDurationExamples};
    std::string fsync;
    bool compact = false;
    std::optional<uint32_t> max_keys;
};

// The archive settings `topic create` asks for, if any. rc is set on failure.
std::optional<shmbus::ArchiveSettings> archive_settings(const CreateOptions& o, const shmbus::TopicConfig& config, int& rc) {
    const bool given = !o.retain.text.empty() || !o.retain_time.text.empty() || !o.fsync.empty() || !o.archive_file_size.text.empty();
    if (o.max_keys && !o.compact) {
        std::cerr << "shmbus: topic create: --max-keys needs --compact\n";
        rc = kExitUsage;
        return std::nullopt;
    }
    if (o.compact && (!o.retain.text.empty() || !o.retain_time.text.empty())) {
        std::cerr << "shmbus: topic create: a compacted topic keeps every live key: --retain and --retain-time do not apply to it\n";
        rc = kExitUsage;
        return std::nullopt;
    }
    const bool archived = o.archive || o.compact;  // a compacted topic's archive keeps its latest values
    if (!archived && !given && config.on_full != shmbus::OnFull::archive) return std::nullopt;
    if (given && !archived && config.on_full != shmbus::OnFull::archive) {
        std::cerr << "shmbus: topic create: --retain, --retain-time, --fsync and --archive-file-size need --archive\n";
        rc = kExitUsage;
        return std::nullopt;
    }
    shmbus::ArchiveSettings a;
    if (auto v = o.retain.parse("retain size", rc)) a.retain_bytes = *v;
    if (auto v = o.retain_time.parse("retain time", rc)) a.retain_time = *v;
    if (auto v = o.archive_file_size.parse("archive file size", rc)) a.file_bytes = *v;
    if (!o.fsync.empty()) (void)shmbus::parse_fsync(o.fsync, a.fsync);
    a.compact = o.compact;
    a.max_keys = o.max_keys.value_or(0);
    return a;
}

// The topic configuration the options ask for, checked before anything talks to shmbusd: bad
// usage is exit status 2 whether or not a daemon runs. rc is set on failure.
shmbus::TopicConfig create_config(const CreateOptions& o, int& rc) {
    shmbus::TopicConfig config;
    config.single_producer = o.single_producer;
    config.timestamps = !o.no_timestamps;
    if (o.no_timestamps && (o.archive || o.compact)) {
        std::cerr << "shmbus: topic create: --no-timestamps and --" << (o.archive ? "archive" : "compact")
                  << ": an archive is searched by time\n";
        rc = kExitUsage;
    }
    if (auto v = o.unblock_timeout.parse("unblock timeout", rc)) config.unblock_timeout = *v;
    if (auto v = o.expire_detached.parse("expire-detached duration", rc)) config.expire_detached = *v;
    if (auto v = o.ttl.parse("ttl", rc)) config.ttl = *v;
    if (auto v = o.capacity.parse("capacity", rc)) config.capacity = *v;
    if (auto v = o.max_message.parse("max message", rc)) {
        if (*v > UINT32_MAX) {
            std::cerr << "shmbus: max message too large\n";
            rc = kExitUsage;
        }
        config.max_message = uint32_t(std::min<uint64_t>(*v, UINT32_MAX));
    }
    if (!o.on_full.empty()) (void)shmbus::parse_on_full(o.on_full, config.on_full);
    return config;
}

// Every topic; one that cannot be read (a damaged segment) is reported as such, the others still
// listed, and the exit status says something was wrong.
int topic_list(shmbus::Client& client, bool json, bool names_only) {
    auto names = client.list_topics();
    if (!names) return fail(names.error());
    if (names_only) {  // one name a line, for scripts: nothing is read from the topics
        for (const auto& n : *names) std::cout << n << "\n";
        return 0;
    }
    const Patterns patterns = visible_patterns(client);
    nlohmann::json out = nlohmann::json::array();
    int rc = 0;
    for (const auto& n : *names) {
        auto stats = client.topic_stats(n);
        if (!stats) {
            if (stats.error().code == shmbus::Errc::topic_not_found) continue;  // deleted meanwhile
            std::cerr << "shmbus: topic '" << n << "': " << stats.error().message << "\n";
            if (json) out.push_back({{"name", n}, {"error", stats.error().message}});
            rc = kExitError;
            continue;
        }
        const auto compacted = compacted_keys(client, *stats);
        if (json) out.push_back(stats_json(*stats, compacted, patterns));
        else print_stats_text(*stats, compacted, patterns);
    }
    if (json) std::cout << out.dump(2) << "\n";
    return rc;
}

// Through shmbusd when one serves the directory; without it otherwise (the same collection).
int gc(shmbus::Result<shmbus::Client>& client, bool json) {
    auto removed = client ? client->collect_garbage() : shmbus::collect_garbage_without_daemon();
    if (!removed) return fail(removed.error());
    if (json) {
        nlohmann::json items = nlohmann::json::array();
        for (const auto& r : *removed) items.push_back({{"what", r.what}, {"why", r.why}});
        std::cout << nlohmann::json{{"removed", items}, {"count", removed->size()}}.dump(2) << "\n";
        return 0;
    }
    for (const auto& r : *removed) std::printf("removed %s: %s\n", r.what.c_str(), r.why.c_str());
    std::printf("%zu stale item(s) removed\n", removed->size());
    return 0;
}

// `subscription list TOPIC`: every subscription of the topic, as `topic info` shows them.
int subscription_list(shmbus::Client& client, const std::string& topic, bool json) {
    auto stats = client.topic_stats(topic);
    if (!stats) return fail(stats.error());
    if (json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& s : stats->subscriptions) out.push_back(subscription_json(s));
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    if (stats->subscriptions.empty()) std::printf("topic %s has no subscriptions\n", topic.c_str());
    for (const auto& s : stats->subscriptions) print_subscription_text(s);
    return 0;
}

int topic_info(shmbus::Client& client, const std::string& name, bool json) {
    auto stats = client.topic_stats(name);
    if (!stats) return fail(stats.error());
    const auto compacted = compacted_keys(client, *stats);
    const Patterns patterns = visible_patterns(client);
    if (json) std::cout << stats_json(*stats, compacted, patterns).dump(2) << "\n";
    else print_stats_text(*stats, compacted, patterns);
    return 0;
}

// What the topic commands were given.
struct TopicArgs {
    std::string name;
    bool json = false;
    bool names_only = false;
    CreateOptions create;
    shmbus::TopicConfig config;
    std::optional<shmbus::ArchiveSettings> archive;
    std::string set_on_full;
    DurationOption set_unblock{{}, kDurationExamples}, set_expire{{}, kDurationExamples};
    shmbus::Client::LiveSettings live;
    bool force = false;
    std::string subscription;
};

int create_topic(shmbus::Client& client, const TopicArgs& a) {
    const bool existed = client.topic_stats(a.name).has_value();
    if (auto st = client.create_topic(a.name, a.config); !st) return fail(st.error());
    if (a.archive) {
        if (auto st = client.set_archive(a.name, *a.archive); !st) {
            // A create that fails leaves nothing: the topic made a moment ago goes again.
            if (!existed) (void)client.delete_topic(a.name);
            return fail(st.error());
        }
    }
    return 0;
}

// `topic set`: the settings given, each "off"/"never" or a duration. rc is set on failure.
int parse_live_settings(TopicArgs& a) {
    int rc = 0;
    auto duration_or_off = [&](const DurationOption& o, const char* what) -> std::optional<std::chrono::nanoseconds> {
        if (o.text == "off" || o.text == "never") return std::chrono::nanoseconds(0);
        return o.parse(what, rc);
    };
    if (!a.set_on_full.empty()) a.live.on_full = a.set_on_full == "fail" ? shmbus::OnFull::fail : shmbus::OnFull::block;
    a.live.unblock_timeout = duration_or_off(a.set_unblock, "unblock-timeout");
    a.live.expire_detached = duration_or_off(a.set_expire, "expire-detached");
    if (rc != 0) return rc;
    if (!a.live.on_full && !a.live.unblock_timeout && !a.live.expire_detached) {
        std::cerr << "shmbus: topic set: name a setting (--on-full, --unblock-timeout, --expire-detached)\n";
        return kExitUsage;
    }
    return 0;
}

void add_create(CLI::App& topic, const std::shared_ptr<TopicArgs>& a, Commands& out) {
    CreateOptions& o = a->create;
    auto* create = topic.add_subcommand("create", "create a topic");
    create->add_option("NAME", a->name, "topic name")->required();
    create->add_option("--capacity", o.capacity.text, "ring size, e.g. 4M (rounded up to a power of two)");
    create->add_option("--max-message", o.max_message.text, "largest payload, e.g. 64K");
    create->add_option("--on-full", o.on_full, "block, fail, overwrite or archive (durable subscribers never hold "
                                               "publishers back: one that falls behind reads the archive)")
        ->check(CLI::IsMember({"block", "fail", "overwrite", "archive"}));
    create->add_flag("--single-producer", o.single_producer,
                     "one publisher at a time (a second is refused while the first lives); it publishes fastest");
    create->add_flag("--no-timestamps", o.no_timestamps,
                     "messages carry no publish time (timestamp 0): a publish skips the clock read; the topic cannot be "
                     "read from a time nor archived");
    create->add_flag("--archive", o.archive, "keep every message on disk too, under shmbusd's state directory");
    create->add_option("--retain", o.retain.text, "archive: keep about this much, e.g. 10G (whole files are deleted)");
    create->add_option("--retain-time", o.retain_time.text, "archive: keep messages this long, e.g. 7d");
    create->add_option("--fsync", o.fsync, "archive: never, interval (every second) or always (before each acknowledgment)")
        ->check(CLI::IsMember({"never", "interval", "always"}));
    create->add_option("--archive-file-size", o.archive_file_size.text, "archive: start a new file past this size (default 64M)");
    create->add_flag("--compact", o.compact,
                     "keep the latest message of each key (implies --archive): superseded ones are dropped from the "
                     "archive, an empty payload deletes its key, and `sub --from latest-per-key` starts from them");
    create->add_option("--max-keys", o.max_keys, "compact: keep at most this many keys; past it the key updated longest ago "
                                                 "is dropped (default 1000000)")
        ->check(CLI::Range(1u, 4294967295u));
    create->add_option("--unblock-timeout", o.unblock_timeout.text,
                       "take back a message a live publisher leaves uncommitted this long, e.g. 500ms (default: off)");
    create->add_option("--ttl", o.ttl.text,
                       "messages that name no time to live expire this long after publish, e.g. 30s: no group member and "
                       "no durable subscription is given them after that (default: none)");
    create->add_option("--expire-detached", o.expire_detached.text,
                       "release a durable subscription whose owner has been gone this long, e.g. 1h (default: never)");
    out.push_back({create,
                   [a] {
                       int rc = 0;
                       a->config = create_config(a->create, rc);
                       a->archive = archive_settings(a->create, a->config, rc);
                       return rc != 0 ? rc : check_topic_name(a->name);
                   },
                   [a](shmbus::Client& c) { return create_topic(c, *a); },
                   {}});
}

}  // namespace

void add_topic_commands(CLI::App& app, Commands& out) {
    auto a = std::make_shared<TopicArgs>();
    auto named = [a] { return check_topic_name(a->name); };
    auto* topic = app.add_subcommand("topic", "manage topics");
    topic->require_subcommand(1);
    add_create(*topic, a, out);

    auto* list = topic->add_subcommand("list", "list topics");
    list->add_flag("--json", a->json, "JSON output");
    list->add_flag("--names", a->names_only, "only the names, one a line (for scripts)")->excludes("--json");
    out.push_back({list, [] { return 0; }, [a](shmbus::Client& c) { return topic_list(c, a->json, a->names_only); }, {}});

    auto* info = topic->add_subcommand("info", "show a topic");
    info->add_option("NAME", a->name, "topic name")->required();
    info->add_flag("--json", a->json, "JSON output");
    out.push_back({info, named, [a](shmbus::Client& c) { return topic_info(c, a->name, a->json); }, {}});

    auto* set = topic->add_subcommand("set", "change the settings a live topic may change");
    set->add_option("NAME", a->name, "topic name")->required();
    set->add_option("--on-full", a->set_on_full, "block or fail (overwrite cannot change on a live topic)")
        ->check(CLI::IsMember({"block", "fail"}));
    set->add_option("--unblock-timeout", a->set_unblock.text, "e.g. 500ms, or off (switching on or off needs no publisher attached)");
    set->add_option("--expire-detached", a->set_expire.text, "e.g. 1h, or never");
    out.push_back({set,
                   [a] {
                       const int rc = parse_live_settings(*a);
                       return rc != 0 ? rc : check_topic_name(a->name);
                   },
                   [a](shmbus::Client& c) {
                       if (auto st = c.set_topic(a->name, a->live); !st) return fail(st.error());
                       return 0;
                   },
                   {}});

    auto* del = topic->add_subcommand("delete", "delete a topic (refused while clients use it, unless --force)");
    del->add_option("NAME", a->name, "topic name")->required();
    del->add_flag("--force", a->force, "delete it even while publishers or subscribers are attached; they are told");
    out.push_back({del, named,
                   [a](shmbus::Client& c) {
                       if (auto st = c.delete_topic(a->name, a->force); !st) return fail(st.error());
                       return 0;
                   },
                   {}});

    auto* subscription = app.add_subcommand("subscription", "manage durable subscriptions");
    subscription->require_subcommand(1);
    auto* sub_list = subscription->add_subcommand("list", "list a topic's subscriptions");
    sub_list->add_option("TOPIC", a->name, "topic")->required();
    sub_list->add_flag("--json", a->json, "JSON output");
    out.push_back({sub_list, named, [a](shmbus::Client& c) { return subscription_list(c, a->name, a->json); }, {}});
    auto* sub_delete = subscription->add_subcommand("delete", "delete a durable subscription (its owner must be gone)");
    sub_delete->add_option("TOPIC", a->name, "topic")->required();
    sub_delete->add_option("NAME", a->subscription, "durable subscription name")->required();
    out.push_back({sub_delete,
                   [a] {
                       const int rc = check_topic_name(a->name);
                       return rc != 0 ? rc : check_subscription_name(a->subscription);
                   },
                   [a](shmbus::Client& c) {
                       if (auto st = c.delete_subscription(a->name, a->subscription); !st) return fail(st.error());
                       return 0;
                   },
                   {}});

    auto* gc_cmd = app.add_subcommand("gc", "remove segments and sockets of buses that no longer run");
    gc_cmd->add_flag("--json", a->json, "JSON output");
    out.push_back({gc_cmd, [] { return 0; }, {}, [a](shmbus::Result<shmbus::Client>& c) {
                       if (!c && c.error().code != shmbus::Errc::daemon_not_running) return fail(c.error());
                       return gc(c, a->json);
                   }});
}

}  // namespace cli
