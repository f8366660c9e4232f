#include "archives/archives.h"
#include "archives/state_files.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <toml++/toml.h>

#include "archive/archive.h"
#include "supervisor/registration.h"
#include "core/errno_error.h"
#include "core/proc.h"
#include "core/slots.h"
#include "core/untrusted_files.h"
#include "core/wall_clock.h"
#include "shmbus/client.h"
#include "shmbus/names.h"

namespace shmbus::daemon {

using detail::errno_error;

std::string state_base_dir() {
    if (geteuid() == 0) return "/var/lib/shmbus";
    if (const char* x = std::getenv("XDG_STATE_HOME"); x != nullptr && *x == '/') return std::string(x) + "/shmbus";
    if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/') return std::string(home) + "/.local/state/shmbus";
    return "/tmp/shmbus-state-" + std::to_string(geteuid());
}

namespace {

// A bus directory as one file name: [A-Za-z0-9._-] kept, every other byte %XX ("/run/a" ->
// "%2Frun%2Fa"); a long one cut, with a hash of the whole kept so two never meet.
std::string escaped_dir_name(const std::string& dir) {
    std::string out;
    for (unsigned char c : dir) {
        if (std::isalnum(c) || c == '.' || c == '_' || c == '-') {
            out += char(c);
        } else {
            char hex[4];
            std::snprintf(hex, sizeof hex, "%%%02X", c);
            out += hex;
        }
    }
    if (out.size() > 200) {
        char hash[17];
        std::snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(dir));
        out = out.substr(0, 180) + "-" + hash;
    }
    return out;
}

// Whether `base` holds archived topics of the bus in `bus_dir` (made before each bus had a state
// directory of its own by default).
bool holds_topics_of(const std::string& base, const std::string& bus_dir) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(base + "/topics", ec)) {
        auto state = read_topic_state((entry.path() / "topic.toml").string());
        if (state && state->bus_dir == bus_dir) return true;
    }
    return false;
}

}  // namespace

std::string state_dir_for(const std::string& base, const std::string& bus_dir, const std::string& default_bus) {
    if (bus_dir == default_bus) return base;
    const std::string own = base + "/buses/" + escaped_dir_name(bus_dir);
    std::error_code ec;
    if (!std::filesystem::exists(own, ec) && holds_topics_of(base, bus_dir)) return base;
    return own;
}

std::string default_state_dir(const std::string& bus_dir) {
    std::error_code ec;
    auto default_bus = std::filesystem::weakly_canonical(shmbus::default_bus_dir(), ec);
    return state_dir_for(state_base_dir(), bus_dir, ec ? shmbus::default_bus_dir() : default_bus.string());
}

Archives::Archives(EventLoop& loop, Registry& registry, std::string state_dir, ArchiverCommand command)
    : loop_(loop), registry_(registry), state_dir_(std::move(state_dir)), command_(std::move(command)) {}

Archives::~Archives() {
    // Not a clean stop (that is stop()): each archiver is told to finish, nobody waits.
    for (auto& [name, a] : topics_) signal_archiver(a);
    for (Retiring& r : retiring_) unwatch(r.pidfd);
    join_removers();
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

detail::Registration Archives::self_registration() {
    return {detail::Process{int32_t(getpid()), detail::process_start_time(getpid())}, 0, 0};
}

std::string Archives::topic_dir(const std::string& topic) const { return state_dir_ + "/topics/" + topic; }

Status Archives::write_settings(const TopicEntry& t, const ArchiveSettings& s) const {
    return write_atomically(topic_dir(t.name()) + "/topic.toml",
                            topic_state_text(t.name(), command_.bus_dir, t.segment().config(), s));
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
    if (auto st = t.segment().require_timestamps("an archive is searched by time, so it cannot be archived"); !st) return st;
    if (auto st = open(true); !st) return st;
    if (settings.file_bytes < kMinArchiveFileBytes)
        return make_error(Errc::invalid_argument, "archive files must be at least " + std::to_string(kMinArchiveFileBytes) + " bytes");
    if (retention_on_compacted(settings)) return make_error(Errc::invalid_argument, kRetentionOnCompacted);
    if (auto st = prepare_topic_dir(t.name()); !st) return st;
    if (auto st = write_settings(t, settings); !st) return st;
    if (auto st = ensure_archiver_cursor(t); !st) return st;
    auto [it, added] = topics_.try_emplace(t.name());
    const bool changed = !added && it->second.settings != settings;
    it->second.settings = settings;
    if (added) {
        spdlog::info("topic '{}' is archived in {} (retain {} B, {} s; fsync {}{})", t.name(), topic_dir(t.name()) + "/archive",
                     settings.retain_bytes, settings.retain_time.count() / 1'000'000'000, to_string(settings.fsync),
                     settings.compact ? "; compacted, at most " + std::to_string(kept_keys(settings)) + " keys" : std::string());
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

void Archives::forget(const std::string& topic) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) return;
    Archived a = it->second;
    topics_.erase(it);
    persisted_.erase(topic);
    retire(topic, a);
}

void Archives::stop() {
    persist_cursors();
    for (auto& [topic, a] : topics_) stop_archiver(a);
    finish_retiring();
}

}  // namespace shmbus::daemon
