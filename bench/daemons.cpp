// The services some transports need, started once by the benchmark process and stopped at exit:
// shmbusd on a private bus directory, and iceoryx's RouDi.
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "links.h"
#include "services.h"
#include "shmbus/shmbus.h"

#ifndef SHMBUSD_PATH
#define SHMBUSD_PATH "shmbusd"
#endif

namespace bench {
namespace {

Service g_shmbusd, g_roudi;
bool g_shmbusd_external = false;

// What a RouDi we start leaves behind when it stops (iceoryx 2.0): its management and payload
// segments in /dev/shm (the latter named after the user), its sockets and lock files in /tmp, and
// a runtime socket and lock per partner process (`shmbus-bench-<pid>`), which partners leave as
// they _exit. Files that existed before our RouDi started are someone else's and stay.
std::vector<std::string> iceoryx_files() {
    std::vector<std::string> out = {"/dev/shm/iceoryx_mgmt", "/tmp/roudi", "/tmp/roudi.lock", "/tmp/iox-unique-roudi.lock"};
    if (const passwd* user = getpwuid(geteuid())) out.push_back(std::string("/dev/shm/") + user->pw_name);
    return out;
}
std::vector<std::string> g_iceoryx_before;  // those of iceoryx_files() present before our RouDi

bool runtime_file_of_dead_partner(const std::string& name) {
    const std::string prefix = "shmbus-bench-";
    if (name.rfind(prefix, 0) != 0) return false;
    std::string digits = name.substr(prefix.size());
    if (digits.size() > 5 && digits.substr(digits.size() - 5) == ".lock") digits.resize(digits.size() - 5);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
    return kill(pid_t(std::stol(digits)), 0) != 0 && errno == ESRCH;
}

void remove_iceoryx_leftovers() {
    if (std::system("pgrep -x iox-roudi >/dev/null 2>&1") == 0) return;  // another RouDi runs: the files are its
    std::error_code ec;
    for (const auto& f : iceoryx_files())
        if (std::find(g_iceoryx_before.begin(), g_iceoryx_before.end(), f) == g_iceoryx_before.end()) std::filesystem::remove(f, ec);
    for (const auto& e : std::filesystem::directory_iterator("/tmp", ec))
        if (runtime_file_of_dead_partner(e.path().filename().string())) std::filesystem::remove(e.path(), ec);
}



void stop_all() {
    if (!g_shmbusd_external && g_shmbusd.pid > 0 && g_shmbusd.owner == getpid()) {
        shmbus::ClientOptions o;
        o.dir = g_shmbusd.dir;
        if (auto c = shmbus::Client::connect(o))  // leave no segment behind
            if (auto names = c->list_topics())
                for (const auto& n : *names) (void)c->delete_topic(n);
    }
    stop(g_shmbusd, SIGTERM);
    const bool ran_roudi = g_roudi.pid > 0 && g_roudi.owner == getpid();
    stop(g_roudi, SIGINT);
    if (ran_roudi) remove_iceoryx_leftovers();
}


std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

pid_t spawn_quiet(const std::vector<std::string>& args, const std::string& log) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    (void)!dup2(STDOUT_FILENO, STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
}

void stop(Service& s, int sig) {
    if (s.pid <= 0 || s.owner != getpid()) return;
    kill(s.pid, sig);
    waitpid(s.pid, nullptr, 0);
    s.pid = -1;
    if (!s.dir.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(s.dir, ec);
    }
}

bool wait_for(const std::function<bool()>& ready, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (ready()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

const std::string& shmbus_dir() { return g_shmbusd.dir; }

shmbus::Result<shmbus::Client> connect_bus() {
    shmbus::ClientOptions o;
    o.dir = shmbus_dir();
    o.name = "shmbus-bench";
    return shmbus::Client::connect(o);
}

bool ensure_shmbusd(std::string& why) {
    if (!g_shmbusd.dir.empty()) return true;
    if (const char* dir = std::getenv("SHMBUS_BENCH_DIR")) {  // a daemon the caller runs
        g_shmbusd.dir = dir;
        g_shmbusd_external = true;
        return true;
    }
    char tmpl[] = "/tmp/shmbus-bench-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
        why = "cannot create a bus directory";
        return false;
    }
    g_shmbusd.dir = tmpl;
    const char* path = std::getenv("SHMBUSD");
    g_shmbusd.pid = spawn_quiet({path ? path : SHMBUSD_PATH, "--dir", g_shmbusd.dir, "--state-dir", g_shmbusd.dir + "/state",
                                 "--log-level", "warn"},
                                g_shmbusd.dir + "/shmbusd.log");
    g_shmbusd.owner = getpid();
    std::atexit(stop_all);
    shmbus::ClientOptions o;
    o.dir = g_shmbusd.dir;
    if (!wait_for([&] { return shmbus::Client::connect(o).has_value(); }, std::chrono::seconds(10))) {
        why = "shmbusd did not start (" + slurp(g_shmbusd.dir + "/shmbusd.log") + ")";
        return false;
    }
    return true;
}

bool ensure_roudi(std::string& why) {
    if (g_roudi.pid > 0) return true;
    const char* path = std::getenv("IOX_ROUDI");
    const std::string roudi = path ? path : "iox-roudi";
    char tmpl[] = "/tmp/shmbus-bench-roudi-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
        why = "cannot create a RouDi log directory";
        return false;
    }
    g_roudi.dir = tmpl;
    for (const auto& f : iceoryx_files())
        if (std::filesystem::exists(f)) g_iceoryx_before.push_back(f);
    g_roudi.pid = spawn_quiet({roudi}, g_roudi.dir + "/roudi.log");
    g_roudi.owner = getpid();
    std::atexit(stop_all);
    if (!wait_for([&] { return slurp(g_roudi.dir + "/roudi.log").find("RouDi is ready") != std::string::npos; },
                  std::chrono::seconds(10))) {
        why = "iceoryx RouDi did not start: " + slurp(g_roudi.dir + "/roudi.log");
        return false;
    }
    return true;
}

}  // namespace bench
