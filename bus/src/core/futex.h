// Shared (cross-process) futex wait and wake on 32-bit words in a segment.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
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

// One word of a vectored wait (futex_waitv, Linux 5.16): sleeps until any word differs from its
// expected value or is woken, at most until `deadline_ns` (CLOCK_MONOTONIC; 0: no deadline).
// `shared`: a word in a segment other processes map (woken by FUTEX_WAKE without the private flag).
struct WaitWord {
    std::atomic<uint32_t>* word;
    uint32_t expected;
    bool shared;
};
inline constexpr std::size_t kMaxWaitWords = 128;  // FUTEX_WAITV_MAX
// unsupported: the call is not available here (callers fall back to polling the words).
enum class WaitvResult : uint8_t { woken, unsupported };
inline WaitvResult futex_waitv(const WaitWord* words, std::size_t count, uint64_t deadline_ns) noexcept {
#ifdef SYS_futex_waitv
    struct futex_waitv v[kMaxWaitWords] = {};
    if (count > kMaxWaitWords) count = kMaxWaitWords;
    for (std::size_t i = 0; i < count; ++i) {
        v[i].val = words[i].expected;
        v[i].uaddr = uint64_t(reinterpret_cast<uintptr_t>(words[i].word));
        v[i].flags = FUTEX_32 | (words[i].shared ? 0 : FUTEX_PRIVATE_FLAG);
    }
    timespec ts{time_t(deadline_ns / 1'000'000'000), long(deadline_ns % 1'000'000'000)};
    if (syscall(SYS_futex_waitv, v, unsigned(count), 0u, deadline_ns != 0 ? &ts : nullptr, CLOCK_MONOTONIC) >= 0)
        return WaitvResult::woken;
    // A word that moved (EAGAIN), a signal, the deadline: woken. Anything else (ENOSYS before
    // Linux 5.16, EPERM from a seccomp filter that does not know the call) means it cannot be
    // used here, rather than a wake every time it is called.
    return errno == EAGAIN || errno == EINTR || errno == ETIMEDOUT ? WaitvResult::woken : WaitvResult::unsupported;
#else
    (void)words, (void)count, (void)deadline_ns;
    return WaitvResult::unsupported;
#endif
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
