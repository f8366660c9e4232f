#include "archives.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <toml++/toml.h>

#include "archive/archive.h"
#include "supervisor/group_admin.h"
#include "supervisor/registration.h"
#include "core/cursor.h"
#include "core/errno_error.h"
#include "core/futex.h"
#include "groups/group.h"
#include "core/proc.h"
#include "core/slots.h"
#include "control/stats.h"
#include "core/untrusted_files.h"
#include "core/wall_clock.h"
#include "shmbus/names.h"

namespace shmbus::daemon {

namespace fs = std::filesystem;
using detail::errno_error;

namespace {

constexpr uint64_t kFirstRestartDelayNs = 100'000'000;    // an archiver that died is started again after this,
constexpr uint64_t kMaxRestartDelayNs = 10'000'000'000;   // doubling while it keeps dying young, up to this
constexpr uint64_t kHealthyRunNs = 30'000'000'000;        // one that ran this long starts the backoff afresh
constexpr std::chrono::seconds kStopWait{5};

detail::Registration self_registration() {
    return {detail::Process{int32_t(getpid()), detail::process_start_time(getpid())}, 0, 0};
}

// Writes `text` to `path` so that a crash leaves the old file or the new one, never a mix. The
// temporary file is opened without following a link (one planted there must not redirect the
// write) and must be a regular file of ours before it is truncated.
Status write_atomically(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    auto opened = detail::open_checked_at(AT_FDCWD, tmp, O_WRONLY | O_CREAT, 0600, true);
    if (!opened) return make_error(opened.error().code, "cannot write " + tmp + ": " + opened.error().message);
    const int fd = *opened;
    if (::ftruncate(fd, 0) != 0) {
        const Error e = errno_error(Errc::io_error, "cannot truncate " + tmp);
        ::close(fd);
        return e;
    }
    const bool ok = ::write(fd, text.data(), text.size()) == ssize_t(text.size()) && ::fdatasync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        errno = ok ? errno : err;
        return errno_error(errno == ENOSPC ? Errc::no_space : Errc::io_error, "cannot write " + path);
    }
    return ok_status();
}

// A state file (topic.toml, cursors.toml): ours, regular, bounded in size and shape before the
// parser sees it, since whoever could write the directory could have put anything there.
std::optional<toml::table> read_toml(const std::string& path, std::string& why) {
    auto text = detail::read_bounded_file(AT_FDCWD, path, detail::kMaxTomlBytes, true);
    if (!text) {
        why = text.error().message;
        return std::nullopt;
    }
    if (auto shape = detail::toml_shape_error(*text)) {
        why = *shape;
        return std::nullopt;
    }
    try {
        return toml::parse(*text, path);
    } catch (const toml::parse_error& e) {
        why = std::string(e.description());
        return std::nullopt;
    }
}

uint64_t u64(const toml::table& t, std::string_view key, uint64_t fallback = 0) {
    if (auto v = t[key].value<int64_t>(); v && *v >= 0) return uint64_t(*v);
    return fallback;
}

toml::table settings_table(const ArchiveSettings& s) {
    return toml::table{{"retain_bytes", int64_t(s.retain_bytes)},
                       {"retain_ns", int64_t(s.retain_time.count())},
                       {"file_bytes", int64_t(s.file_bytes)},
                       {"fsync", std::string(to_string(s.fsync))}};
}

ArchiveSettings settings_from(const toml::table& t) {
    ArchiveSettings s;
    s.retain_bytes = u64(t, "retain_bytes");
    s.retain_time = std::chrono::nanoseconds(int64_t(u64(t, "retain_ns")));
    s.file_bytes = std::max(u64(t, "file_bytes", s.file_bytes), kMinArchiveFileBytes);
    if (auto f = t["fsync"].value<std::string>()) (void)parse_fsync(*f, s.fsync);
    return s;
}

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

Result<ArchiveSettings> load_archive_settings(const std::string& path) {
    std::string why;
    auto doc = read_toml(path, why);
    if (!doc) return make_error(Errc::io_error, "cannot read " + path + ": " + why);
    auto* a = (*doc)["archive"].as_table();
    if (a == nullptr) return make_error(Errc::invalid_argument, path + " has no [archive] table");
    return settings_from(*a);
}

uint32_t load_archive_max_record(const std::string& path) {
    std::string why;
    auto doc = read_toml(path, why);
    const toml::table* t = doc ? (*doc)["topic"].as_table() : nullptr;
    const uint64_t max_message = t != nullptr ? u64(*t, "max_message") : 0;
    if (max_message == 0) return layout::kMaxArchiveRecord;
    const uint64_t longest = max_message + sizeof(layout::RetryInfo) + layout::kMaxProducerStamp;
    return uint32_t(std::min<uint64_t>(longest, layout::kMaxArchiveRecord));
}

std::string default_state_dir() {
    if (geteuid() == 0) return "/var/lib/shmbus";
    if (const char* x = std::getenv("XDG_STATE_HOME"); x != nullptr && *x == '/') return std::string(x) + "/shmbus";
    if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/') return std::string(home) + "/.local/state/shmbus";
    return "/tmp/shmbus-state-" + std::to_string(geteuid());
}

Archives::Archives(EventLoop& loop, Registry& registry, std::string state_dir, ArchiverCommand command)
    : loop_(loop), registry_(registry), state_dir_(std::move(state_dir)), command_(std::move(command)) {}

Archives::~Archives() {
    for (auto& [name, a] : topics_) stop_archiver(a, false);
    if (timer_fd_ >= 0) {
        loop_.remove(timer_fd_);
        ::close(timer_fd_);
    }
    if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status Archives::open(bool create) {
    if (lock_fd_ >= 0) return ok_status();
    // The state directory gets the bus directory's checks: whoever else could write it could plant
    // topic.toml files, links and FIFOs for shmbusd to act on.
    if (auto st = detail::check_private_dir(state_dir_, "state directory", create); !st) return st;
    if (auto st = detail::check_private_dir(state_dir_ + "/topics", "state directory", true); !st) return st;
    (void)::chmod((state_dir_ + "/topics").c_str(), 0700);  // archive directories are reached only through descriptors
    const std::string lock = state_dir_ + "/state.lock";
    auto opened = detail::open_checked_at(AT_FDCWD, lock, O_RDWR | O_CREAT, 0600, true);
    if (!opened) return opened.error();
    const int fd = *opened;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[64] = {};
        const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
        ::close(fd);
        std::string holder(buf, n > 0 ? std::size_t(n) : 0);
        holder = holder.substr(0, std::min(holder.find('\n'), std::size_t(60)));  // its first line: "pid N, bus DIR"
        return make_error(Errc::busy, "state directory " + state_dir_ + " is in use by another shmbusd (" + holder +
                                          "); give each bus a state directory of its own (--state-dir)");
    }
    const std::string who = "pid " + std::to_string(getpid()) + ", bus " + command_.bus_dir + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, who.data(), who.size(), 0) < 0) spdlog::warn("cannot write {}", lock);
    lock_fd_ = fd;
    timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (timer_fd_ < 0) return errno_error(Errc::io_error, "timerfd_create");
    const itimerspec every{{0, 250'000'000}, {0, 250'000'000}};
    ::timerfd_settime(timer_fd_, 0, &every, nullptr);
    if (!loop_.add(timer_fd_, EPOLLIN, [this](uint32_t) {
            uint64_t n = 0;
            (void)!::read(timer_fd_, &n, sizeof n);
            on_timer();
        }))
        return make_error(Errc::io_error, "cannot watch the archive timer");
    return ok_status();
}

