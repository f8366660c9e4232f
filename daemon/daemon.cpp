#include "daemon.h"
#include "core/untrusted_files.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <filesystem>

#include "core/bus_files.h"
#include "handlers/support.h"
#include "core/errno_error.h"
#include "core/futex.h"
#include "core/gc.h"
#include "core/wall_clock.h"
#include "shmbus/client.h"

namespace shmbus::daemon {

using detail::errno_error;

Daemon::Daemon(Options options) : options_(std::move(options)), access_(geteuid(), options_.config.acl) {}

Daemon::~Daemon() {
    metrics_.reset();  // stops the exposer's threads first
    if (metrics_timer_ >= 0) close(metrics_timer_);
    server_.reset();  // closes connections and the socket while the loop still exists
    handlers_.reset();
    watchers_.reset();
    archives_.reset();
    if (signal_fd_ >= 0) close(signal_fd_);
    if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
}

// The bus directory must be ours alone to write: whoever else could write it could swap the lock,
// the bus id or the socket under us (a default directory in /tmp can be made first by anyone).
Status Daemon::prepare_dir() {
    std::error_code ec;
    if (std::filesystem::create_directories(options_.dir, ec)) chmod(options_.dir.c_str(), 0700);
    if (ec) return make_error(Errc::permission_denied, "cannot create bus directory " + options_.dir + ": " + ec.message());
    if (access(options_.dir.c_str(), W_OK | X_OK) != 0)
        return errno_error(Errc::permission_denied, "bus directory " + options_.dir + " is not writable");
    // Absolute and canonical: segments record it, and another bus's gc judges from its own
    // working directory whether it still exists.
    if (auto canonical = std::filesystem::canonical(options_.dir, ec); !ec) options_.dir = canonical.string();
    return detail::check_private_dir(options_.dir, "bus directory", false);
}

Status Daemon::take_lock() {
    const std::string path = detail::bus_file(options_.dir, detail::kLockFile);
    lock_fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) return errno_error(Errc::permission_denied, "cannot open " + path);
    // Another shmbusd holds it for its life; another bus's collection (gc) holds it shared for the
    // moment it takes to remove a stale socket: that is waited out, never taken for a running bus.
    bool locked = flock(lock_fd_, LOCK_EX | LOCK_NB) == 0;
    for (int i = 0; !locked && i < 100; ++i) {  // up to 1 s
        ::usleep(10'000);
        locked = flock(lock_fd_, LOCK_EX | LOCK_NB) == 0;
    }
    if (!locked) {
        char buf[32] = {};
        ssize_t n = pread(lock_fd_, buf, sizeof buf - 1, 0);
        const std::string pid = n > 0 ? std::string(buf, size_t(n)) : "unknown";
        return make_error(Errc::daemon_running, "another shmbusd (pid " + pid.substr(0, pid.find('\n')) +
                                                    ") already serves " + options_.dir);
    }
    const std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(lock_fd_, 0) != 0 || pwrite(lock_fd_, pid.data(), pid.size(), 0) < 0)
        return errno_error(Errc::io_error, "cannot write " + path);
    return ok_status();
}

// The bus id names every segment of the bus: a new one would orphan the topics (and the next gc
// would delete them as another bus's). So a damaged bus.id stops the start, and a missing one is
// recovered from the segments that name this directory before a new id is made.
Status Daemon::load_bus_id() {
    const std::string path = detail::bus_file(options_.dir, detail::kBusIdFile);
    std::string why;
    switch (detail::read_bus_id_file(options_.dir, bus_id_, why)) {
        case detail::BusIdFile::valid:
            return ok_status();
        case detail::BusIdFile::damaged:
            return make_error(Errc::corrupt_segment, path + " is damaged (" + why +
                                                         "); refusing to start, since a new bus id would orphan this "
                                                         "bus's topics. Restore it, or remove it to recover the id from them");
        case detail::BusIdFile::missing:
            break;
    }
    const auto found = detail::bus_ids_naming(options_.dir);
    if (found.size() > 1)
        return make_error(Errc::corrupt_segment, path + " is missing and segments of " + std::to_string(found.size()) +
                                                     " bus ids name this directory; refusing to guess which is this bus");
    if (found.size() == 1) {
        bus_id_ = found[0];
        spdlog::warn("{} was missing; recovered bus id {:016x} from the segments that name this directory", path, bus_id_);
    }
    while (bus_id_ == 0)
        if (getrandom(&bus_id_, sizeof bus_id_, 0) != sizeof bus_id_) return errno_error(Errc::io_error, "getrandom");
    return write_bus_id(path);
}

Status Daemon::write_bus_id(const std::string& path) {
    char text[24];
    const int n = std::snprintf(text, sizeof text, "%016" PRIx64 "\n", bus_id_);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return errno_error(Errc::io_error, "cannot create " + path);
    const bool written = write(fd, text, size_t(n)) == n && fsync(fd) == 0;
    const int err = errno;
    close(fd);
    if (written) return ok_status();
    unlink(path.c_str());  // never leave a partial id for the next start to misread
    errno = err;
    return errno_error(Errc::io_error, "cannot write " + path + " (the bus id)");
}

