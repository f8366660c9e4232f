// Process identity for liveness checks: a pid plus its start time, so a recycled pid is never
// mistaken for the process that registered a slot.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace shmbus::detail {

// A process, told apart from a later one that reuses its pid by its start time.
struct Process {
    int32_t pid = 0;
    uint64_t start_time = 0;
    friend bool operator==(const Process&, const Process&) = default;
};

// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat); 0 if unknown.
[[nodiscard]] uint64_t process_start_time(pid_t pid) noexcept;
// True if `pid` runs and started at `start_time` (any start time when start_time is 0).
[[nodiscard]] bool process_alive(pid_t pid, uint64_t start_time) noexcept;
[[nodiscard]] inline bool process_alive(const Process& p) noexcept { return process_alive(p.pid, p.start_time); }

}  // namespace shmbus::detail
