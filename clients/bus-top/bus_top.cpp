// bus-top: a live view of a shmbus bus, in the manner of top. One row per topic (rates, depth,
// publishers, subscriptions, the slowest lag of its subscriptions and groups, blocked publishes,
// losses); the selected topic's subscriptions and consumer groups below. Rates are differences
// between two samples (sampler.h).
//   bus-top [--dir DIR] [--interval DURATION] [--sort name|rate|lag|depth] [--once] [--json]
// Exit status: 0, 1 the bus could not be read, 2 invalid usage.
#include <CLI/CLI.hpp>
#include <curses.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sampler.h"
#include "shmbus/shmbus.h"
#include "shmbus/version.h"

namespace {

using namespace bus_top;

enum class SortKey { name, rate, lag, depth };

void sort_topics(std::vector<TopicView>& topics, SortKey key) {
    std::stable_sort(topics.begin(), topics.end(), [key](const TopicView& a, const TopicView& b) {
        switch (key) {
            case SortKey::rate: return a.messages_per_s > b.messages_per_s;
            case SortKey::lag: return a.slowest_lag > b.slowest_lag;
            case SortKey::depth: return a.depth_bytes > b.depth_bytes;
            case SortKey::name: break;
        }
        return a.name < b.name;
    });
}

const char* sort_name(SortKey k) {
    switch (k) {
        case SortKey::rate: return "rate";
        case SortKey::lag: return "lag";
        case SortKey::depth: return "depth";
        case SortKey::name: break;
    }
    return "name";
}

std::string human(double v, const char* unit) {
    const char* prefixes[] = {"", "k", "M", "G", "T"};
    int i = 0;
    while (v >= 1000 && i < 4) v /= 1000, ++i;
    char buf[32];
    std::snprintf(buf, sizeof buf, i == 0 ? "%.0f%s%s" : "%.1f%s%s", v, prefixes[i], unit);
    return buf;
}

std::string bytes_text(uint64_t b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB"};
    double v = double(b);
    int i = 0;
    while (v >= 1024 && i < 3) v /= 1024, ++i;
    char buf[32];
    std::snprintf(buf, sizeof buf, i == 0 ? "%.0f %s" : "%.1f %s", v, units[i]);
    return buf;
}

std::string uptime_text(const shmbus::BusInfo& bus) {
    const auto s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - bus.started).count();
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lldd %02lld:%02lld:%02lld", (long long)(s / 86400), (long long)(s / 3600 % 24),
                  (long long)(s / 60 % 60), (long long)(s % 60));
    return buf;
}

// The view as lines of text; `trouble[i]` tells whether line i shows a problem. Shared by the
// live screen and --once.
struct Lines {
    std::vector<std::string> text;
    std::vector<bool> trouble;
    std::size_t first_topic = 0;  // index of the first topic row
    void add(std::string line, bool bad = false) {
        text.push_back(std::move(line));
        trouble.push_back(bad);
    }
};

std::string header_line(const Snapshot& s, const std::string& dir) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "shmbusd pid %d  version %s  up %s  clients %u  topics %u  patterns %u  bus %s", s.bus.daemon_pid,
                  s.bus.version.c_str(), uptime_text(s.bus).c_str(), s.bus.clients, s.bus.topics, s.bus.pattern_subscriptions, dir.c_str());
    return buf;
}

constexpr const char* kTopicColumns = "TOPIC                     MSG/S     MB/S       DEPTH  DEPTH%  PUBS  SUBS   MAX LAG  BLOCKED      LOST";

std::string topic_line(const TopicView& t) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-22.22s %8s %8.2f %11s %6.1f%% %5u %5zu %9llu %8llu %9llu", t.name.c_str(),
                  human(t.messages_per_s, "").c_str(), t.bytes_per_s / 1e6, bytes_text(t.depth_bytes).c_str(), t.depth_percent,
                  t.publishers, t.subscriptions.size(), (unsigned long long)t.slowest_lag, (unsigned long long)t.full_refusals,
                  (unsigned long long)t.lost);
    return buf;
}

constexpr const char* kSubscriptionColumns =
    "  SUBSCRIPTION          KIND        PID      ALIVE      LAG   LAG BYTES    MSG/S   PROC P50   PROC P99   LAST ACTIVITY";

