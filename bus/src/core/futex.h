// Shared (cross-process) futex wait and wake on 32-bit words in a segment.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>

namespace shmbus::detail {

// Sleeps while *word == expected, at most `timeout`. Spurious returns are fine: callers re-check.
inline void futex_wait(std::atomic<uint32_t>& word, uint32_t expected, std::chrono::nanoseconds timeout) noexcept {
    if (timeout.count() <= 0) return;
    timespec ts{};
    ts.tv_sec = time_t(timeout.count() / 1'000'000'000);
    ts.tv_nsec = long(timeout.count() % 1'000'000'000);
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

inline void futex_wake_all(std::atomic<uint32_t>& word) noexcept {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

inline void futex_wake_one(std::atomic<uint32_t>& word) noexcept {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

// Bumps a futex word and wakes everyone asleep on it. A sleeper reads the word before its last
// look at the condition and sleeps only while the word is unchanged, so it cannot miss this.
inline void futex_signal(std::atomic<uint32_t>& word) noexcept {
    // SYNC: release pairs with the sleeper's (seq_cst) load of the word before futex_wait.
    word.fetch_add(1, std::memory_order_release);
    futex_wake_all(word);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

inline uint64_t monotonic_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

}  // namespace shmbus::detail
