// What outlives /dev/shm for archived topics: the durable cursors and groups persisted every second
// (cursors.toml), and, after a reboot, each archived topic made again from its state files with
// its ids continuing where they stopped.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "archive/archive.h"
#include "archives/archives.h"
#include "archives/state_files.h"
#include "control/stats.h"
#include "core/untrusted_files.h"
#include "core/wall_clock.h"
#include "groups/group.h"
#include "shmbus/names.h"
#include "supervisor/group_admin.h"
#include "supervisor/registration.h"

namespace shmbus::daemon {

namespace fs = std::filesystem;

namespace {

// The last id an archive directory holds: its newest file scanned to its last whole record.
std::optional<uint64_t> last_archived_id(int dir_fd, const std::string& topic) {
    auto files = detail::archive::list_logs(dir_fd);
    if (!files) return std::nullopt;
    for (auto f = files->rbegin(); f != files->rend(); ++f) {
        auto opened = detail::open_checked_at(dir_fd, f->name, O_RDONLY, 0, true);
        if (!opened) continue;
        const int fd = *opened;
        auto scanner = detail::archive::LogScanner::open(fd, topic, f->name);
        if (!scanner) continue;
        std::optional<uint64_t> last;
        detail::archive::StoredRecord r;
        while (scanner->next(r) == detail::archive::LogScanner::Step::record) last = r.id;
        if (last) return last;
    }
    return std::nullopt;
}

}  // namespace

void Archives::persist_cursors() {
    for (auto& [topic, a] : topics_)
        if (TopicEntry* t = registry_.find(topic)) persist_cursors(*t);
}

// What a reboot must not lose besides the archive: every durable cursor's first unacked id, the
// groups and their settings, and the next id the topic would give.
void Archives::persist_cursors(TopicEntry& t) {
    const TopicStats stats = detail::collect_stats(t.segment());
    toml::array durable, groups;
    const auto& seg = t.segment();
    for (const SubscriptionStats& s : stats.subscriptions) {
        if (!s.durable || s.name == kArchiverSubscription) continue;
        toml::table cursor{{"name", s.name}, {"next_id", int64_t(s.next_id)}};
        // Whose it is (layout 1.9): made again in its owner's objects after a reboot.
        if (seg.owner_objects() != 0 && seg.owner_object_of(s.slot) < t.owner_of.size())
            cursor.insert("owner", t.owner_of[seg.owner_object_of(s.slot)]);
        durable.push_back(std::move(cursor));
    }
    for (const GroupStats& g : stats.groups) {
        const auto r = detail::settings_record(g.settings);
        groups.push_back(toml::table{{"name", g.name},
                                     {"next_id", int64_t(g.next_id)},
                                     {"window", int64_t(r.window)},
                                     {"max_deliveries", int64_t(r.max_deliveries)},
                                     {"visibility_ns", int64_t(r.visibility_ns)},
                                     {"backoff_initial_ns", int64_t(r.backoff_initial_ns)},
                                     {"backoff_max_ns", int64_t(r.backoff_max_ns)},
                                     {"backoff_factor_x100", int64_t(r.backoff_factor_x100)},
                                     {"rate_burst", int64_t(r.rate_burst)},
                                     {"rate_interval_ns", int64_t(r.rate_interval_ns)},
                                     {"dead_letter_expired", g.settings.dead_letter_expired},
                                     {"ordered_by_key", g.settings.ordered_by_key}});
    }
    toml::table doc{{"published", int64_t(stats.published)}, {"durable", durable}, {"group", groups}};
    std::ostringstream text;
    text << doc << "\n";
    const std::string path = topic_dir(t.name()) + "/cursors.toml";
    // Unchanged cursors are not written again (a write is an fdatasync).
    if (persisted_[t.name()] == text.str()) return;
    if (auto st = write_atomically(path, text.str()); !st) {
        spdlog::warn("cannot persist the cursors of '{}': {}", t.name(), st.error().message);
        return;
    }
    persisted_[t.name()] = text.str();
}

void Archives::restore() {
    if (auto st = open(false); !st) {
        if (st.error().code != Errc::topic_not_found) spdlog::error("archived topics are unavailable: {}", st.error().message);
        return;
    }
    remove_leftover_deletions();
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(state_dir_ + "/topics", ec)) {
        const std::string topic = entry.path().filename().string();
        if (!validate_topic_name(topic) || !fs::exists(entry.path() / "topic.toml")) continue;
        if (auto st = detail::check_private_dir(entry.path().string(), "topic state directory", false); !st) {
            spdlog::error("{}; topic '{}' is not restored", st.error().message, topic);
            continue;
        }
        auto state = read_topic_state((entry.path() / "topic.toml").string());
        if (!state) {
            spdlog::error("{}; topic '{}' is not restored", state.error().message, topic);
            continue;
        }
        // A state directory used by another bus before: its topics are not this bus's to make.
        if (!state->bus_dir.empty() && state->bus_dir != command_.bus_dir) {
            spdlog::warn("archived topic '{}' in {} belongs to bus {}, not {}: left alone (give each bus its own --state-dir)",
                         topic, state_dir_, state->bus_dir, command_.bus_dir);
            continue;
        }
        if (registry_.find(topic) == nullptr) recreate(topic, state->config);
        if (TopicEntry* t = registry_.find(topic)) {
            if (auto st = enable(*t, state->archive); !st) spdlog::error("topic '{}' is not archived: {}", topic, st.error().message);
        }
    }
}