std::string subscription_line(const SubscriptionView& s) {
    char buf[256];
    const std::string idle = s.idle_s ? std::to_string(int64_t(*s.idle_s)) + " s ago" : "-";
    auto proc = [](const std::optional<uint64_t>& ns) { return ns ? "<=" + shmbus::short_duration(*ns) : std::string("-"); };
    std::snprintf(buf, sizeof buf, "  %-20.20s %-9s %7d %8s %8llu %11s %8s %10s %10s   %s", s.name.c_str(), s.kind.c_str(), s.pid,
                  s.alive ? "yes" : "no", (unsigned long long)s.lag, s.lag_bytes ? bytes_text(*s.lag_bytes).c_str() : "-",
                  human(s.rate, "").c_str(), proc(s.processing_p50_ns).c_str(), proc(s.processing_p99_ns).c_str(), idle.c_str());
    return buf;
}

constexpr const char* kGroupColumns =
    "  GROUP                 MEMBERS      LAG  IN FLIGHT  WAIT RETRY  WAIT KEY   ACKED/S  NACKED/S  DEAD-LETTERED   EXPIRED  "
    "OLDEST UNSETTLED";

std::string group_line(const GroupView& g) {
    char buf[256];
    const std::string oldest = g.oldest_unsettled_s ? shmbus::short_duration(uint64_t(*g.oldest_unsettled_s * 1e9)) : "-";
    std::snprintf(buf, sizeof buf, "  %-20.20s %8zu %8llu %10llu %11llu %9llu %9s %9s %14llu %9llu  %s", g.name.c_str(), g.members,
                  (unsigned long long)g.lag, (unsigned long long)g.in_flight, (unsigned long long)g.waiting_retry,
                  (unsigned long long)g.waiting_key, human(g.acked_per_s, "").c_str(), human(g.nacked_per_s, "").c_str(),
                  (unsigned long long)g.dead_lettered, (unsigned long long)g.expired, oldest.c_str());
    return buf;
}

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
    return out;
}

constexpr const char* kRequestColumns =
    "     REQ/S  REPLIES/S  RESPONDERS  TIMED OUT  NO RESPONDER  RESPONDER DIED  LATE REPLIES";

std::string request_line(const RequestView& r) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "  %8s %10s %11u %10llu %13llu %15llu %13llu", human(r.requests_per_s, "").c_str(),
                  human(r.replies_per_s, "").c_str(), r.responders, (unsigned long long)r.timed_out,
                  (unsigned long long)r.no_responder, (unsigned long long)r.responder_died, (unsigned long long)r.late_replies);
    return buf;
}

Lines render(const Snapshot& s, const std::string& dir, std::optional<std::size_t> selected) {
    Lines out;
    out.add(header_line(s, dir));
    out.add("");
    out.add(kTopicColumns);
    out.first_topic = out.text.size();
    for (const auto& t : s.topics) out.add(topic_line(t), !t.trouble().empty());
    for (const auto& e : s.errors) out.add("! " + e, true);
    if (selected && *selected < s.topics.size()) {
        const TopicView& t = s.topics[*selected];
        out.add("");
        out.add("subscriptions of " + t.name + " (processing: delivery to ack, sampled)");
        out.add(kSubscriptionColumns);
        for (const auto& sub : t.subscriptions) out.add(subscription_line(sub), !sub.alive || sub.lag_growing);
        if (!t.groups.empty()) {
            out.add("");
            out.add("groups of " + t.name);
            out.add(kGroupColumns);
            for (const auto& g : t.groups)
                out.add(group_line(g), g.lag_growing || g.overdue() || (g.members == 0 && (g.lag > 0 || g.waiting_retry > 0)));
        }
        if (!t.patterns.empty()) {
            out.add("");
            out.add("pattern subscriptions covering " + t.name + ": " + join(t.patterns));
        }
        if (t.requests.service) {
            out.add("");
            out.add("requests to " + t.name);
            out.add(kRequestColumns);
            out.add(request_line(t.requests), t.requests.failed_now > 0);
        }
        for (const auto& why : t.trouble()) out.add("  ! " + why, true);
    }
    return out;
}