// Re-adopts the segments an earlier shmbusd left, and reconciles their slots with the processes
// that still run: the dead ones' slots are released, the live ones are watched.
Status Daemon::adopt_topics() {
    const uint64_t t0 = detail::monotonic_ns();
    auto report = registry_->adopt_existing();
    for (const auto& r : report.removed) spdlog::warn("removed invalid segment {}", r);
    for (const auto& r : report.ignored) spdlog::warn("ignored /dev/shm/{} (left in place, not adopted)", r);
    // Serving only some of the topics would let a client make one of the others again over its data.
    if (report.stopped) return *report.stopped;
    const Liveness alive = [](const Process& p) { return detail::process_alive(p); };
    registry_->for_each([&](TopicEntry& t) {
        for (const Process& owner : t.supervisor.reconcile(alive)) watchers_->watch(owner);
        drop_unserved_services(t);  // their responders died while no shmbusd ran
    });
    if (!report.adopted.empty())
        spdlog::info("re-adopted {} topic(s) in {:.1f} ms", report.adopted.size(), double(detail::monotonic_ns() - t0) / 1e6);
    return ok_status();
}

// The topics the configuration names exist from the start, with its settings. One that exists
// already keeps the settings it was made with (they cannot change under its clients): said once.
void Daemon::create_configured_topics() {
    for (const auto& [name, settings] : options_.config.topics) {
        if (const TopicEntry* t = registry_->find(name)) {
            TopicConfig wanted = with_defaults(settings);
            wanted.capacity = round_capacity(wanted.capacity);  // as the segment records it
            if (t->segment().config() != wanted)
                spdlog::warn("topic '{}' exists with other settings than the configuration's; it keeps them until it is "
                             "deleted", name);
            continue;
        }
        if (auto t = registry_->create(name, settings)) spdlog::info("created topic '{}' from the configuration", name);
        else spdlog::error("cannot create topic '{}' from the configuration: {}", name, t.error().message);
    }
}

// Each topic costs a descriptor for as long as it exists: take all the kernel allows us.
uint64_t Daemon::raise_descriptor_limit() {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
    if (lim.rlim_cur < lim.rlim_max) {
        const rlim_t was = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &lim) == 0) spdlog::debug("descriptor limit raised from {} to {}", was, lim.rlim_cur);
        else getrlimit(RLIMIT_NOFILE, &lim);
    }
    spdlog::debug("descriptor limit {}: room for {} topics", lim.rlim_cur, topic_limit(lim.rlim_cur));
    return lim.rlim_cur;
}

Status Daemon::watch_signals() {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);  // a closed terminal or a reload request must not kill the bus
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);  // a segment over RLIMIT_FSIZE must fail with EFBIG, not kill us
    signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd_ < 0) return errno_error(Errc::io_error, "signalfd");
    if (!loop_.add(signal_fd_, EPOLLIN, [this](uint32_t) {
            signalfd_siginfo si{};
            if (read(signal_fd_, &si, sizeof si) != sizeof si) return;
            if (si.ssi_signo == SIGHUP) {
                sd_notify(0, "RELOADING=1");
                reload_config();
                sd_notify(0, "READY=1");
                return;
            }
            spdlog::info("shmbusd stopping on signal {}", si.ssi_signo);
            loop_.stop(0);
        }))
        return make_error(Errc::io_error, "cannot watch signals");
    return ok_status();
}

// SIGHUP rereads the access rules (and the log level); a file that no longer parses changes
// nothing. Access already handed out stays: a client keeps the mappings it holds until it closes them.
void Daemon::reload_config() {
    if (options_.config_path.empty()) {
        spdlog::info("SIGHUP: nothing to reload (no configuration file); still serving");
        return;
    }
    auto config = load_config(options_.config_path);
    if (!config) {
        spdlog::error("SIGHUP: configuration not reloaded, the old one stays: {}", config.error().message);
        return;
    }
    if (config->access_group != options_.config.access_group || (!config->dir.empty() && config->dir != options_.config.dir))
        spdlog::warn("SIGHUP: [bus] dir and access_group take effect at the next start only");
    if (!config->log_level.empty()) spdlog::set_level(spdlog::level::from_str(config->log_level));
    access_ = AccessControl(geteuid(), config->acl);
    spdlog::info("SIGHUP: reloaded {}: {} acl entr{}; topic settings apply to topics created from now on", options_.config_path,
                 access_.entries(), access_.entries() == 1 ? "y" : "ies");
    options_.config.acl = std::move(config->acl);
    options_.config.defaults = config->defaults;
    options_.config.topics = std::move(config->topics);
}

