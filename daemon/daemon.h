// shmbusd: the supervisor of one bus directory, never on the data path. This class is its
// startup and ownership of the parts, each in its own file:
//   event_loop   the epoll loop, dispatching by descriptor
//   server       the bus socket, connections, frame decoding and the routing table
//   handlers     one function per request type
//   watchers     pidfds of owners without a connection, and the tick timer
//   registry     the topics of the bus directory, each with its TopicSupervisor
//   topic_supervisor  the recovery policy of one topic, on its segment alone
//   gc           stale state of buses that no longer run
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "access_control.h"
#include "archives/archives.h"
#include "config.h"
#include "event_loop.h"
#include "handlers/handlers.h"
#include "metrics.h"
#include "registry.h"
#include "server.h"
#include "watchers.h"
#include "shmbus/result.h"

namespace shmbus::daemon {

struct Options {
    std::string dir;
    Config config;             // from --config, if given (empty: the bus owner alone, as without rules)
    std::string config_path;   // reread on SIGHUP; empty: none
    std::string metrics;       // Prometheus endpoint, "PORT" (loopback) or "HOST:PORT"; empty: none
    std::string state_dir;     // archives and persisted cursors; empty: [bus] state_dir, else default_state_dir()
    std::string executable;    // this program, run again as each archived topic's archiver; empty: none started
    std::string log_level = "info";  // the archivers'
};

class Daemon {
public:
    explicit Daemon(Options options);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Prepares the directory, takes the lock, re-adopts segments and listens.
    [[nodiscard]] Status start();
    // Serves clients until SIGTERM or SIGINT. Returns the process exit code.
    int run();

private:
    [[nodiscard]] Status prepare_dir();
    [[nodiscard]] Status take_lock();
    [[nodiscard]] Status load_bus_id();
    [[nodiscard]] Status write_bus_id(const std::string& path);
    [[nodiscard]] Status adopt_topics();
    void create_configured_topics();
    [[nodiscard]] Status watch_signals();
    [[nodiscard]] Status watch_reservations();
    void reload_config();
    [[nodiscard]] Status serve_metrics();
    // Lets the access group reach the directory (to connect to the socket, nothing more).
    [[nodiscard]] Status open_dir_to_group();
    [[nodiscard]] static uint64_t raise_descriptor_limit();

    Options options_;
    uint64_t bus_id_ = 0;
    int lock_fd_ = -1;
    int signal_fd_ = -1;
    // Declared in the order they depend on each other; destroyed in reverse.
    EventLoop loop_;
    AccessControl access_;
    std::unique_ptr<Registry> registry_;
    std::unique_ptr<Archives> archives_;
    std::unique_ptr<Watchers> watchers_;
    std::unique_ptr<RequestHandlers> handlers_;
    std::unique_ptr<Server> server_;
    std::unique_ptr<Metrics> metrics_;
    int metrics_timer_ = -1;
};

}  // namespace shmbus::daemon
