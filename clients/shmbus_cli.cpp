// shmbus: command-line client of a shmbus bus. See `shmbus --help` and README.md.
// Exit status: 0 success, 1 the bus reported an error (message on stderr), 2 invalid usage.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "cli_archive.h"
#include "cli_common.h"
#include "bridge.h"
#include "cli_work.h"
#include "shmbus/shmbus.h"
#include "shmbus/version.h"

namespace {

using namespace cli;


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

nlohmann::json stats_json(const shmbus::TopicStats& t) {
    nlohmann::json subs = nlohmann::json::array();
    for (const auto& s : t.subscriptions) subs.push_back(subscription_json(s));
    nlohmann::json groups = nlohmann::json::array();
    for (const auto& g : t.groups) groups.push_back(group_json(g));
    nlohmann::json named = nlohmann::json::array();
    for (const auto& p : t.named_producers)
        named.push_back({{"name", p.name}, {"last_sequence", p.last_sequence}, {"pid", p.pid == 0 ? nlohmann::json(nullptr) : nlohmann::json(p.pid)}});
    nlohmann::json recovery = nlohmann::json::object();
    add_statistics(recovery, shmbus::recovery_statistics(), t);
    nlohmann::json j = {{"name", t.name},
                        {"capacity", t.config.capacity},
                        {"max_message", t.config.max_message},
                        {"on_full", shmbus::to_string(t.config.on_full)},
                        {"archived", t.archived},
                        {"single_producer", t.config.single_producer},
                        {"segment_bytes", t.segment_bytes},
                        {"unblock_timeout_ms", to_ms(t.config.unblock_timeout)},
                        {"expire_detached_ms", to_ms(t.config.expire_detached)},
                        {"recovery", std::move(recovery)},
                        {"subscriptions", std::move(subs)},
                        {"groups", std::move(groups)},
                        {"named_producers", std::move(named)}};
    add_statistics(j, shmbus::topic_statistics(), t);
    return j;
}

void print_stats_text(const shmbus::TopicStats& t) {
    std::printf("topic %s\n", t.name.c_str());
    std::printf("  capacity %llu B, max message %u B, on-full %s%s%s\n", (unsigned long long)t.config.capacity,
                t.config.max_message, shmbus::to_string(t.config.on_full), t.config.single_producer ? ", single-producer" : "",
                t.archived ? ", archived (shmbus archive info)" : "");
    std::printf("  unblock-timeout %s, expire-detached %s\n", duration_text(t.config.unblock_timeout, "off").c_str(),
                duration_text(t.config.expire_detached, "never").c_str());
    std::printf("  %s\n", statistics_text(shmbus::topic_statistics(), t, false).c_str());
    std::printf("  recovery: %s\n", statistics_text(shmbus::recovery_statistics(), t, true).c_str());
    for (const auto& s : t.subscriptions) print_subscription_text(s);
    for (const auto& g : t.groups) print_group_text(g);
    for (const auto& p : t.named_producers)
        std::printf("  producer  %-20s %s last sequence %llu\n", p.name.c_str(),
                    p.pid != 0 ? ("held by pid " + std::to_string(p.pid) + ",").c_str() : "not held,", (unsigned long long)p.last_sequence);
}

// `topic create` options, parsed before anything talks to shmbusd: text that does not parse is
// exit status 2 whether or not a daemon runs (values out of range are the bus's to refuse: 1).
struct CreateOptions {
    SizeOption capacity{{}, kSizeExamples}, max_message{{}, kSizeExamples};
    DurationOption unblock_timeout{{}, kDurationExamples}, expire_detached{{}, kDurationExamples};
    std::string on_full;
    bool single_producer = false;
    bool archive = false;
    SizeOption retain{{}, kSizeExamples}, archive_file_size{{}, kSizeExamples};
    DurationOption retain_time{{}, kDurationExamples};
    std::string fsync;
};

// The archive settings `topic create` asks for, if any. rc is set on failure.
std::optional<shmbus::ArchiveSettings> archive_settings(const CreateOptions& o, const shmbus::TopicConfig& config, int& rc) {
    const bool given = !o.retain.text.empty() || !o.retain_time.text.empty() || !o.fsync.empty() || !o.archive_file_size.text.empty();
    if (!o.archive && !given && config.on_full != shmbus::OnFull::archive) return std::nullopt;
    if (given && !o.archive && config.on_full != shmbus::OnFull::archive) {
        std::cerr << "shmbus: topic create: --retain, --retain-time, --fsync and --archive-file-size need --archive\n";
        rc = kExitUsage;
        return std::nullopt;
    }
    shmbus::ArchiveSettings a;
    if (auto v = o.retain.parse("retain size", rc)) a.retain_bytes = *v;
    if (auto v = o.retain_time.parse("retain time", rc)) a.retain_time = *v;
    if (auto v = o.archive_file_size.parse("archive file size", rc)) a.file_bytes = *v;
    if (!o.fsync.empty()) (void)shmbus::parse_fsync(o.fsync, a.fsync);
    return a;
}

// `--from TIME` (RFC 3339) or `--since DURATION`: the time a subscription starts at. rc is set on failure.
std::optional<uint64_t> start_time(const std::string& from, const std::string& since, int& rc) {
    if (!since.empty()) {
        auto d = shmbus::parse_duration(since);
        if (!d) {
            std::cerr << "shmbus: invalid --since '" << since << "' (" << kDurationExamples << ")\n";
            rc = kExitUsage;
            return std::nullopt;
        }
        const auto now = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::system_clock::now().time_since_epoch()).count());
        return now > uint64_t(d->count()) ? now - uint64_t(d->count()) : 1;
    }
    if (from.find('-') != std::string::npos && from.find(':') != std::string::npos) {
        auto t = shmbus::parse_rfc3339(from);
        if (!t) {
            std::cerr << "shmbus: --from takes earliest, latest, a message id or an RFC 3339 time "
                         "(2026-11-28T20:00:00Z), not '" << from << "'\n";
            rc = kExitUsage;
        }
        return t;
    }
    return std::nullopt;
}

