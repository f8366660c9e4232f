// `sub --group --exec CMD`: a command per message, whose exit status settles it (0 acks, 65
// rejects, anything else nacks), with the message in its environment and its standard error kept
// for the dead letter's reason.
#include "cli/work.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>
#include <vector>

extern char** environ;

namespace cli {

namespace {

struct Job {
    pid_t pid = -1;
    int error_output = -1;  // a memory file holding the command's standard error
    shmbus::Message message;
    std::chrono::steady_clock::time_point deadline;
    bool killed = false;
};

// A command that exits with this status rejects its message: to the dead-letter topic at once,
// without the retries any other failure gets (EX_DATAERR of sysexits.h: the input was bad).
constexpr int kRejectStatus = 65;
// How much of a failed command's standard error goes into the dead letter's reason.
constexpr std::size_t kReasonErrorLines = 3;
constexpr std::size_t kReasonErrorBytes = 1024;

// SHMBUS_HEADER_<KEY>: the key in capitals, '-' and '.' as '_'; empty for a key that would not
// make a valid environment name that way (any other character), which is then not exported.
std::string header_variable(std::string_view key) {
    std::string name = "SHMBUS_HEADER_";
    for (char c : key) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '-' || c == '.' || c == '_') name += '_';
        else if (std::isalnum(u) && u < 0x80) name += char(std::toupper(u));
        else return {};
    }
    return name;
}

// What the headers may add to a command's environment: the kernel refuses an exec whose strings
// pass about 2 MiB in all (E2BIG), or one string past 128 KiB.
constexpr std::size_t kMaxExportedHeader = 32 * 1024;       // one NAME=value
constexpr std::size_t kMaxExportedHeaders = 128 * 1024;     // all of them

// The child's environment: ours, then the message's variables. Headers that cannot be exported
// (a key that makes no environment name, or past the size limits) are counted in
// SHMBUS_HEADERS_OMITTED instead; values are passed as they are (exec takes no shell syntax).
std::vector<std::string> job_environment(const std::string& topic, const shmbus::Message& m) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e)
        if (std::strncmp(*e, "SHMBUS_HEADER", 13) != 0 && std::strncmp(*e, "SHMBUS_KEY=", 11) != 0) env.emplace_back(*e);
    env.push_back("SHMBUS_TOPIC=" + topic);
    env.push_back("SHMBUS_MESSAGE_ID=" + std::to_string(m.id));
    env.push_back("SHMBUS_ATTEMPT=" + std::to_string(m.attempt));
    // The message's key, if it has one an environment can hold (no NUL byte).
    if (!m.key.empty() && m.key.find('\0') == std::string_view::npos) env.push_back("SHMBUS_KEY=" + std::string(m.key));
    std::size_t exported = 0, omitted = 0;
    for (const shmbus::Header& h : m.headers) {
        const std::string name = header_variable(h.key);
        const std::size_t size = name.size() + 1 + h.value.size() + 1;
        if (name.empty() || size > kMaxExportedHeader || exported + size > kMaxExportedHeaders) {
            ++omitted;
            continue;
        }
        exported += size;
        env.push_back(name + "=" + std::string(h.value));
    }
    if (omitted != 0) env.push_back("SHMBUS_HEADERS_OMITTED=" + std::to_string(omitted));
    return env;
}

// Starts `sh -c command` with the payload on its standard input (a memory file, so a command
// that never reads it cannot block us) in a process group of its own (so the visibility
// timeout kills what it started too). -1 if it could not be started.
}  // namespace

pid_t start_job(const std::string& command, const std::string& topic, const shmbus::Message& m, int error_output, int output) {
    const int input = memfd_create("shmbus-exec-input", MFD_CLOEXEC);
    if (input < 0) return -1;
    std::size_t written = 0;
    while (written < m.payload.size()) {
        const ssize_t n = write(input, m.payload.data() + written, m.payload.size() - written);
        if (n <= 0) {
            close(input);
            return -1;
        }
        written += std::size_t(n);
    }
    lseek(input, 0, SEEK_SET);
    const auto env = job_environment(topic, m);
    std::vector<char*> envp;
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    // A failed exec reports its errno through this pipe (closed by a successful exec), so that
    // "cannot start /bin/sh: Argument list too long" is not mistaken for the command's status 127.
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        close(input);
        return -1;
    }
    const pid_t pid = fork();
    if (pid == 0) {
        close(report[0]);
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);  // ignored here; an ignored signal stays ignored across exec
        dup2(input, STDIN_FILENO);
        if (error_output >= 0) dup2(error_output, STDERR_FILENO);
        if (output >= 0) dup2(output, STDOUT_FILENO);
        char sh[] = "/bin/sh", dash_c[] = "-c";
        char* argv[] = {sh, dash_c, const_cast<char*>(command.c_str()), nullptr};
        execve("/bin/sh", argv, envp.data());
        const int err = errno;
        (void)!write(report[1], &err, sizeof err);
        _exit(127);
    }
    close(input);
    close(report[1]);
    if (pid < 0) {
        close(report[0]);
        return -1;
    }
    setpgid(pid, pid);  // also here, so a kill before the child ran setpgid finds the group
    int exec_errno = 0;
    ssize_t n;
    do n = read(report[0], &exec_errno, sizeof exec_errno);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == ssize_t(sizeof exec_errno)) {
        (void)waitpid(pid, nullptr, 0);
        errno = exec_errno;
        return -1;
    }
    return pid;
}

