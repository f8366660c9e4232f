// Services a benchmark process starts once and stops at exit (daemons.cpp): shmbusd, iceoryx's
// RouDi, Aeron's media driver. Each is a child whose output goes to a log file.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace bench {

struct Service {
    pid_t pid = -1;
    pid_t owner = -1;  // only the benchmark process (not a forked partner) stops it
    std::string dir;
};

// Starts `args` as a child with stdout and stderr in `log`; returns its pid.
pid_t spawn_quiet(const std::vector<std::string>& args, const std::string& log);
// Sends `sig` to the service (only from the process that started it), reaps it, removes its dir.
void stop(Service& s, int sig);
// Polls `ready` every 10 ms until it holds (true) or `limit` passes (false).
bool wait_for(const std::function<bool()>& ready, std::chrono::seconds limit);

}  // namespace bench