std::string Archives::topic_dir(const std::string& topic) const { return state_dir_ + "/topics/" + topic; }

Status Archives::write_settings(const TopicEntry& t, const ArchiveSettings& s) const {
    const TopicConfig c = t.segment().config();
    toml::table topic{{"bus_dir", command_.bus_dir},
                      {"capacity", int64_t(c.capacity)},
                      {"max_message", int64_t(c.max_message)},
                      {"on_full", std::string(to_string(c.on_full))},
                      {"max_producers", int64_t(c.max_producers)},
                      {"max_consumers", int64_t(c.max_consumers)},
                      {"unblock_timeout_ns", int64_t(c.unblock_timeout.count())},
                      {"expire_detached_ns", int64_t(c.expire_detached.count())},
                      {"single_producer", c.single_producer}};
    toml::table doc{{"topic", topic}, {"archive", settings_table(s)}};
    std::ostringstream text;
    text << "# shmbusd's record of archived topic '" << t.name() << "': made again from this after a reboot.\n" << doc << "\n";
    return write_atomically(topic_dir(t.name()) + "/topic.toml", text.str());
}

// The archiver's durable cursor, made by shmbusd itself (detached until the archiver attaches):
// it holds publishers back from the moment the topic is archived, whether or not the archiver
// runs yet. Named in the segment before it holds a cursor, so no publisher overlooks it.
Status Archives::ensure_archiver_cursor(TopicEntry& t) {
    const auto& seg = t.segment();
    if (!seg.has_archive_fields())
        return make_error(Errc::invalid_argument, "topic '" + t.name() + "' was made by an older shmbusd (layout 1." +
                                                      std::to_string(seg.header().version_minor) +
                                                      ") and cannot be archived; delete and create it again");
    if (seg.archiver_slot()) return ok_status();
    // In the archiver's own owner object (layout 1.9): no subscriber can move its cursor.
    const std::string principal(kArchiverPrincipal);
    if (auto existing = detail::find_durable(seg, kArchiverSubscription, t.scope_of(principal))) {  // named but unmarked: a crash between
        seg.mark_archived(*existing);
        return ok_status();
    }
    auto scope = t.scope_with_room(principal);
    if (!scope) return scope.error();
    auto slot = detail::reserve_consumer_slot(seg, *scope);
    if (!slot) return make_error(Errc::no_free_slot, "topic '" + t.name() + "' has no free subscription slot for its archiver");
    seg.mark_archived(*slot);
    const auto self = self_registration();
    auto start = detail::attach_new_cursor(seg, *slot, detail::SlotKind::durable, kArchiverSubscription, self,
                                           StartFrom::earliest, 0);
    if (!start) return start.error();
    (void)detail::release_consumer(seg, *slot, self.owner, detail::WallClock::system_ns());
    return ok_status();
}