// Archives of topics deleted while an earlier shmbusd ran, whose removal it did not finish.
void Archives::remove_leftover_deletions() {
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(trash_dir(), ec))) return;
    if (auto st = detail::check_private_dir(trash_dir(), "state directory", false); !st) {
        spdlog::warn("{}: left alone", st.error().message);
        return;
    }
    for (const auto& entry : fs::directory_iterator(trash_dir(), ec))
        remove_in_background(entry.path().filename().string(), entry.path().string());
}

// The topic's segments are gone (a reboot): it is made again with its settings, its ids
// continuing after everything it ever gave (the archive's last, the persisted cursors', the
// persisted count), its durable cursors and groups where they were last persisted.
void Archives::recreate(const std::string& topic, const TopicConfig& c) {
    const std::string dir = topic_dir(topic);
    std::string why;
    uint64_t first_id = 0;
    auto archive_dir = detail::open_checked_at(AT_FDCWD, dir + "/archive", O_RDONLY | O_DIRECTORY, 0, true);
    const int dir_fd = archive_dir ? *archive_dir : -1;
    if (dir_fd >= 0) {
        if (auto last = last_archived_id(dir_fd, topic)) first_id = *last + 1;
        ::close(dir_fd);
    }
    std::optional<toml::table> cursors = read_toml(dir + "/cursors.toml", why);
    if (cursors) {
        first_id = std::max(first_id, toml_u64(*cursors, "published"));
        if (auto* d = (*cursors)["durable"].as_array())
            for (auto& e : *d)
                if (auto* tab = e.as_table()) first_id = std::max(first_id, toml_u64(*tab, "next_id"));
    }
    restoring_ = true;
    auto made = registry_.create(topic, c, first_id);
    restoring_ = false;
    if (!made || *made == nullptr) {
        spdlog::error("cannot make archived topic '{}' again: {}", topic,
                      made ? std::string("its pages are still being reserved") : made.error().message);
        return;
    }
    TopicEntry& entry = **made;
    const auto& seg = entry.segment();
    const auto self = self_registration();
    uint32_t durables = 0, groups = 0;
    if (cursors) {
        if (auto* d = (*cursors)["durable"].as_array())
            for (auto& e : *d) {
                auto* tab = e.as_table();
                const auto name = tab ? (*tab)["name"].value<std::string>() : std::nullopt;
                if (!name || !validate_subscription_name(*name)) continue;
                // Its owner as recorded: a uid ("u1001"); a file of an older shmbusd says none, and
                // its cursors go to the bus owner's uid.
                std::string owner = (*tab)["owner"].value_or(std::string());
                if (owner.size() < 2 || owner[0] != 'u' || owner.find_first_not_of("0123456789", 1) != std::string::npos)
                    owner = user_principal(geteuid());
                auto scope = entry.scope_with_room(owner);
                if (!scope) break;
                auto slot = detail::reserve_consumer_slot(seg, *scope);
                if (!slot) break;
                if (!detail::attach_new_cursor(seg, *slot, detail::SlotKind::durable, *name, self, StartFrom::earliest, 0)) continue;
                // Acked up to next_id: the ids before the ring's first are read from the archive.
                // SYNC: release pairs with the acquire loads of ack_id by the subscriber that resumes
                // this cursor and by collect_stats.
                seg.consumer_slot(*slot).ack_id.store(std::min(toml_u64(*tab, "next_id"), first_id), std::memory_order_release);
                (void)detail::release_consumer(seg, *slot, self.owner, detail::WallClock::system_ns());
                ++durables;
            }
        if (auto* g = (*cursors)["group"].as_array())
            for (auto& e : *g) {
                auto* tab = e.as_table();
                const auto name = tab ? (*tab)["name"].value<std::string>() : std::nullopt;
                if (!name || !validate_subscription_name(*name)) continue;
                // What the file does not say is the group defaults' (GroupSettings).
                const layout::GroupSettingsRecord d = detail::settings_record(GroupSettings{});
                layout::GroupSettingsRecord r{};
                r.window = uint32_t(toml_u64(*tab, "window", d.window));
                r.max_deliveries = uint32_t(toml_u64(*tab, "max_deliveries", d.max_deliveries));
                r.visibility_ns = toml_u64(*tab, "visibility_ns", d.visibility_ns);
                r.backoff_initial_ns = toml_u64(*tab, "backoff_initial_ns", d.backoff_initial_ns);
                r.backoff_max_ns = toml_u64(*tab, "backoff_max_ns", d.backoff_max_ns);
                r.backoff_factor_x100 = uint32_t(toml_u64(*tab, "backoff_factor_x100", d.backoff_factor_x100));
                r.rate_burst = uint32_t(toml_u64(*tab, "rate_burst", d.rate_burst));
                r.rate_interval_ns = toml_u64(*tab, "rate_interval_ns", d.rate_interval_ns);
                const auto block = detail::free_group_block(seg);
                if (!block) continue;
                auto scope = entry.scope_with_room(group_principal(*block));
                GroupSettings options;
                options.dead_letter_expired = (*tab)["dead_letter_expired"].value_or(false);
                options.ordered_by_key = (*tab)["ordered_by_key"].value_or(false);
                if (scope && detail::create_group(seg, *name, r, StartFrom::earliest, 0, self, block, *scope,
                                                  detail::group_options_of(options)))
                    ++groups;
            }
    }
    spdlog::warn("made archived topic '{}' again from {} (its segments were gone): ids continue at {}; {} durable "
                 "cursor(s) and {} group(s) restored",
                 topic, dir, first_id, durables, groups);
}

}  // namespace shmbus::daemon