// The topic configuration the options ask for, checked before anything talks to shmbusd: bad
// usage is exit status 2 whether or not a daemon runs. rc is set on failure.
shmbus::TopicConfig create_config(const CreateOptions& o, int& rc) {
    shmbus::TopicConfig config;
    config.single_producer = o.single_producer;
    if (auto v = o.unblock_timeout.parse("unblock timeout", rc)) config.unblock_timeout = *v;
    if (auto v = o.expire_detached.parse("expire-detached duration", rc)) config.expire_detached = *v;
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
int topic_list(shmbus::Client& client, bool json) {
    auto names = client.list_topics();
    if (!names) return fail(names.error());
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
        if (json) out.push_back(stats_json(*stats));
        else print_stats_text(*stats);
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
    if (json) std::cout << stats_json(*stats).dump(2) << "\n";
    else print_stats_text(*stats);
    return 0;
}

// On a full ring: the durable subscriptions whose unacked messages hold the publishers back,
// slowest first, e.g. " held back by durable subscription 'audit' (detached, 812 unacked)".
std::string held_back_by(shmbus::Client& client, const std::string& topic) {
    auto stats = client.topic_stats(topic);
    if (!stats) return {};
    std::vector<const shmbus::SubscriptionStats*> durable;
    for (const auto& s : stats->subscriptions)
        if (s.durable && s.lag > 0) durable.push_back(&s);
    if (durable.empty()) return {};
    std::sort(durable.begin(), durable.end(), [](auto* a, auto* b) { return a->lag > b->lag; });
    std::string out = durable.size() == 1 ? "; held back by durable subscription " : "; held back by durable subscriptions ";
    for (std::size_t i = 0; i < durable.size() && i < 3; ++i) {
        if (i > 0) out += ", ";
        out += "'" + durable[i]->name + "' (" + (durable[i]->attached ? "attached" : "detached") + ", " +
               std::to_string(durable[i]->lag) + " unacked)";
    }
    if (durable.size() > 3) out += " and " + std::to_string(durable.size() - 3) + " more";
    return out;
}

// What `pub` publishes with: a named producer numbers its messages from `first_sequence` on.
struct PubSettings {
    std::chrono::nanoseconds timeout = std::chrono::seconds(30);
    std::string producer;              // --producer; empty: anonymous
    std::optional<uint64_t> sequence;  // --seq: the first message's sequence (default: one past the last committed)
};

// One message; `sequence` is 0 for an anonymous publisher. A named producer's message already
// published (a duplicate) is counted in `skipped`, not an error.
int publish_one(shmbus::Client& client, shmbus::Publisher& pub, std::string_view message, std::span<const shmbus::Header> headers,
                std::chrono::nanoseconds timeout, uint64_t sequence, uint64_t& skipped) {
    const auto bytes = std::as_bytes(std::span<const char>(message.data(), message.size()));
    const auto st = sequence != 0 ? pub.publish_sequence(sequence, bytes, headers) : pub.publish(bytes, headers, timeout);
    if (st == shmbus::PublishStatus::ok) return 0;
    if (st == shmbus::PublishStatus::duplicate) {
        ++skipped;
        return 0;
    }
    if (st == shmbus::PublishStatus::too_large) {
        std::cerr << "shmbus: message of " << message.size() << " bytes"
                  << (headers.empty() ? "" : " with " + std::to_string(shmbus::encoded_headers_size(headers)) + " bytes of headers")
                  << " exceeds the topic's max message of " << pub.max_message() << " bytes\n";
        return kExitError;
    }
    const bool full = st == shmbus::PublishStatus::would_block || st == shmbus::PublishStatus::timed_out;
    std::cerr << "shmbus: publish to '" << pub.topic() << "' failed: " << shmbus::to_string(st)
              << (st == shmbus::PublishStatus::would_block ? " (topic is full and its on-full policy is fail)"
                  : st == shmbus::PublishStatus::corrupt   ? " (the topic's shared memory is damaged)"
                  : st == shmbus::PublishStatus::revoked   ? " (the message was taken back)"
                  : st == shmbus::PublishStatus::deleted   ? " (the topic was deleted)"
                                                           : " (topic stayed full for " + duration_text(timeout, "0s") + ")")
              << (full ? held_back_by(client, pub.topic()) : std::string()) << "\n";
    return kExitError;
}

int pub(shmbus::Client& client, const std::string& topic, const std::vector<std::string>& messages,
        std::span<const shmbus::Header> headers, const PubSettings& settings) {
    shmbus::PublisherOptions options;
    options.block_timeout = settings.timeout;
    options.producer = settings.producer;
    auto pub = client.publisher(topic, options);
    if (!pub) return fail(pub.error());
    const bool named = !settings.producer.empty();
    uint64_t next = named ? settings.sequence.value_or(pub->last_sequence() + 1) : 0;
    const uint64_t first = next;
    uint64_t skipped = 0;
    auto one = [&](std::string_view m) {
        const int rc = publish_one(client, *pub, m, headers, settings.timeout, next, skipped);
        if (named) ++next;
        return rc;
    };
    int rc = 0;
    if (!messages.empty()) {
        for (const auto& m : messages)
            if ((rc = one(m)) != 0) break;
    } else {
        std::string line;
        while (rc == 0 && std::getline(std::cin, line)) rc = one(line);
    }
    if (skipped != 0)
        std::cerr << "shmbus: skipped " << skipped << " message" << (skipped == 1 ? "" : "s") << " that producer '" << settings.producer
                  << "' had already published (sequences from " << first << "; last committed " << pub->last_sequence() << ")\n";
    return rc;
}

// `--header KEY=VALUE`, each checked before anything talks to shmbusd. rc is set on failure.
std::vector<shmbus::Header> parse_headers(const std::vector<std::string>& given, int& rc) {
    std::vector<shmbus::Header> out;
    for (const auto& text : given) {
        const auto eq = text.find('=');
        if (eq == std::string::npos) {
            std::cerr << "shmbus: --header takes KEY=VALUE, not '" << text << "'\n";
            rc = kExitUsage;
            return {};
        }
        out.push_back({std::string_view(text).substr(0, eq), std::string_view(text).substr(eq + 1)});
    }
    if (auto st = shmbus::validate_headers(out); !st) {
        std::cerr << "shmbus: " << st.error().message << "\n";
        rc = kExitUsage;
        return {};
    }
    return out;
}

// `--from`: earliest, latest or a message id. rc is set on failure.
void parse_from(const std::string& from, shmbus::SubscribeOptions& options, int& rc) {
    if (from == "earliest") options.from = shmbus::StartFrom::earliest;
    else if (from == "latest") options.from = shmbus::StartFrom::latest;
    else {
        options.from = shmbus::StartFrom::id;
        const auto id = parse_whole_number(from);
        options.from_id = id.value_or(0);
        if (!id) {
            std::cerr << "shmbus: --from takes earliest, latest or a message id, not '" << from << "'\n";
            rc = kExitUsage;
        }
    }
}

int sub(shmbus::Client& client, const std::string& topic, shmbus::SubscribeOptions options, std::optional<uint64_t> count,
        const std::string& format) {
    options.auto_ack = false;  // acked only after the output is flushed
    install_stop_handlers();
    auto s = client.subscribe(topic, options);
    if (!s) return fail(s.error());
    const bool json = format == "json";
    const bool group = s->in_group();
    // From the earliest message of a ring that has lapped (and no archive behind it): where it
    // starts and what is gone is said at once, rather than a --count waiting without a word.
    if (options.from == shmbus::StartFrom::earliest && !group && !s->resumed() && s->next_id() > 0)
        if (auto stats = client.topic_stats(topic); stats && !stats->archived)
            std::cerr << "shmbus: starting at id " << s->next_id() << ": the ring no longer holds the " << s->next_id()
                      << " message(s) before it" << (count ? " (--count waits for new ones)" : "") << "\n";
    uint64_t received = 0;
    uint64_t lost_reported = 0;
    std::vector<shmbus::Message> to_ack;  // a group's acks are per message
    auto handler = [&](const shmbus::Message& m) {
        if (group) to_ack.push_back(m);
        if (json) {
                const std::string line = json_line(message_json(topic, m, group));
            std::fwrite(line.data(), 1, line.size(), stdout);
        } else {
            std::fwrite(m.payload.data(), 1, m.payload.size(), stdout);
        }
        std::fputc('\n', stdout);
        ++received;
    };
    while (!g_stop.load(std::memory_order_relaxed) && (!count || received < *count)) {
        const std::size_t want = count ? std::size_t(std::min<uint64_t>(*count - received, 256)) : 256;
        const auto r = s->receive(handler, std::chrono::milliseconds(100), want);
        if (r.status == shmbus::ReceiveStatus::corrupt) {
            std::fflush(stdout);
            std::cerr << "shmbus: topic '" << topic << "' is corrupt; stopping\n";
            return kExitError;
        }
        if (r.status == shmbus::ReceiveStatus::deleted) {
            std::fflush(stdout);
            std::cerr << "shmbus: topic '" << topic << "' was deleted; stopping\n";
            return kExitError;
        }
        if (r.count == 0) continue;
        if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
            std::cerr << "shmbus: cannot write output; messages left unacked\n";
            return kExitError;
        }
        // Only after the output is flushed: a killed sub redelivers, never loses.
        if (group) {
            for (const auto& m : to_ack) (void)s->ack(m);  // a stale one was given to another member meanwhile
            to_ack.clear();
        } else {
            s->ack_delivered();
        }
        if (s->lost() != lost_reported) {
            std::cerr << "shmbus: lost " << s->lost() - lost_reported << " message(s): the subscription was overrun\n";
            lost_reported = s->lost();
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shmbus: publish, subscribe and manage topics on a shmbus bus"};
    app.require_subcommand(1);
    app.fallthrough();  // --dir may also follow the subcommand
    app.set_version_flag("--version", std::string("shmbus ") + shmbus::kVersion);
    std::string dir;
    app.add_option("--dir", dir, "bus directory (default: $SHMBUS_DIR, then a per-user runtime directory)");
    DurationOption wait{{}, kDurationExamples};
    app.add_option("--wait", wait.text, "wait this long for a shmbusd that is starting (default 2s; 0 fails at once)");

    auto* topic = app.add_subcommand("topic", "manage topics");
    topic->require_subcommand(1);
    std::string name;
    CreateOptions create_options;
    auto& o = create_options;
    bool json = false;
    auto* create = topic->add_subcommand("create", "create a topic");
    create->add_option("NAME", name, "topic name")->required();
    create->add_option("--capacity", o.capacity.text, "ring size, e.g. 4M (rounded up to a power of two)");
    create->add_option("--max-message", o.max_message.text, "largest payload, e.g. 64K");
    create->add_option("--on-full", o.on_full, "block, fail, overwrite or archive (durable subscribers never hold "
                                               "publishers back: one that falls behind reads the archive)")
        ->check(CLI::IsMember({"block", "fail", "overwrite", "archive"}));
    create->add_flag("--single-producer", o.single_producer,
                     "one publisher at a time (a second is refused while the first lives); it publishes fastest");
    create->add_flag("--archive", o.archive, "keep every message on disk too, under shmbusd's state directory");
    create->add_option("--retain", o.retain.text, "archive: keep about this much, e.g. 10G (whole files are deleted)");
    create->add_option("--retain-time", o.retain_time.text, "archive: keep messages this long, e.g. 7d");
    create->add_option("--fsync", o.fsync, "archive: never, interval (every second) or always (before each acknowledgment)")
        ->check(CLI::IsMember({"never", "interval", "always"}));
    create->add_option("--archive-file-size", o.archive_file_size.text, "archive: start a new file past this size (default 64M)");
    create->add_option("--unblock-timeout", o.unblock_timeout.text,
                       "take back a message a live publisher leaves uncommitted this long, e.g. 500ms (default: off)");
    create->add_option("--expire-detached", o.expire_detached.text,
                       "release a durable subscription whose owner has been gone this long, e.g. 1h (default: never)");
    auto* list = topic->add_subcommand("list", "list topics");
    list->add_flag("--json", json, "JSON output");
    auto* info = topic->add_subcommand("info", "show a topic");
    info->add_option("NAME", name, "topic name")->required();
    info->add_flag("--json", json, "JSON output");
    auto* set = topic->add_subcommand("set", "change the settings a live topic may change");
    set->add_option("NAME", name, "topic name")->required();
    std::string set_on_full;
    DurationOption set_unblock{{}, kDurationExamples}, set_expire{{}, kDurationExamples};
    set->add_option("--on-full", set_on_full, "block or fail (overwrite cannot change on a live topic)")
        ->check(CLI::IsMember({"block", "fail"}));
    set->add_option("--unblock-timeout", set_unblock.text, "e.g. 500ms, or off (switching on or off needs no publisher attached)");
    set->add_option("--expire-detached", set_expire.text, "e.g. 1h, or never");
    auto* del = topic->add_subcommand("delete", "delete a topic (refused while clients use it, unless --force)");
    del->add_option("NAME", name, "topic name")->required();
    bool force = false;
    del->add_flag("--force", force, "delete it even while publishers or subscribers are attached; they are told");

    auto* subscription = app.add_subcommand("subscription", "manage durable subscriptions");
    subscription->require_subcommand(1);
    std::string sub_name;
    auto* sub_list = subscription->add_subcommand("list", "list a topic's subscriptions");
    sub_list->add_option("TOPIC", name, "topic")->required();
    sub_list->add_flag("--json", json, "JSON output");
    auto* sub_delete = subscription->add_subcommand("delete", "delete a durable subscription (its owner must be gone)");
    sub_delete->add_option("TOPIC", name, "topic")->required();
    sub_delete->add_option("NAME", sub_name, "durable subscription name")->required();

    auto* gc_cmd = app.add_subcommand("gc", "remove segments and sockets of buses that no longer run");
    gc_cmd->add_flag("--json", json, "JSON output");

    std::vector<std::string> messages;
    auto* pub_cmd = app.add_subcommand("pub", "publish each MESSAGE, or each line of stdin");
    pub_cmd->add_option("TOPIC", name, "topic")->required();
    pub_cmd->add_option("MESSAGE", messages, "messages");
    DurationOption pub_timeout{{}, kDurationExamples};
    pub_cmd->add_option("--timeout", pub_timeout.text, "on a full block topic, wait this long before failing (default 30s)");
    std::vector<std::string> header_texts;
    pub_cmd->add_option("--header", header_texts, "KEY=VALUE: a header every message carries (repeatable)")
        ->allow_extra_args(false);
    PubSettings pub_settings;
    pub_cmd->add_option("--producer", pub_settings.producer,
                        "NAME: publish as an idempotent producer; a message whose sequence was already committed is skipped");
    auto* seq_opt = pub_cmd->add_option("--seq", pub_settings.sequence,
                                        "N: number the messages N, N+1, ... (default: one past the producer's last committed)")
                        ->check(CLI::PositiveNumber);

    std::string durable, from = "latest", format = "payload";
    std::optional<uint64_t> count;
    auto* sub_cmd = app.add_subcommand("sub", "print messages, one per line");
    sub_cmd->add_option("TOPIC", name, "topic")->required();
    sub_cmd->add_option("--durable", durable, "durable subscription name (at least once, resumes after its last ack)");
    sub_cmd->add_option("--from", from, "earliest, latest, a message id or an RFC 3339 time (new subscriptions only; "
                                         "an archived topic reaches back into its archive)");
    std::string since;
    sub_cmd->add_option("--since", since, "start at the first message published this long ago, e.g. 15m");
    const CLI::Validator whole_number(  // CLI11 alone would read "-1" as 2^64-1
        [](std::string& text) -> std::string {
            const bool ok = text.size() <= 19 && parse_whole_number(text).has_value();
            return ok ? std::string() : "takes a whole number (0 or more), not '" + text + "'";
        },
        "N");
    sub_cmd->add_option("--count", count, "exit after N messages (0: set up the subscription and exit)")->check(whole_number);
    sub_cmd->add_option("--format", format, "payload or json")->check(CLI::IsMember({"payload", "json"}));
    std::string group, rate, exec;
    uint32_t parallel = 1;
    GroupOptions group_options;
    sub_cmd->add_option("--group", group, "join consumer group NAME: each message goes to one member (work queue)");
    group_options.add_to(*sub_cmd, whole_number);
    sub_cmd->add_option("--rate", rate, "at most N/s[:BURST] deliveries (a group's rate is shared by its members)");
    sub_cmd->add_option("--exec", exec, "group: run `sh -c CMD` per message, payload on stdin, SHMBUS_TOPIC, SHMBUS_MESSAGE_ID, "
                                         "SHMBUS_ATTEMPT and SHMBUS_HEADER_<KEY> in its environment; exit 0 acks, 65 rejects "
                                         "(to TOPIC.dlq at once), anything else nacks (retried)");
    sub_cmd->add_option("--parallel", parallel, "with --exec: commands running at once (default 1)")
        ->check(CLI::Range(1u, 256u));

    auto* group_cmd = app.add_subcommand("group", "manage consumer groups (work queues)");
    group_cmd->require_subcommand(1);
    std::string group_from = "latest";
    GroupOptions create_group_options;
    std::string create_group_rate;
    auto* group_create_cmd = group_cmd->add_subcommand("create", "create a group (success if it exists with these settings)");
    group_create_cmd->add_option("TOPIC", name, "topic")->required();
    group_create_cmd->add_option("NAME", sub_name, "group name")->required();
    create_group_options.add_to(*group_create_cmd, whole_number);
    group_create_cmd->add_option("--rate", create_group_rate, "at most N/s[:BURST] deliveries, shared by all members");
    group_create_cmd->add_option("--from", group_from, "earliest, latest or a message id: the group's first message");
    auto* group_info_cmd = group_cmd->add_subcommand("info", "show a group: members, settings, progress");
    group_info_cmd->add_option("TOPIC", name, "topic")->required();
    group_info_cmd->add_option("NAME", sub_name, "group name")->required();
    group_info_cmd->add_flag("--json", json, "JSON output");
    auto* group_delete_cmd = group_cmd->add_subcommand("delete", "delete a group that has no members");
    group_delete_cmd->add_option("TOPIC", name, "topic")->required();
    group_delete_cmd->add_option("NAME", sub_name, "group name")->required();
    auto* group_list_cmd = group_cmd->add_subcommand("list", "list a topic's groups");
    group_list_cmd->add_option("TOPIC", name, "topic")->required();
    group_list_cmd->add_flag("--json", json, "JSON output");

    auto* dlq_cmd = app.add_subcommand("dlq", "dead letters of a topic (kept in the topic <TOPIC>.dlq)");
    dlq_cmd->require_subcommand(1);
    auto* dlq_list_cmd = dlq_cmd->add_subcommand("list", "list the dead letters not replayed yet");
    dlq_list_cmd->add_option("TOPIC", name, "topic")->required();
    dlq_list_cmd->add_flag("--json", json, "JSON output");
    std::optional<uint64_t> replay_id;
    auto* dlq_replay_cmd = dlq_cmd->add_subcommand("replay", "publish dead letters to their topic again");
    dlq_replay_cmd->add_option("TOPIC", name, "topic")->required();
    dlq_replay_cmd->add_option("--id", replay_id, "only the dead letter with this id (as `dlq list` shows it)")->check(whole_number);

    cli::BridgeSettings bridge_given;
    std::vector<std::string> bridge_out, bridge_in;
    std::string bridge_config;
    auto* archive_cmd = app.add_subcommand("archive", "archived topics: their files on disk");
    archive_cmd->require_subcommand(1);
    auto* archive_info_cmd = archive_cmd->add_subcommand("info", "files, bytes, first and last id and time");
    archive_info_cmd->add_option("TOPIC", name, "topic")->required();
    archive_info_cmd->add_flag("--json", json, "JSON output");
    auto* archive_verify_cmd = archive_cmd->add_subcommand("verify", "check every record's checksum (exit status 1 if damaged)");
    archive_verify_cmd->add_option("TOPIC", name, "topic")->required();

    auto* bridge_cmd = app.add_subcommand("bridge", "carry topics to and from NATS JetStream (runs until SIGTERM)");
    bridge_cmd->add_option("--config", bridge_config, "FILE: read the [bridge] section of this TOML file (options given here win)");
    bridge_cmd->add_option("--nats", bridge_given.nats_url, "URL of the NATS server (default nats://127.0.0.1:4222; tls:// for TLS)");
    bridge_cmd->add_option("--creds", bridge_given.creds, "FILE: NATS user credentials (JWT and NKey seed)");
    bridge_cmd->add_option("--user", bridge_given.user, "NATS user");
    bridge_cmd->add_option("--password", bridge_given.password, "NATS password");
    bridge_cmd->add_option("--token", bridge_given.token, "NATS token");
    bridge_cmd->add_option("--tls-ca", bridge_given.tls_ca, "FILE: CA certificates to verify the server's TLS certificate with");
    bridge_cmd->add_option("--out", bridge_out, "TOPIC[:SUBJECT]: forward a local topic to a JetStream subject (repeatable)")
        ->allow_extra_args(false);
    bridge_cmd->add_option("--in", bridge_in, "SUBJECT[:TOPIC]: deliver a JetStream subject into a local topic (repeatable)")
        ->allow_extra_args(false);
    bridge_cmd->add_option("--stream", bridge_given.stream, "NAME: create this stream for the --out subjects if it does not exist");
    bridge_cmd->add_option("--name", bridge_given.name, "the bridge's name: its durable subscription and consumers (default bridge)");
    bridge_cmd->add_option("--metrics", bridge_given.metrics, "[HOST:]PORT: serve the bridge's Prometheus metrics there");
    bridge_cmd->add_option("--window", bridge_given.window, "outbound publishes awaiting JetStream's acknowledgment (default 1024)")
        ->check(CLI::Range(1, 65536));

    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --help-all, --version
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return kExitUsage;
    }

    shmbus::TopicConfig config;
    std::optional<shmbus::ArchiveSettings> create_archive;
    if (*create) {
        int rc = 0;
        config = create_config(create_options, rc);
        create_archive = archive_settings(create_options, config, rc);
        if (rc != 0) return rc;
    }
    std::chrono::nanoseconds publish_timeout = std::chrono::seconds(30);
    std::vector<shmbus::Header> headers;
    if (*pub_cmd) {
        int rc = 0;
        if (auto t = pub_timeout.parse("timeout", rc)) publish_timeout = *t;
        headers = parse_headers(header_texts, rc);
        if (rc != 0) return rc;
        if (seq_opt->count() != 0 && pub_settings.producer.empty()) {
            std::cerr << "shmbus: --seq needs --producer NAME\n";
            return kExitUsage;
        }
        if (!pub_settings.producer.empty())
            if (auto st = shmbus::validate_producer_name(pub_settings.producer); !st) {
                std::cerr << "shmbus: " << st.error().message << "\n";
                return kExitUsage;
            }
        pub_settings.timeout = publish_timeout;
    }
    auto parse_rate_option = [](const std::string& text, int& rc) -> std::optional<shmbus::RateLimit> {
        if (text.empty()) return std::nullopt;
        auto r = parse_rate(text);
        if (!r) {
            std::cerr << "shmbus: invalid rate '" << text << "' (N/s[:BURST], e.g. 100/s or 100/s:10; also /m and /h)\n";
            rc = kExitUsage;
        }
        return r;
    };
    shmbus::GroupSettings create_group_settings;
    shmbus::SubscribeOptions group_start;
    if (*group_create_cmd) {
        int rc = 0;
        create_group_options.apply(create_group_settings, rc);
        if (auto r = parse_rate_option(create_group_rate, rc)) create_group_settings.rate = *r;
        parse_from(group_from, group_start, rc);
        if (rc != 0) return rc;
    }
    shmbus::SubscribeOptions sub_options;
    if (*sub_cmd) {
        int rc = 0;
        sub_options.durable_name = durable;
        if (!since.empty() && sub_cmd->get_option("--from")->count() != 0) {
            std::cerr << "shmbus: sub: --from and --since exclude each other\n";
            return kExitUsage;
        }
        if (auto t = start_time(from, since, rc)) {
            sub_options.from = shmbus::StartFrom::time;
            sub_options.from_time_ns = *t;
        } else if (rc == 0) {
            parse_from(from, sub_options, rc);
        }
        if (rc != 0) return rc;
        if (group.empty() && group_options.given()) {
            std::cerr << "shmbus: sub: --window, --visibility, --max-deliveries and --backoff need --group\n";
            return kExitUsage;
        }
        if (group.empty() && !exec.empty()) {
            std::cerr << "shmbus: sub: --exec needs --group (a command's exit status acks or nacks its message)\n";
            return kExitUsage;
        }
        if (exec.empty() && parallel != 1) {
            std::cerr << "shmbus: sub: --parallel needs --exec\n";
            return kExitUsage;
        }
        if (!group.empty() && !durable.empty()) {
            std::cerr << "shmbus: sub: --durable and --group exclude each other\n";
            return kExitUsage;
        }
        sub_options.group = group;
        group_options.apply(sub_options.group_settings, rc);
        if (auto r = parse_rate_option(rate, rc)) (group.empty() ? sub_options.rate : sub_options.group_settings.rate) = *r;
        if (rc != 0) return rc;
    }

    shmbus::Client::LiveSettings live_settings;
    if (*set) {
        int rc = 0;
        auto duration_or_off = [&](const DurationOption& o, const char* what) -> std::optional<std::chrono::nanoseconds> {
            if (o.text == "off" || o.text == "never") return std::chrono::nanoseconds(0);
            return o.parse(what, rc);
        };
        if (!set_on_full.empty()) live_settings.on_full = set_on_full == "fail" ? shmbus::OnFull::fail : shmbus::OnFull::block;
        live_settings.unblock_timeout = duration_or_off(set_unblock, "unblock-timeout");
        live_settings.expire_detached = duration_or_off(set_expire, "expire-detached");
        if (rc != 0) return rc;
        if (!live_settings.on_full && !live_settings.unblock_timeout && !live_settings.expire_detached) {
            std::cerr << "shmbus: topic set: name a setting (--on-full, --unblock-timeout, --expire-detached)\n";
            return kExitUsage;
        }
    }
    // Names are checked before anything talks to shmbusd: a bad one is a usage error.
    if (!name.empty())
        if (auto st = shmbus::validate_topic_name(name); !st) return fail(st.error());
    for (const std::string* n : {&sub_name, &durable, &group})
        if (!n->empty())
            if (auto st = shmbus::validate_subscription_name(*n); !st) return fail(st.error());

    shmbus::ClientOptions options;
    options.dir = dir;
    options.name = "shmbus-cli";
    // connect_wait: ClientOptions' default (2 s), so a shmbusd started a moment ago has time to listen.
    {
        int rc = 0;
        if (auto w = wait.parse("wait", rc)) options.connect_wait = std::chrono::duration_cast<std::chrono::milliseconds>(*w);
        if (rc != 0) return rc;
    }
    if (*gc_cmd) {
        auto client = shmbus::Client::connect(options);
        if (!client && client.error().code != shmbus::Errc::daemon_not_running) return fail(client.error());
        return gc(client, json);
    }
    cli::BridgeSettings bridge_settings;
    if (*bridge_cmd) {
        if (!cli::bridge_available()) {
            std::cerr << "shmbus: this build has no bridge (it needs libnats-dev)\n";
            return kExitError;
        }
        if (!bridge_config.empty() && !cli::load_bridge_config(bridge_config, bridge_settings)) return kExitUsage;
        cli::merge_bridge_settings(bridge_given, *bridge_cmd, bridge_settings);
        if (!cli::parse_mappings(bridge_out, "--out", bridge_settings.out) || !cli::parse_mappings(bridge_in, "--in", bridge_settings.in))
            return kExitUsage;
    }
    auto client = shmbus::Client::connect(options);
    if (!client) return fail(client.error());
    if (*bridge_cmd) return cli::run_bridge(*client, bridge_settings);

    if (*create) {
        const bool existed = client->topic_stats(name).has_value();
        if (auto st = client->create_topic(name, config); !st) return fail(st.error());
        if (create_archive) {
            if (auto st = client->set_archive(name, *create_archive); !st) {
                // A create that fails leaves nothing: the topic made a moment ago goes again.
                if (!existed) (void)client->delete_topic(name);
                return fail(st.error());
            }
        }
        return 0;
    }
    if (*archive_info_cmd) return cli::archive_info(*client, name, json);
    if (*archive_verify_cmd) return cli::archive_verify(*client, name);
    if (*list) return topic_list(*client, json);
    if (*sub_list) return subscription_list(*client, name, json);
    if (*sub_delete) {
        if (auto st = client->delete_subscription(name, sub_name); !st) return fail(st.error());
        return 0;
    }
    if (*info) return topic_info(*client, name, json);
    if (*del) {
        if (auto st = client->delete_topic(name, force); !st) return fail(st.error());
        return 0;
    }
    if (*set) {
        if (auto st = client->set_topic(name, live_settings); !st) return fail(st.error());
        return 0;
    }
    if (*pub_cmd) return pub(*client, name, messages, headers, pub_settings);
    if (*sub_cmd && !exec.empty()) return sub_exec(*client, name, std::move(sub_options), exec, parallel, count);
    if (*sub_cmd) return sub(*client, name, std::move(sub_options), count, format);
    if (*group_create_cmd) return group_create(*client, name, sub_name, create_group_settings, group_start);
    if (*group_info_cmd) return group_info(*client, name, sub_name, json);
    if (*group_delete_cmd) return group_delete(*client, name, sub_name);
    if (*group_list_cmd) return group_list(*client, name, json);
    if (*dlq_list_cmd) return dlq_list(*client, name, json);
    if (*dlq_replay_cmd) return dlq_replay(*client, name, replay_id);
    return kExitUsage;
}