Status Archives::enable(TopicEntry& t, const ArchiveSettings& settings) {
    if (auto st = open(true); !st) return st;
    if (settings.file_bytes < kMinArchiveFileBytes)
        return make_error(Errc::invalid_argument, "archive files must be at least " + std::to_string(kMinArchiveFileBytes) + " bytes");
    if (auto st = prepare_topic_dir(t.name()); !st) return st;
    if (auto st = write_settings(t, settings); !st) return st;
    if (auto st = ensure_archiver_cursor(t); !st) return st;
    auto [it, added] = topics_.try_emplace(t.name());
    const bool changed = !added && it->second.settings != settings;
    it->second.settings = settings;
    if (added) {
        spdlog::info("topic '{}' is archived in {} (retain {} B, {} s; fsync {})", t.name(), topic_dir(t.name()) + "/archive",
                     settings.retain_bytes, settings.retain_time.count() / 1'000'000'000, to_string(settings.fsync));
        start_archiver(t.name(), it->second);
    } else if (changed && it->second.pid > 0) {
        ::kill(it->second.pid, SIGHUP);  // rereads its settings
    }
    return ok_status();
}

void Archives::on_topic_created(TopicEntry& t, const std::optional<ArchiveSettings>& configured) {
    if (restoring_) return;  // restore() archives it with its recorded settings
    if (!configured && t.segment().on_full() != OnFull::archive) return;
    if (auto st = enable(t, configured.value_or(ArchiveSettings{})); !st)
        spdlog::error("topic '{}' is not archived: {}", t.name(), st.error().message);
}

std::optional<ArchiveSettings> Archives::settings(const std::string& topic) const {
    auto it = topics_.find(topic);
    if (it == topics_.end()) return std::nullopt;
    return it->second.settings;
}

// <state>/topics/<topic>/ (0700: only shmbusd's uid reaches its files by path) and its archive/
// (0755: a client handed its descriptor lists and reads it, whatever its uid), both checked as the
// state directory is.
Status Archives::prepare_topic_dir(const std::string& topic) const {
    const std::string dir = topic_dir(topic);
    if (auto st = detail::check_private_dir(dir, "topic state directory", true); !st) return st;
    (void)::chmod(dir.c_str(), 0700);
    if (auto st = detail::check_private_dir(dir + "/archive", "archive directory", true); !st) return st;
    (void)::chmod((dir + "/archive").c_str(), 0755);
    return ok_status();
}

Result<int> Archives::open_dir(const std::string& topic) const {
    if (topics_.count(topic) == 0) return make_error(Errc::invalid_argument, "topic '" + topic + "' is not archived");
    return detail::open_checked_at(AT_FDCWD, topic_dir(topic) + "/archive", O_RDONLY | O_DIRECTORY, 0, true);
}

bool Archives::is_archiver(const std::string& topic, pid_t pid) const {
    auto it = topics_.find(topic);
    return it != topics_.end() && it->second.pid == pid && pid > 0;
}

void Archives::start_archiver(const std::string& topic, Archived& a) {
    if (a.pid > 0 || command_.executable.empty()) return;
    const std::vector<std::string> args{command_.executable, "--archiver", topic, "--dir", command_.bus_dir,
                                        "--state-dir", state_dir_, "--log-level", command_.log_level};
    std::vector<char*> argv;
    for (const auto& s : args) argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        spdlog::error("cannot start the archiver of '{}': fork: {}", topic, strerror(errno));
        a.restart_at_ns = detail::monotonic_ns() + kMaxRestartDelayNs;
        return;
    }
    if (pid == 0) {
        // Only async-signal-safe calls between fork and exec. It dies with us: a new shmbusd
        // starts its own, which recovers the archive's tail.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    a.pid = pid;
    a.started_ns = detail::monotonic_ns();
    a.pidfd = int(::syscall(SYS_pidfd_open, pid, 0));
    if (a.pidfd >= 0) {
        if (!loop_.add(a.pidfd, EPOLLIN, [this, topic](uint32_t) { on_archiver_exit(topic); })) {
            ::close(a.pidfd);
            a.pidfd = -1;
        }
    }
    spdlog::info("started the archiver of '{}' (pid {})", topic, pid);
}

void Archives::on_archiver_exit(const std::string& topic) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) return;
    Archived& a = it->second;
    if (a.pidfd >= 0) {
        loop_.remove(a.pidfd);
        ::close(a.pidfd);
        a.pidfd = -1;
    }
    int status = 0;
    if (a.pid > 0 && ::waitpid(a.pid, &status, 0) != a.pid) status = 0;
    const uint64_t now = detail::monotonic_ns();
    // One that gave up by itself (a full disk, an unreadable archive) would fail again at once:
    // it waits longer each time it fails young. One that was killed starts again soon: its
    // archive's tail is recovered in moments, and publishers may be waiting for it.
    const bool gave_up = WIFEXITED(status) && WEXITSTATUS(status) != 0;
    const bool young = now - a.started_ns < kHealthyRunNs;
    a.backoff_ns = gave_up && young ? std::min(kMaxRestartDelayNs, std::max(kFirstRestartDelayNs, a.backoff_ns * 2))
                                    : kFirstRestartDelayNs;
    a.restart_at_ns = now + a.backoff_ns;
    const std::string how = WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                                : "exited with status " + std::to_string(WEXITSTATUS(status));
    spdlog::warn("the archiver of '{}' (pid {}) {}; starting it again in {} ms", topic, a.pid, how, a.backoff_ns / 1'000'000);
    a.pid = 0;
}