// The command's standard error, passed on to ours once it ended (so it is not lost), and its
// last lines for the dead letter's reason ("" if it wrote nothing).
std::string pass_on_error_output(int fd) {
    if (fd < 0) return {};
    std::string text;
    char buf[8192];
    ssize_t n;
    off_t at = 0;
    while ((n = pread(fd, buf, sizeof buf, at)) > 0) {
        std::fwrite(buf, 1, std::size_t(n), stderr);
        text.append(buf, std::size_t(n));
        if (text.size() > 4 * kReasonErrorBytes) text.erase(0, text.size() - 2 * kReasonErrorBytes);  // a tail is all we keep
        at += n;
    }
    close(fd);
    std::vector<std::string> lines;
    for (std::size_t start = 0; start < text.size();) {
        const std::size_t end = std::min(text.find('\n', start), text.size());
        if (end > start) lines.emplace_back(text.substr(start, end - start));
        start = end + 1;
    }
    std::string tail;
    for (std::size_t i = lines.size() > kReasonErrorLines ? lines.size() - kReasonErrorLines : 0; i < lines.size(); ++i)
        tail += (tail.empty() ? "" : " | ") + lines[i];
    if (tail.size() > kReasonErrorBytes) tail = tail.substr(tail.size() - kReasonErrorBytes);
    return tail;
}

std::string exit_text(int status) {
    if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
    return "ended";
}

int sub_exec(shmbus::Client& client, const std::string& topic, shmbus::SubscribeOptions options, const std::string& command,
             uint32_t parallel, std::optional<uint64_t> count) {
    options.auto_ack = false;
    install_stop_handlers();
    auto sub = client.subscribe(topic, options);
    if (!sub) return fail(sub.error());
    // The group's own visibility (it may have been created with other settings than ours).
    std::chrono::nanoseconds visibility = options.group_settings.visibility;
    if (auto stats = client.topic_stats(topic))
        for (const auto& g : stats->groups)
            if (g.name == options.group) visibility = g.settings.visibility;
    std::vector<Job> jobs;
    uint64_t taken = 0;
    int rc = 0;
    auto finish = [&](Job& job, int status) {
        const std::string errors = pass_on_error_output(job.error_output);
        const bool ok = !job.killed && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        const bool reject = !job.killed && WIFEXITED(status) && WEXITSTATUS(status) == kRejectStatus;
        if (!ok)
            std::cerr << "shmbus: message " << job.message.id << " (attempt " << job.message.attempt << "): command "
                      << (job.killed ? "killed at the visibility timeout" : exit_text(status))
                      << (reject ? "; rejected (to the dead-letter topic)\n" : "; nacked\n");
        // stale: given to another member meanwhile. The reason goes with a last attempt to the dlq.
        std::string reason = job.killed ? "command killed at the visibility timeout" : "command " + exit_text(status);
        if (!errors.empty()) reason += ": " + errors;
        if (ok) (void)sub->ack(job.message);
        else if (reject) (void)sub->reject(job.message, std::string_view(reason));
        else (void)sub->nack(job.message, std::string_view(reason));
    };
    auto reap = [&] {
        int status = 0;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            auto it = std::find_if(jobs.begin(), jobs.end(), [&](const Job& j) { return j.pid == pid; });
            if (it == jobs.end()) continue;
            finish(*it, status);
            jobs.erase(it);
        }
        const auto now = std::chrono::steady_clock::now();
        for (auto& j : jobs)
            if (!j.killed && now >= j.deadline) {
                kill(-j.pid, SIGKILL);
                j.killed = true;
            }
    };
    auto handler = [&](const shmbus::Message& m) {
        ++taken;
        Job job;
        job.message = m;
        job.deadline = std::chrono::steady_clock::now() + visibility;
        job.error_output = memfd_create("shmbus-exec-stderr", MFD_CLOEXEC);
        job.pid = start_job(command, topic, m, job.error_output);
        if (job.pid < 0) {
            if (job.error_output >= 0) close(job.error_output);
            std::cerr << "shmbus: cannot start the command for message " << m.id << ": " << std::strerror(errno) << "; nacked\n";
            (void)sub->nack(m);
            return;
        }
        jobs.push_back(std::move(job));
    };
    for (;;) {
        reap();
        const bool taking = !g_stop.load(std::memory_order_relaxed) && (!count || taken < *count) && rc == 0;
        if (!taking && jobs.empty()) break;
        if (!taking || jobs.size() >= parallel) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
        }
        std::size_t want = parallel - jobs.size();
        if (count) want = std::size_t(std::min<uint64_t>(want, *count - taken));
        const auto r = sub->receive(handler, std::chrono::milliseconds(jobs.empty() ? 100 : 2), want);
        if (r.status == shmbus::ReceiveStatus::corrupt || r.status == shmbus::ReceiveStatus::deleted) {
            std::cerr << "shmbus: topic '" << topic << "' " << (r.status == shmbus::ReceiveStatus::corrupt ? "is corrupt" : "was deleted")
                      << "; stopping once running commands end\n";
            rc = kExitError;
        }
    }
    return rc;
}

}  // namespace cli
