// The archiver processes (shmbusd --archiver TOPIC), one per archived topic: started, watched
// through a pidfd on the event loop, started again with a backoff when they die, and stopped
// without ever blocking the loop when their topic is deleted (retire), the deleted archive
// removed by a thread of its own.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "archives/archives.h"
#include "core/futex.h"
#include "core/untrusted_files.h"

namespace shmbus::daemon {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kFirstRestartDelayNs = 100'000'000;    // an archiver that died is started again after this,
constexpr uint64_t kMaxRestartDelayNs = 10'000'000'000;   // doubling while it keeps dying young, up to this
constexpr uint64_t kHealthyRunNs = 30'000'000'000;        // one that ran this long starts the backoff afresh
constexpr uint64_t kStopWaitNs = 5'000'000'000;           // SIGTERM, then SIGKILL after this

}  // namespace

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
    unwatch(a.pidfd);
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
    check_retiring(now);
    join_removers(true);
    if (now - last_persist_ns_ >= 1'000'000'000) {
        last_persist_ns_ = now;
        persist_cursors();
    }
}

void Archives::unwatch(int& pidfd) {
    if (pidfd < 0) return;
    loop_.remove(pidfd);
    ::close(pidfd);
    pidfd = -1;
}

void Archives::signal_archiver(Archived& a) {
    unwatch(a.pidfd);
    if (a.pid > 0) ::kill(a.pid, SIGTERM);
    a.pid = 0;
}

// A clean stop of shmbusd: the archiver finishes what it wrote (SIGTERM) and is waited for, so
// that the archive's tail is whole when shmbusd exits. The loop serves nobody by then.
void Archives::stop_archiver(Archived& a) {
    const pid_t pid = a.pid;
    signal_archiver(a);
    if (pid > 0) reap_within(pid, kStopWaitNs);
}

void Archives::reap_within(pid_t pid, uint64_t wait_ns) {
    const uint64_t deadline = detail::monotonic_ns() + wait_ns;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (detail::monotonic_ns() > deadline) {
            spdlog::warn("the archiver (pid {}) did not stop in {} s: killed", pid, wait_ns / 1'000'000'000);
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            return;
        }
        ::usleep(10'000);
    }
}

std::string Archives::trash_dir() const { return state_dir_ + "/deleted"; }

// The topic was deleted. Its directory moves out of the way at once (a rename: a topic made
// again under the name starts with a directory of its own); its archiver is told to stop and
// watched like any other; the directory goes when the archiver has exited, removed by a thread,
// so that neither the wait nor the removal holds up the loop.
void Archives::retire(const std::string& topic, Archived a) {
    std::string moved;
    if (auto st = detail::check_private_dir(trash_dir(), "state directory", true); !st) {
        spdlog::warn("the archive of deleted topic '{}' is left in {}: {}", topic, topic_dir(topic), st.error().message);
    } else {
        moved = trash_dir() + "/" + topic + "." + std::to_string(detail::monotonic_ns());
        if (::rename(topic_dir(topic).c_str(), moved.c_str()) != 0) {
            if (errno != ENOENT)
                spdlog::warn("the archive of deleted topic '{}' is left in {}: {}", topic, topic_dir(topic), strerror(errno));
            moved.clear();
        }
    }
    unwatch(a.pidfd);
    if (a.pid <= 0) {
        if (!moved.empty()) remove_in_background(topic, moved);
        return;
    }
    ::kill(a.pid, SIGTERM);
    Retiring r{topic, a.pid, int(::syscall(SYS_pidfd_open, a.pid, 0)), moved, detail::monotonic_ns() + kStopWaitNs, false};
    if (r.pidfd >= 0 && !loop_.add(r.pidfd, EPOLLIN, [this, pid = r.pid](uint32_t) { on_retired_exit(pid); })) {
        ::close(r.pidfd);
        r.pidfd = -1;  // found by check_retiring's waitpid instead
    }
    retiring_.push_back(std::move(r));
}

void Archives::on_retired_exit(pid_t pid) {
    auto it = std::find_if(retiring_.begin(), retiring_.end(), [&](const Retiring& r) { return r.pid == pid; });
    if (it == retiring_.end()) return;
    unwatch(it->pidfd);
    int status = 0;
    (void)::waitpid(pid, &status, 0);  // it has exited: the pidfd said so
    spdlog::info("the archiver of deleted topic '{}' (pid {}) stopped", it->topic, pid);
    if (!it->dir.empty()) remove_in_background(it->topic, it->dir);
    retiring_.erase(it);
}

void Archives::check_retiring(uint64_t now) {
    for (std::size_t i = 0; i < retiring_.size();) {
        Retiring& r = retiring_[i];
        int status = 0;
        // Without a pidfd the timer finds the exit.
        if (r.pidfd < 0 && ::waitpid(r.pid, &status, WNOHANG) == r.pid) {
            if (!r.dir.empty()) remove_in_background(r.topic, r.dir);
            retiring_.erase(retiring_.begin() + std::ptrdiff_t(i));
            continue;
        }
        if (!r.killed && now >= r.kill_at_ns) {
            spdlog::warn("the archiver of deleted topic '{}' (pid {}) did not stop in {} s: killed", r.topic, r.pid,
                         kStopWaitNs / 1'000'000'000);
            ::kill(r.pid, SIGKILL);
            r.killed = true;
        }
        ++i;
    }
}

void Archives::finish_retiring() {
    for (Retiring& r : retiring_) {
        unwatch(r.pidfd);
        reap_within(r.pid, r.kill_at_ns > detail::monotonic_ns() ? r.kill_at_ns - detail::monotonic_ns() : 0);
        if (!r.dir.empty()) remove_in_background(r.topic, r.dir);
    }
    retiring_.clear();
    join_removers();
}

void Archives::remove_in_background(const std::string& topic, const std::string& dir) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    auto remove = [topic, dir, done] {
        std::error_code ec;
        fs::remove_all(dir, ec);
        if (ec) spdlog::warn("cannot remove the archive of deleted topic '{}' ({}): {}", topic, dir, ec.message());
        else spdlog::info("removed the archive of deleted topic '{}'", topic);
        done->store(true, std::memory_order_release);  // SYNC: pairs with the acquire load in join_removers
    };
    try {
        removers_.push_back({std::thread(remove), done});
    } catch (const std::system_error&) {  // no thread to be had: removed here, late rather than never
        remove();
    }
}

void Archives::join_removers(bool finished_only) {
    for (auto it = removers_.begin(); it != removers_.end();) {
        // SYNC: acquire pairs with the remover's release store of `done`.
        if (finished_only && !it->done->load(std::memory_order_acquire)) {
            ++it;
            continue;
        }
        if (it->thread.joinable()) it->thread.join();
        it = removers_.erase(it);
    }
}

}  // namespace shmbus::daemon
