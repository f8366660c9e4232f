#include "core/proc.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace shmbus::detail {

uint64_t process_start_time(pid_t pid) noexcept {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    const char* p = std::strrchr(buf, ')');
    if (p == nullptr) return 0;
    int field = 2;
    for (; *p != '\0' && field < 22; ++p)
        if (*p == ' ') ++field;
    unsigned long long start = 0;
    if (field != 22 || std::sscanf(p, "%llu", &start) != 1) return 0;
    return start;
}

bool process_alive(pid_t pid, uint64_t start_time) noexcept {
    if (pid <= 0) return false;
    if (kill(pid, 0) != 0 && errno == ESRCH) return false;
    const uint64_t now = process_start_time(pid);
    if (now == 0) return false;  // zombie reaped or /proc hidden: treat as gone
    return start_time == 0 || now == start_time;
}

}  // namespace shmbus::detail