// The exposer answers scrapes on its own threads from a snapshot the loop refreshes every second.
Status Daemon::serve_metrics() {
    if (options_.metrics.empty()) return ok_status();
    auto m = Metrics::start(options_.metrics);
    if (!m) return m.error();
    metrics_ = std::move(m.value());
    metrics_timer_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (metrics_timer_ < 0) return errno_error(Errc::io_error, "timerfd_create");
    const itimerspec every_second{{1, 0}, {1, 0}};
    timerfd_settime(metrics_timer_, 0, &every_second, nullptr);
    auto refresh = [this] {
        std::vector<std::string> patterns;
        for (const auto& p : handlers_->patterns()) patterns.push_back(p.pattern);
        metrics_->refresh(*registry_, handlers_->clients(), handlers_->started_ns(), patterns);
    };
    if (!loop_.add(metrics_timer_, EPOLLIN, [this, refresh](uint32_t) {
            uint64_t expirations = 0;
            (void)!read(metrics_timer_, &expirations, sizeof expirations);
            refresh();
        }))
        return make_error(Errc::io_error, "cannot watch the metrics timer");
    refresh();
    spdlog::info("metrics on http://{}/metrics", metrics_->address());
    return ok_status();
}

Status Daemon::open_dir_to_group() {
    if (!options_.config.access_group) return ok_status();
    const gid_t group = *options_.config.access_group;
    // 0710: the group may pass through to the socket, never list or write the directory.
    if (chown(options_.dir.c_str(), uid_t(-1), group) != 0 || chmod(options_.dir.c_str(), 0710) != 0)
        return errno_error(Errc::permission_denied, "cannot give group '" + options_.config.access_group_name + "' access to " + options_.dir);
    return ok_status();
}

Status Daemon::start() {
    signal(SIGXFSZ, SIG_IGN);  // a file over RLIMIT_FSIZE must fail with EFBIG, not kill us
    if (options_.dir.empty()) options_.dir = default_bus_dir();
    if (auto st = prepare_dir(); !st) return st;
    if (auto st = open_dir_to_group(); !st) return st;
    if (auto st = take_lock(); !st) return st;
    if (auto st = load_bus_id(); !st) return st;
    if (auto st = loop_.open(); !st) return st;
    for (const auto& r : detail::collect_stale(bus_id_)) spdlog::warn("gc: removed {} ({})", r.what, r.why);
    registry_ = std::make_unique<Registry>(bus_id_, options_.dir, topic_limit(raise_descriptor_limit()));
    watchers_ = std::make_unique<Watchers>(loop_, *registry_);
    if (options_.state_dir.empty()) options_.state_dir = options_.config.state_dir.empty() ? default_state_dir(options_.dir) : options_.config.state_dir;
    archives_ = std::make_unique<Archives>(loop_, *registry_, options_.state_dir,
                                           ArchiverCommand{options_.executable, options_.dir, options_.log_level});
    registry_->on_created([this](TopicEntry& t) {
        auto configured = options_.config.archives.find(t.name());
        archives_->on_topic_created(t, configured == options_.config.archives.end() ? std::nullopt
                                                                                    : std::optional(configured->second));
    });
    if (auto st = adopt_topics(); !st) return st;
    archives_->restore();
    create_configured_topics();
    handlers_ = std::make_unique<RequestHandlers>(*registry_, *watchers_, access_, options_.config, bus_id_, *archives_);
    server_ = std::make_unique<Server>(loop_, *handlers_);
    if (auto st = server_->listen(options_.dir, options_.config.access_group); !st) return st;
    if (auto st = watch_reservations(); !st) return st;
    if (auto st = watch_signals(); !st) return st;
    if (auto st = serve_metrics(); !st) return st;
    return watchers_->open_timer();
}

// From here on large topics are reserved on worker threads: when one ends, the requests waiting for
// it are served again, and a topic whose requester left is finished all the same.
Status Daemon::watch_reservations() {
    if (!registry_->reserve_in_background()) return detail::errno_error(Errc::io_error, "eventfd");
    const int fd = registry_->reservation_done_fd();
    if (!loop_.add(fd, EPOLLIN, [this, fd](uint32_t) {
            uint64_t count = 0;
            (void)!read(fd, &count, sizeof count);
            server_->resume_parked();
            for (const auto& f : registry_->finish_ended_reservations()) {
                if (f.error) spdlog::warn("topic '{}' was not created: {}", f.topic, f.error->message);
                else spdlog::info("created topic '{}' (its requester had left)", f.topic);
            }
            watchers_->rearm_timer();
        }))
        return make_error(Errc::io_error, "cannot watch topic reservations");
    return ok_status();
}

// Readiness for a service manager (systemd's Type=notify; nothing without $NOTIFY_SOCKET), sent
// once the socket accepts clients.
int Daemon::run() {
    spdlog::info("shmbusd ready: bus {} (id {:016x}), socket {}", options_.dir, bus_id_, server_->socket_path());
    sd_notifyf(0, "READY=1\nSTATUS=serving %s\nMAINPID=%d", options_.dir.c_str(), int(getpid()));
    const int rc = loop_.run();
    sd_notify(0, "STOPPING=1");
    archives_->stop();  // every cursor persisted: after a clean stop nothing is repeated
    return rc;
}

}  // namespace shmbus::daemon