void Archives::on_timer() {
    const uint64_t now = detail::monotonic_ns();
    for (auto& [topic, a] : topics_)
        if (a.pid == 0 && a.restart_at_ns != 0 && now >= a.restart_at_ns) {
            a.restart_at_ns = 0;
            if (registry_.find(topic) != nullptr) start_archiver(topic, a);
        }
    if (now - last_persist_ns_ >= 1'000'000'000) {
        last_persist_ns_ = now;
        persist_cursors();
    }
}

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
                                     {"rate_interval_ns", int64_t(r.rate_interval_ns)}});
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
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(state_dir_ + "/topics", ec)) {
        const std::string topic = entry.path().filename().string();
        if (!validate_topic_name(topic) || !fs::exists(entry.path() / "topic.toml")) continue;
        if (auto st = detail::check_private_dir(entry.path().string(), "topic state directory", false); !st) {
            spdlog::error("{}; topic '{}' is not restored", st.error().message, topic);
            continue;
        }
        std::string why;
        auto doc = read_toml((entry.path() / "topic.toml").string(), why);
        if (!doc || !(*doc)["archive"].is_table()) {
            spdlog::error("cannot read {}: {}; topic '{}' is not restored", (entry.path() / "topic.toml").string(), why, topic);
            continue;
        }
        // A state directory used by another bus before: its topics are not this bus's to make.
        const auto owner = (*doc)["topic"]["bus_dir"].value<std::string>();
        if (owner && *owner != command_.bus_dir) {
            spdlog::warn("archived topic '{}' in {} belongs to bus {}, not {}: left alone (give each bus its own --state-dir)",
                         topic, state_dir_, *owner, command_.bus_dir);
            continue;
        }
        const ArchiveSettings settings = settings_from(*(*doc)["archive"].as_table());
        if (registry_.find(topic) == nullptr) recreate(topic);
        if (TopicEntry* t = registry_.find(topic)) {
            if (auto st = enable(*t, settings); !st) spdlog::error("topic '{}' is not archived: {}", topic, st.error().message);
        }
    }
}

