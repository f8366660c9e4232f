#include "cli/work.h"

#include <memory>

#include "cli/command.h"

#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

namespace cli {

namespace {

// The durable subscription of TOPIC.dlq that records how far its dead letters were replayed, and
// the header of the marker that records one replayed out of order (`dlq replay --id`).
constexpr const char* kReplayCursor = "replay";
constexpr std::string_view kReplayedMarker = "shmbus-replayed";

std::string dlq_of(const std::string& topic) { return topic + ".dlq"; }

std::optional<double> parse_decimal(std::string_view text) {
    if (text.empty() || text.size() > 32) return std::nullopt;
    const std::string s(text);
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    if (errno != 0 || end != s.c_str() + s.size() || !(v > 0) || v > 1e9) return std::nullopt;
    return v;
}

}  // namespace

std::optional<shmbus::RateLimit> parse_rate(std::string_view text) {
    shmbus::RateLimit rate;
    if (const auto colon = text.find(':'); colon != std::string_view::npos) {
        const auto burst = parse_whole_number(std::string(text.substr(colon + 1)));
        if (!burst || *burst == 0 || *burst > 1'000'000) return std::nullopt;
        rate.burst = uint32_t(*burst);
        text = text.substr(0, colon);
    }
    double per = 1;
    if (const auto slash = text.find('/'); slash != std::string_view::npos) {
        const std::string_view unit = text.substr(slash + 1);
        if (unit == "s") per = 1;
        else if (unit == "m") per = 60;
        else if (unit == "h") per = 3600;
        else return std::nullopt;
        text = text.substr(0, slash);
    }
    const auto n = parse_decimal(text);
    if (!n) return std::nullopt;
    rate.per_second = *n / per;
    return rate;
}

std::string rate_text(const shmbus::RateLimit& rate) {
    if (!(rate.per_second > 0)) return "unlimited";
    char text[64];
    std::snprintf(text, sizeof text, "%g/s:%u", rate.per_second, rate.burst);
    return text;
}

void GroupOptions::add_to(CLI::App& cmd, const CLI::Validator& whole_number) {
    cmd.add_option("--window", window, "unsettled messages a member may hold (default 64, at most 256)")->check(whole_number);
    cmd.add_option("--visibility", visibility.text, "redeliver a message not settled within this (default 30s)");
    cmd.add_option("--max-deliveries", max_deliveries, "attempts before <topic>.dlq (default 5, 0: unlimited)")->check(whole_number);
    cmd.add_option("--backoff", backoff, "retry delays INITIAL..MAX after a nack (default 100ms..30s)");
    cmd.add_flag("--dead-letter-expired", dead_letter_expired,
                 "a message whose time to live passes before a member gets it goes to <topic>.dlq (reason: expired) "
                 "instead of being dropped");
    cmd.add_flag("--ordered-by-key", ordered_by_key,
                 "messages of one key are processed one at a time, in publish order, across all members (a retry "
                 "holds back only its own key); fixed when the group is created");
}

void GroupOptions::apply(shmbus::GroupSettings& g, int& rc) const {
    if (window) g.window = *window;
    if (max_deliveries) g.max_deliveries = *max_deliveries;
    if (dead_letter_expired) g.dead_letter_expired = true;
    if (ordered_by_key) g.ordered_by_key = true;
    if (auto v = visibility.parse("visibility", rc)) g.visibility = *v;
    if (backoff.empty()) return;
    const auto dots = backoff.find("..");
    const auto initial = dots == std::string::npos ? std::nullopt : shmbus::parse_duration(backoff.substr(0, dots));
    const auto max = dots == std::string::npos ? std::nullopt : shmbus::parse_duration(backoff.substr(dots + 2));
    if (!initial || !max) {
        std::cerr << "shmbus: invalid backoff '" << backoff << "' (INITIAL..MAX, e.g. 100ms..30s)\n";
        rc = kExitUsage;
        return;
    }
    g.backoff_initial = *initial;
    g.backoff_max = *max;
}

// ---- dlq ----

namespace {

// A dead letter read from TOPIC.dlq, owned (the ring may move on once it is acked).
struct DeadLetter {
    shmbus::Message message;  // for ack() only: its payload and headers may be reused by the next poll
    nlohmann::json json;      // as `sub --format json` prints it
    uint64_t id = 0;
    std::string payload;
    std::string key;  // the message's key, replayed with it
    std::vector<std::pair<std::string, std::string>> headers;
    std::optional<uint64_t> replayed_marker;  // a marker: the dead letter it records as replayed

