// Multi-process test support: a fresh bus directory and shmbusd per test, real child processes,
// and cleanup of every segment the test created.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shmbus/shmbus.h"

namespace shmbus::test {

inline std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct SpawnOptions {
    SpawnOptions(std::string out_file = "", std::string err_file = "", std::string in_file = "",
                 std::optional<rlim_t> fsize = std::nullopt, std::vector<std::string> environment = {})
        : out(std::move(out_file)), err(std::move(err_file)), in(std::move(in_file)), fsize_limit(fsize),
          env(std::move(environment)) {}
    std::string out;                 // stdout file ("" = /dev/null)
    std::string err;                 // stderr file ("" = /dev/null)
    std::string in;                  // stdin file ("" = /dev/null)
    std::optional<rlim_t> fsize_limit;
    std::vector<std::string> env;    // NAME=VALUE entries added to the child's environment
};

inline pid_t spawn(const std::vector<std::string>& args, const SpawnOptions& o = {}) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // a test process that dies takes its daemon and peers along
    auto redirect = [](const std::string& path, int target, int flags) {
        int fd = open(path.empty() ? "/dev/null" : path.c_str(), flags, 0644);
        if (fd >= 0) dup2(fd, target), close(fd);
    };
    redirect(o.in, 0, O_RDONLY);
    redirect(o.out, 1, O_WRONLY | O_CREAT | O_TRUNC);
    redirect(o.err, 2, O_WRONLY | O_CREAT | O_TRUNC);
    if (o.fsize_limit) {
        rlimit r{*o.fsize_limit, *o.fsize_limit};
        setrlimit(RLIMIT_FSIZE, &r);
    }
    for (const auto& e : o.env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
}

// Exit code, 128+signal if killed, or -1 if still running at the deadline (then SIGKILLed).
inline int wait_exit(pid_t pid, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (std::chrono::steady_clock::now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

template <class F>
bool eventually(F&& predicate, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (predicate()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return predicate();
}

struct RunResult {
    int code;
    std::string out;
    std::string err;
};

class BusTest : public ::testing::Test {
protected:
    void SetUp() override {
        make_dir();
        start_daemon();
    }

    // A fresh bus directory for this test.
    void make_dir() {
        char tmpl[] = "/tmp/shmbus-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
    }

    void TearDown() override {
        if (daemon > 0) {
            if (auto c = connect()) {
                if (auto names = c->list_topics())
                    for (const auto& n : *names) (void)c->delete_topic(n);
            }
            stop_daemon();
        }
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }

    // shmbusd on `dir`, with `extra` arguments, logging to daemon.log; waits until it answers.
    void start_daemon(const std::vector<std::string>& extra = {"--log-level", "debug"}, std::vector<std::string> env = {}) {
        std::vector<std::string> args{SHMBUSD_PATH, "--dir", dir};
        args.insert(args.end(), extra.begin(), extra.end());
        // Archives and persisted cursors stay inside the test's directory unless the test says otherwise.
        if (std::find(extra.begin(), extra.end(), "--state-dir") == extra.end()) args.insert(args.end(), {"--state-dir", dir + "/state"});
        daemon = spawn(args, SpawnOptions(path("daemon.log"), path("daemon.log.err"), "", std::nullopt, std::move(env)));
        ASSERT_TRUE(eventually([&] { return connect().has_value(); })) << read_file(path("daemon.log"));
    }

    void kill_daemon() {
        kill(daemon, SIGKILL);
        EXPECT_EQ(wait_exit(daemon), 128 + SIGKILL);
        daemon = -1;
    }

    void stop_daemon() {
        kill(daemon, SIGTERM);
        EXPECT_EQ(wait_exit(daemon, std::chrono::seconds(10)), 0);
        daemon = -1;
    }

    [[nodiscard]] Result<Client> connect() const {
        ClientOptions o;
        o.dir = dir;
        o.name = "test";
        return Client::connect(o);
    }

    [[nodiscard]] std::string path(const std::string& name) const { return dir + "/" + name; }

    // Runs a command to completion, capturing its output.
    RunResult run(std::vector<std::string> args, const std::string& stdin_file = "",
            std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
        const std::string tag = std::to_string(++runs_);
        SpawnOptions o{path("run" + tag + ".out"), path("run" + tag + ".err"), stdin_file, std::nullopt};
        const int code = wait_exit(spawn(args, o), timeout);
        return {code, read_file(o.out), read_file(o.err)};
    }

    RunResult cli(std::vector<std::string> args, const std::string& stdin_file = "") {
        args.insert(args.begin(), {SHMBUS_CLI_PATH, "--dir", dir});
        return run(std::move(args), stdin_file);
    }

    std::string dir;
    pid_t daemon = -1;

private:
    int runs_ = 0;
};

}  // namespace shmbus::test