// The topic's segments are gone (a reboot): it is made again with its settings, its ids
// continuing after everything it ever gave (the archive's last, the persisted cursors', the
// persisted count), its durable cursors and groups where they were last persisted.
void Archives::recreate(const std::string& topic) {
    const std::string dir = topic_dir(topic);
    std::string why;
    auto doc = read_toml(dir + "/topic.toml", why);
    if (!doc || !(*doc)["topic"].is_table()) return;
    const toml::table& t = *(*doc)["topic"].as_table();
    TopicConfig c;
    c.capacity = u64(t, "capacity", c.capacity);
    c.max_message = uint32_t(u64(t, "max_message"));
    if (auto f = t["on_full"].value<std::string>()) (void)parse_on_full(*f, c.on_full);
    c.max_producers = uint32_t(u64(t, "max_producers", c.max_producers));
    c.max_consumers = uint32_t(u64(t, "max_consumers", c.max_consumers));
    c.unblock_timeout = std::chrono::nanoseconds(int64_t(u64(t, "unblock_timeout_ns")));
    c.expire_detached = std::chrono::nanoseconds(int64_t(u64(t, "expire_detached_ns")));
    c.single_producer = t["single_producer"].value_or(false);

    uint64_t first_id = 0;
    auto archive_dir = detail::open_checked_at(AT_FDCWD, dir + "/archive", O_RDONLY | O_DIRECTORY, 0, true);
    const int dir_fd = archive_dir ? *archive_dir : -1;
    if (dir_fd >= 0) {
        if (auto last = last_archived_id(dir_fd, topic)) first_id = *last + 1;
        ::close(dir_fd);
    }
    std::optional<toml::table> cursors = read_toml(dir + "/cursors.toml", why);
    if (cursors) {
        first_id = std::max(first_id, u64(*cursors, "published"));
        if (auto* d = (*cursors)["durable"].as_array())
            for (auto& e : *d)
                if (auto* tab = e.as_table()) first_id = std::max(first_id, u64(*tab, "next_id"));
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
                seg.consumer_slot(*slot).ack_id.store(std::min(u64(*tab, "next_id"), first_id), std::memory_order_release);
                (void)detail::release_consumer(seg, *slot, self.owner, detail::WallClock::system_ns());
                ++durables;
            }
        if (auto* g = (*cursors)["group"].as_array())
            for (auto& e : *g) {
                auto* tab = e.as_table();
                const auto name = tab ? (*tab)["name"].value<std::string>() : std::nullopt;
                if (!name || !validate_subscription_name(*name)) continue;
                layout::GroupSettingsRecord r{};
                r.window = uint32_t(u64(*tab, "window", 64));
                r.max_deliveries = uint32_t(u64(*tab, "max_deliveries", 5));
                r.visibility_ns = u64(*tab, "visibility_ns", 30'000'000'000);
                r.backoff_initial_ns = u64(*tab, "backoff_initial_ns", 100'000'000);
                r.backoff_max_ns = u64(*tab, "backoff_max_ns", 30'000'000'000);
                r.backoff_factor_x100 = uint32_t(u64(*tab, "backoff_factor_x100", 200));
                r.rate_burst = uint32_t(u64(*tab, "rate_burst"));
                r.rate_interval_ns = u64(*tab, "rate_interval_ns");
                const auto block = detail::free_group_block(seg);
                if (!block) continue;
                auto scope = entry.scope_with_room(group_principal(*block));
                if (scope && detail::create_group(seg, *name, r, StartFrom::earliest, 0, self, block, *scope)) ++groups;
            }
    }
    spdlog::warn("made archived topic '{}' again from {} (its segments were gone): ids continue at {}; {} durable "
                 "cursor(s) and {} group(s) restored",
                 topic, dir, first_id, durables, groups);
}

void Archives::stop_archiver(Archived& a, bool wait) {
    if (a.pidfd >= 0) {
        loop_.remove(a.pidfd);
        ::close(a.pidfd);
        a.pidfd = -1;
    }
    if (a.pid <= 0) return;
    ::kill(a.pid, SIGTERM);
    if (wait) {
        const auto deadline = std::chrono::steady_clock::now() + kStopWait;
        int status = 0;
        while (::waitpid(a.pid, &status, WNOHANG) == 0) {
            if (std::chrono::steady_clock::now() > deadline) {
                spdlog::warn("the archiver (pid {}) did not stop in {} s: killed", a.pid, kStopWait.count());
                ::kill(a.pid, SIGKILL);
                ::waitpid(a.pid, &status, 0);
                break;
            }
            ::usleep(10'000);
        }
    }
    a.pid = 0;
}

void Archives::forget(const std::string& topic) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) return;
    stop_archiver(it->second, true);
    topics_.erase(it);
    std::error_code ec;
    fs::remove_all(topic_dir(topic), ec);
    if (ec) spdlog::warn("cannot remove the archive of deleted topic '{}': {}", topic, ec.message());
    else spdlog::info("removed the archive of deleted topic '{}'", topic);
}

void Archives::stop() {
    persist_cursors();
    for (auto& [topic, a] : topics_) stop_archiver(a, true);
}

}  // namespace shmbus::daemon