nlohmann::json to_json(const Snapshot& s, const std::string& dir) {
    nlohmann::json topics = nlohmann::json::array();
    for (const auto& t : s.topics) {
        nlohmann::json subs = nlohmann::json::array();
        for (const auto& sub : t.subscriptions)
            subs.push_back({{"name", sub.name == "-" ? "" : sub.name},
                            {"kind", sub.kind},
                            {"pid", sub.pid},
                            {"alive", sub.alive},
                            {"lag", sub.lag},
                            {"lag_bytes", sub.lag_bytes ? nlohmann::json(*sub.lag_bytes) : nlohmann::json(nullptr)},
                            {"messages_per_s", sub.rate},
                            {"idle_s", sub.idle_s ? nlohmann::json(*sub.idle_s) : nlohmann::json(nullptr)},
                            {"processing_p50_ns", sub.processing_p50_ns ? nlohmann::json(*sub.processing_p50_ns) : nlohmann::json(nullptr)},
                            {"processing_p99_ns", sub.processing_p99_ns ? nlohmann::json(*sub.processing_p99_ns) : nlohmann::json(nullptr)}});
        nlohmann::json groups = nlohmann::json::array();
        for (const auto& g : t.groups)
            groups.push_back({{"name", g.name},
                              {"members", g.members},
                              {"lag", g.lag},
                              {"in_flight", g.in_flight},
                              {"waiting_retry", g.waiting_retry},
                              {"waiting_key", g.waiting_key},
                              {"expired", g.expired},
                              {"acked_per_s", g.acked_per_s},
                              {"nacked_per_s", g.nacked_per_s},
                              {"dead_lettered", g.dead_lettered},
                              {"lag_growing", g.lag_growing},
                              {"oldest_unsettled_s", g.oldest_unsettled_s ? nlohmann::json(*g.oldest_unsettled_s) : nlohmann::json(nullptr)}});
        topics.push_back({{"name", t.name},
                          {"messages_per_s", t.messages_per_s},
                          {"bytes_per_s", t.bytes_per_s},
                          {"depth_bytes", t.depth_bytes},
                          {"depth_percent", t.depth_percent},
                          {"publishers", t.publishers},
                          {"subscription_count", t.subscriptions.size()},
                          {"slowest_lag", t.slowest_lag},
                          {"full_refusals", t.full_refusals},
                          {"blocked_in_interval", t.blocked_now},
                          {"waiting_publishers", t.waiting_publishers},
                          {"waited_s_in_interval", t.waited_s},
                          {"held_back_by", t.held_back_by.empty() ? nlohmann::json(nullptr) : nlohmann::json(t.held_back_by)},
                          {"oldest_unsettled_s", t.oldest_unsettled_s ? nlohmann::json(*t.oldest_unsettled_s) : nlohmann::json(nullptr)},
                          {"lost", t.lost},
                          {"trouble", t.trouble()},
                          {"subscriptions", std::move(subs)},
                          {"groups", std::move(groups)},
                          {"pattern_subscriptions", t.patterns},
                          {"requests", t.requests.service ? nlohmann::json{{"requests_per_s", t.requests.requests_per_s},
                                                                           {"replies_per_s", t.requests.replies_per_s},
                                                                           {"responders", t.requests.responders},
                                                                           {"timed_out", t.requests.timed_out},
                                                                           {"no_responder", t.requests.no_responder},
                                                                           {"responder_died", t.requests.responder_died},
                                                                           {"late_replies", t.requests.late_replies}}
                                                          : nlohmann::json(nullptr)}});
    }
    const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - s.bus.started);
    return {{"supervisor",
             {{"pid", s.bus.daemon_pid}, {"version", s.bus.version}, {"uptime_s", uptime.count()}, {"clients", s.bus.clients},
              {"topics", s.bus.topics}, {"pattern_subscriptions", s.bus.pattern_subscriptions}, {"dir", dir}}},
            {"interval_s", s.interval_s},
            {"topics", std::move(topics)},
            {"errors", s.errors}};
}

constexpr const char* kHelp = "q quit  up/down select  enter details  s sort  +/- interval  h help";

