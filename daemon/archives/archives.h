// Archived topics, shmbusd's side (docs/archive.md): the state directory, each archived topic's
// settings and persisted cursors in it, the archiver process of each archived topic (started,
// watched and restarted here), and the topics made again from it after a reboot.
//
//   <state dir>/state.lock                  flock: one shmbusd per state directory
//   <state dir>/topics/<topic>/topic.toml   the topic's settings and its archive's
//   <state dir>/topics/<topic>/cursors.toml durable cursors and groups, persisted every second
//   <state dir>/topics/<topic>/archive/     the archive files (layout/archive_file.h)
//   <state dir>/topics/<topic>/archiver.lock  held by the topic's archiver while it runs
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <atomic>
#include <map>
#include <memory>
#include <thread>
#include <vector>
#include <optional>
#include <string>

#include "archive/archive.h"
#include "event_loop.h"
#include "archives/state_files.h"
#include "registry.h"
#include "shmbus/archive.h"
#include "shmbus/result.h"

namespace shmbus::daemon {

using detail::kArchiverSubscription;

// Where shmbusd keeps what must outlive /dev/shm unless told (--state-dir, [bus] state_dir): the
// base, /var/lib/shmbus for root, else $XDG_STATE_HOME/shmbus (~/.local/state/shmbus), for the
// default bus directory, and base/buses/<bus directory, escaped> for any other, so that two buses
// never share one (the second would find it locked and refuse archived topics). A base that
// already holds archived topics of the bus (made before each bus had its own) stays its own.
[[nodiscard]] std::string state_base_dir();
[[nodiscard]] std::string default_state_dir(const std::string& bus_dir);
// The rule above, for a given base and default bus directory.
[[nodiscard]] std::string state_dir_for(const std::string& base, const std::string& bus_dir, const std::string& default_bus);

struct ArchiverCommand {
    std::string executable;  // run as: EXE --archiver TOPIC --dir DIR --state-dir STATE --log-level LEVEL
    std::string bus_dir;
    std::string log_level;
};

class Archives {
public:
    Archives(EventLoop& loop, Registry& registry, std::string state_dir, ArchiverCommand command);
    ~Archives();
    Archives(const Archives&) = delete;
    Archives& operator=(const Archives&) = delete;

    // Takes the state directory if it exists (or `create`), with its lock. Without it (another
    // shmbusd holds it, or it cannot be made) archived topics are refused with `why()`.
    [[nodiscard]] Status open(bool create);
    [[nodiscard]] bool available() const noexcept { return lock_fd_ >= 0; }
    [[nodiscard]] const std::string& state_dir() const noexcept { return state_dir_; }
    // After adoption at start: the archived topics whose segments are gone (a reboot cleared
    // /dev/shm) are made again, their ids continuing the archive's and their durable cursors where
    // they were last persisted; every archived topic's archiver is started.
    void restore();
    // Archives `t` from now on with `settings` (or changes the settings of an archived topic).
    [[nodiscard]] Status enable(TopicEntry& t, const ArchiveSettings& settings);
    // A topic made by the registry: archived if its policy (on-full archive) or the configuration asks.
    void on_topic_created(TopicEntry& t, const std::optional<ArchiveSettings>& configured);
    [[nodiscard]] std::optional<ArchiveSettings> settings(const std::string& topic) const;
    // A read-only descriptor of the topic's archive directory, for a client (the caller closes it).
    [[nodiscard]] Result<int> open_dir(const std::string& topic) const;
    // The topic was deleted: its archiver is told to stop and its archive and state are removed
    // once it has, without blocking the event loop (archiver_processes.cpp).
    void forget(const std::string& topic);
    [[nodiscard]] bool is_archiver(const std::string& topic, pid_t pid) const;
    // Persists every archived topic's durable cursors (every second, and at a clean stop).
    void persist_cursors();
    // A clean stop: cursors persisted, archivers asked to finish (SIGTERM) and waited for, the
    // archives of deleted topics removed.
    void stop();

private:
    struct Archived {
        ArchiveSettings settings;
        pid_t pid = 0;          // the archiver running now; 0: none
        int pidfd = -1;
        uint64_t restart_at_ns = 0;  // CLOCK_MONOTONIC: when to start it again; 0: now
        uint64_t backoff_ns = 0;
        uint64_t started_ns = 0;
    };
    // An archiver of a deleted topic, told to stop: its pidfd watched, SIGKILLed at kill_at_ns,
    // its directory (moved under trash_dir()) removed once it has exited.
    struct Retiring {
        std::string topic;
        pid_t pid = 0;
        int pidfd = -1;
        std::string dir;
        uint64_t kill_at_ns = 0;
        bool killed = false;
    };
    struct Remover {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done;
    };
    [[nodiscard]] static detail::Registration self_registration();
    [[nodiscard]] std::string topic_dir(const std::string& topic) const;
    [[nodiscard]] std::string trash_dir() const;  // <state>/deleted
    [[nodiscard]] Status prepare_topic_dir(const std::string& topic) const;
    [[nodiscard]] Status write_settings(const TopicEntry& t, const ArchiveSettings& s) const;
    [[nodiscard]] Status ensure_archiver_cursor(TopicEntry& t);
    // archiver_processes.cpp
    void start_archiver(const std::string& topic, Archived& a);
    void on_archiver_exit(const std::string& topic);
    void on_timer();
    void unwatch(int& pidfd);
    void signal_archiver(Archived& a);   // SIGTERM, not waited for
    void stop_archiver(Archived& a);     // SIGTERM, waited for (a clean stop only)
    static void reap_within(pid_t pid, uint64_t wait_ns);
    void retire(const std::string& topic, Archived a);
    void on_retired_exit(pid_t pid);
    void check_retiring(uint64_t now_ns);
    void finish_retiring();
    void remove_in_background(const std::string& topic, const std::string& dir);
    void join_removers(bool finished_only = false);
    // restore.cpp
    void persist_cursors(TopicEntry& t);
    void recreate(const std::string& topic, const TopicConfig& config);
    void remove_leftover_deletions();

    EventLoop& loop_;
    Registry& registry_;
    std::string state_dir_;
    ArchiverCommand command_;
    int lock_fd_ = -1;
    int timer_fd_ = -1;
    std::map<std::string, Archived> topics_;
    uint64_t last_persist_ns_ = 0;
    std::map<std::string, std::string> persisted_;  // what each topic's cursors.toml holds now
    bool restoring_ = false;
    std::vector<Retiring> retiring_;
    std::vector<Remover> removers_;
};

// The archiver of one topic (shmbusd --archiver TOPIC): runs until SIGTERM, or until its topic
// is deleted. Exit status 0 on a clean stop, 1 on a failure it cannot go on from.
[[nodiscard]] int run_archiver(const std::string& topic, const std::string& bus_dir, const std::string& state_dir);

}  // namespace shmbus::daemon