    [[nodiscard]] std::string header(std::string_view key) const {
        for (const auto& [k, v] : headers)
            if (k == key) return v;
        return {};
    }
};

DeadLetter own(const std::string& topic, const shmbus::Message& m) {
    DeadLetter d;
    d.message = m;
    d.json = message_json(topic, m, false);
    d.id = m.id;
    d.payload = std::string(m.text());
    d.key = std::string(m.key);
    for (const shmbus::Header& h : m.headers) {
        d.headers.emplace_back(std::string(h.key), std::string(h.value));
        if (h.key == kReplayedMarker) d.replayed_marker = parse_whole_number(std::string(h.value));
    }
    return d;
}

// Everything `sub` delivers now, up to what was published when it started.
std::vector<DeadLetter> read_all(shmbus::Subscriber& sub, int& rc) {
    std::vector<DeadLetter> out;
    for (;;) {
        const auto r = sub.poll([&](const shmbus::Message& m) { out.push_back(own(sub.topic(), m)); });
        if (r.status == shmbus::ReceiveStatus::corrupt) {
            std::cerr << "shmbus: topic '" << sub.topic() << "' is corrupt\n";
            rc = kExitError;
            break;
        }
        if (r.status != shmbus::ReceiveStatus::ok) break;
    }
    return out;
}

// Ids of dead letters recorded as replayed by a marker.
std::set<uint64_t> replayed_by_markers(const std::vector<DeadLetter>& letters) {
    std::set<uint64_t> out;
    for (const auto& d : letters)
        if (d.replayed_marker) out.insert(*d.replayed_marker);
    return out;
}

// The first id the replay cursor has not passed (0 if it does not exist yet).
uint64_t replayed_up_to(const shmbus::TopicStats& dlq) {
    for (const auto& s : dlq.subscriptions)
        if (s.durable && s.name == kReplayCursor) return s.next_id;
    return 0;
}

// The dead-letter topic's figures; none if it does not exist (rc stays 0) or cannot be read (rc set).
std::optional<shmbus::TopicStats> dlq_stats(shmbus::Client& client, const std::string& dlq, int& rc) {
    auto stats = client.topic_stats(dlq);
    if (stats) return std::move(*stats);
    if (stats.error().code != shmbus::Errc::topic_not_found) rc = fail(stats.error());
    return std::nullopt;
}

// Up to `limit` bytes of `bytes` on one line: printable ASCII as it is, anything else (a newline
// too) as \xNN, and how many bytes were left out.
std::string one_line(std::string_view bytes, std::size_t limit) {
    std::string out;
    for (std::size_t i = 0; i < bytes.size() && i < limit; ++i) {
        const auto c = static_cast<unsigned char>(bytes[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += char(c);
        } else {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        }
    }
    if (bytes.size() > limit) out += "... (" + std::to_string(bytes.size()) + " bytes)";
    return out;
}

// One line per dead letter: its origin and reason, then its payload (--json has it whole).
void print_dead_letter(const DeadLetter& d) {
    std::printf("%llu origin %s#%s attempts %s last delivery %s reason: %s\n  payload: %s\n", (unsigned long long)d.id,
                d.header(shmbus::kDeadLetterTopic).c_str(), d.header(shmbus::kDeadLetterId).c_str(),
                d.header(shmbus::kDeadLetterAttempts).c_str(), d.header(shmbus::kDeadLetterLastDelivery).c_str(),
                one_line(d.header(shmbus::kDeadLetterReason), 1024).c_str(), one_line(d.payload, 200).c_str());
}

}  // namespace

int dlq_list(shmbus::Client& client, const std::string& topic, bool json) {
    const std::string dlq = dlq_of(topic);
    int rc = 0;
    const auto stats = dlq_stats(client, dlq, rc);
    if (!stats) {
        if (rc != 0) return rc;
        if (json) std::cout << "[]\n";
        else std::printf("topic %s has no dead letters\n", topic.c_str());
        return 0;
    }
    const uint64_t first = replayed_up_to(*stats);
    shmbus::SubscribeOptions options;
    options.from = shmbus::StartFrom::earliest;
    auto sub = client.subscribe(dlq, options);
    if (!sub) return fail(sub.error());
    const auto letters = read_all(*sub, rc);
    const auto replayed = replayed_by_markers(letters);
    nlohmann::json out = nlohmann::json::array();
    std::size_t listed = 0;
    for (const auto& d : letters) {
        if (d.id < first || d.replayed_marker || replayed.count(d.id) != 0) continue;
        ++listed;
        if (json) out.push_back(d.json);
        else print_dead_letter(d);
    }
    if (json) std::cout << out.dump(2) << "\n";
    else if (listed == 0) std::printf("topic %s has no dead letters waiting for replay\n", topic.c_str());
    return rc;
}

int dlq_replay(shmbus::Client& client, const std::string& topic, std::optional<uint64_t> id) {
    const std::string dlq = dlq_of(topic);
    int rc = 0;
    if (!dlq_stats(client, dlq, rc)) {
        if (rc != 0) return rc;
        if (!id) return 0;
        std::cerr << "shmbus: topic " << topic << " has no dead letters\n";
        return kExitError;
    }
    auto pub = client.publisher(topic);
    if (!pub) return fail(pub.error());
    shmbus::SubscribeOptions options;
    options.durable_name = kReplayCursor;
    options.from = shmbus::StartFrom::earliest;
    options.auto_ack = false;  // acked once replayed: a replay killed midway repeats, never loses
    auto sub = client.subscribe(dlq, options);
    if (!sub) return fail(sub.error());
    const auto letters = read_all(*sub, rc);
    if (rc != 0) return rc;
    const auto replayed = replayed_by_markers(letters);
    std::size_t count = 0;
    bool found = false;
    // The cursor moves past the longest run of letters that are all replayed (or markers).
    const shmbus::Message* settled_through = nullptr;
    bool run_unbroken = true;
    for (const auto& d : letters) {
        bool settled = d.replayed_marker || replayed.count(d.id) != 0;
        if (!settled && (!id || d.id == *id)) {
            std::vector<shmbus::Header> headers;
            for (const auto& [k, v] : d.headers)
                if (!shmbus::is_shmbus_header(k)) headers.push_back({k, v});
            const auto st = pub->publish(d.payload, shmbus::MessageOptions{.headers = headers, .key = d.key});
            if (st != shmbus::PublishStatus::ok) {
                std::cerr << "shmbus: replaying dead letter " << d.id << " to '" << topic << "' failed: " << shmbus::to_string(st)
                          << "\n";
                rc = kExitError;
                break;
            }
            settled = true;
            found = found || (id && d.id == *id);
            ++count;
        }
        run_unbroken = run_unbroken && settled;
        if (run_unbroken) settled_through = &d.message;
    }
    if (id && !found && rc == 0) {
        std::cerr << "shmbus: no dead letter " << *id << " waiting for replay in '" << dlq << "'\n";
        rc = kExitError;
    }
    if (settled_through != nullptr) (void)sub->ack(*settled_through);
    // One replayed out of order is recorded by a marker until the cursor passes it.
    if (found && (settled_through == nullptr || settled_through->id < *id)) {
        auto marker_pub = client.publisher(dlq);
        const std::string value = std::to_string(*id);
        const shmbus::Header marker[] = {{kReplayedMarker, value}};
        if (!marker_pub || marker_pub->publish(std::string_view(), marker) != shmbus::PublishStatus::ok) {
            std::cerr << "shmbus: dead letter " << *id << " was replayed but could not be marked so; it stays listed\n";
            rc = kExitError;
        }
    }
    std::printf("replayed %zu dead letter(s) to %s\n", count, topic.c_str());
    return rc;
}

std::optional<shmbus::RateLimit> parse_rate_option(const std::string& text, int& rc) {
    if (text.empty()) return std::nullopt;
    auto r = parse_rate(text);
    if (!r) {
        std::cerr << "shmbus: invalid rate '" << text << "' (N/s[:BURST], e.g. 100/s or 100/s:10; also /m and /h)\n";
        rc = kExitUsage;
    }
    return r;
}

namespace {

// What the group and dlq commands were given.
struct WorkArgs {
    std::string topic, group, from = "latest", rate;
    bool json = false;
    GroupOptions options;
    shmbus::GroupSettings settings;
    shmbus::SubscribeOptions start;
    std::optional<uint64_t> replay_id;
};

int check_group_create(WorkArgs& a) {
    int rc = 0;
    a.options.apply(a.settings, rc);
    if (auto r = parse_rate_option(a.rate, rc)) a.settings.rate = *r;
    parse_from(a.from, a.start, rc);
    if (rc != 0) return rc;
    const int bad = check_topic_name(a.topic);
    return bad != 0 ? bad : check_subscription_name(a.group);
}

}  // namespace

void add_work_commands(CLI::App& app, Commands& out) {
    auto a = std::make_shared<WorkArgs>();
    auto topic_and_group = [a] {
        const int rc = check_topic_name(a->topic);
        return rc != 0 ? rc : check_subscription_name(a->group);
    };
    auto topic_only = [a] { return check_topic_name(a->topic); };
    auto* group_cmd = app.add_subcommand("group", "manage consumer groups (work queues)");
    group_cmd->require_subcommand(1);
    auto* create = group_cmd->add_subcommand("create", "create a group (success if it exists with these settings)");
    create->add_option("TOPIC", a->topic, "topic")->required();
    create->add_option("NAME", a->group, "group name")->required();
    a->options.add_to(*create, whole_number());
    create->add_option("--rate", a->rate, "at most N/s[:BURST] deliveries, shared by all members");
    create->add_option("--from", a->from, "earliest, latest or a message id: the group's first message");
    out.push_back({create, [a] { return check_group_create(*a); },
                   [a](shmbus::Client& c) { return group_create(c, a->topic, a->group, a->settings, a->start); }, {}});
    auto* info = group_cmd->add_subcommand("info", "show a group: members, settings, progress");
    info->add_option("TOPIC", a->topic, "topic")->required();
    info->add_option("NAME", a->group, "group name")->required();
    info->add_flag("--json", a->json, "JSON output");
    out.push_back({info, topic_and_group, [a](shmbus::Client& c) { return group_info(c, a->topic, a->group, a->json); }, {}});
    auto* del = group_cmd->add_subcommand("delete", "delete a group that has no members");
    del->add_option("TOPIC", a->topic, "topic")->required();
    del->add_option("NAME", a->group, "group name")->required();
    out.push_back({del, topic_and_group, [a](shmbus::Client& c) { return group_delete(c, a->topic, a->group); }, {}});
    auto* list = group_cmd->add_subcommand("list", "list a topic's groups");
    list->add_option("TOPIC", a->topic, "topic")->required();
    list->add_flag("--json", a->json, "JSON output");
    out.push_back({list, topic_only, [a](shmbus::Client& c) { return group_list(c, a->topic, a->json); }, {}});

    auto* dlq_cmd = app.add_subcommand("dlq", "dead letters of a topic (kept in the topic <TOPIC>.dlq)");
    dlq_cmd->require_subcommand(1);
    auto* dlq_list_cmd = dlq_cmd->add_subcommand("list", "list the dead letters not replayed yet");
    dlq_list_cmd->add_option("TOPIC", a->topic, "topic")->required();
    dlq_list_cmd->add_flag("--json", a->json, "JSON output");
    out.push_back({dlq_list_cmd, topic_only, [a](shmbus::Client& c) { return dlq_list(c, a->topic, a->json); }, {}});
    auto* replay = dlq_cmd->add_subcommand("replay", "publish dead letters to their topic again");
    replay->add_option("TOPIC", a->topic, "topic")->required();
    replay->add_option("--id", a->replay_id, "only the dead letter with this id (as `dlq list` shows it)")->check(whole_number());
    out.push_back({replay, topic_only, [a](shmbus::Client& c) { return dlq_replay(c, a->topic, a->replay_id); }, {}});
}

}  // namespace cli