// The live screen: redraws every interval, or at once on a key.
int run_screen(Sampler& sampler, const std::string& dir, std::chrono::milliseconds interval, SortKey key) {
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    if (has_colors()) {
        start_color();
        use_default_colors();
        init_pair(1, COLOR_RED, -1);
        init_pair(2, COLOR_BLACK, COLOR_CYAN);
    }
    std::size_t selected = 0;
    bool details = true, help = false;
    std::optional<Snapshot> last;
    int rc = 0;
    auto next_sample = Clock::now();
    for (bool quit = false; !quit;) {
        if (Clock::now() >= next_sample) {
            auto snap = sampler.sample();
            if (!snap) {
                rc = 1;
                endwin();
                std::cerr << "bus-top: " << snap.error().message << "\n";
                return rc;
            }
            sort_topics(snap->topics, key);
            last = std::move(*snap);
            next_sample = Clock::now() + interval;
        }
        if (!last->topics.empty()) selected = std::min(selected, last->topics.size() - 1);
        const Lines lines = render(*last, dir, details && !last->topics.empty() ? std::optional(selected) : std::nullopt);
        erase();
        const int rows = LINES, cols = COLS;
        for (std::size_t i = 0; i < lines.text.size() && int(i) < rows - 1; ++i) {
            const bool is_selected = !last->topics.empty() && i == lines.first_topic + selected;
            const int attr = is_selected ? COLOR_PAIR(2) : lines.trouble[i] ? (COLOR_PAIR(1) | A_BOLD) : A_NORMAL;
            attron(attr);
            mvaddnstr(int(i), 0, lines.text[i].c_str(), cols);
            attroff(attr);
        }
        char status[160];
        std::snprintf(status, sizeof status, "%s   [sort: %s, every %lld ms]", help ? kHelp : "h help  q quit", sort_name(key),
                      (long long)interval.count());
        attron(A_REVERSE);
        mvaddnstr(rows - 1, 0, status, cols);
        attroff(A_REVERSE);
        refresh();
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_sample - Clock::now());
        timeout(int(std::max<int64_t>(0, wait.count())));
        switch (getch()) {
            case 'q': case 'Q': quit = true; break;
            case KEY_UP: case 'k': if (selected > 0) --selected; break;
            case KEY_DOWN: case 'j': ++selected; break;
            case '\n': case KEY_ENTER: details = !details; break;
            case 's': key = SortKey((int(key) + 1) % 4); sort_topics(last->topics, key); break;
            case '+': interval = std::min(interval * 2, std::chrono::milliseconds(60'000)); break;
            case '-': interval = std::max(interval / 2, std::chrono::milliseconds(100)); break;
            case 'h': case '?': help = !help; break;
            default: break;
        }
    }
    endwin();
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"bus-top: live view of a shmbus bus"};
    app.set_version_flag("--version", std::string("bus-top ") + shmbus::kVersion);
    std::string dir, interval_text = "1s", sort = "name";
    bool once = false, json = false;
    app.add_option("--dir", dir, "bus directory (default: $SHMBUS_DIR, then a per-user runtime directory)");
    app.add_option("--interval", interval_text, "time between samples, e.g. 500ms (default 1s)");
    app.add_option("--sort", sort, "name, rate, lag or depth")->check(CLI::IsMember({"name", "rate", "lag", "depth"}));
    app.add_flag("--once", once, "print one plain-text snapshot (rates over one interval) and exit");
    app.add_flag("--json", json, "print one JSON document (rates over one interval) and exit");
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        (void)app.exit(e);
        return 2;
    }
    const auto interval = shmbus::parse_duration(interval_text);
    if (!interval || *interval < std::chrono::milliseconds(10)) {
        std::cerr << "bus-top: invalid interval '" << interval_text << "' (use 10ms or more: 500ms, 2s)\n";
        return 2;
    }
    const SortKey key = sort == "rate" ? SortKey::rate : sort == "lag" ? SortKey::lag : sort == "depth" ? SortKey::depth : SortKey::name;
    const auto period = std::chrono::duration_cast<std::chrono::milliseconds>(*interval);

    shmbus::ClientOptions options;
    options.dir = dir;
    options.name = "bus-top";
    auto client = shmbus::Client::connect(options);
    if (!client) {
        std::cerr << "bus-top: " << client.error().message << "\n";
        return 1;
    }
    Sampler sampler(*client);
    if (!once && !json) return run_screen(sampler, client->dir(), period, key);

    if (auto first = sampler.sample(); !first) {
        std::cerr << "bus-top: " << first.error().message << "\n";
        return 1;
    }
    std::this_thread::sleep_for(period);
    auto snap = sampler.sample();
    if (!snap) {
        std::cerr << "bus-top: " << snap.error().message << "\n";
        return 1;
    }
    sort_topics(snap->topics, key);
    if (json) {
        std::cout << to_json(*snap, client->dir()).dump(2) << "\n";
        return snap->errors.empty() ? 0 : 1;
    }
    const Lines lines = render(*snap, client->dir(), std::nullopt);
    for (const auto& l : lines.text) std::cout << l << "\n";
    for (const auto& t : snap->topics) {
        std::cout << "\n" << "subscriptions of " << t.name << "\n" << kSubscriptionColumns << "\n";
        for (const auto& s : t.subscriptions) std::cout << subscription_line(s) << "\n";
        if (!t.groups.empty()) {
            std::cout << "\n" << "groups of " << t.name << "\n" << kGroupColumns << "\n";
            for (const auto& g : t.groups) std::cout << group_line(g) << "\n";
        }
        if (!t.patterns.empty()) std::cout << "\n" << "pattern subscriptions covering " << t.name << ": " << join(t.patterns) << "\n";
        if (t.requests.service) std::cout << "\n" << "requests to " << t.name << "\n" << kRequestColumns << "\n" << request_line(t.requests) << "\n";
        for (const auto& why : t.trouble()) std::cout << "  ! " << why << "\n";
    }
    return snap->errors.empty() ? 0 : 1;
}
