// Repeated log lines, thinned: a client that asks for what it may not have, thousands of times a
// second, must not fill the disk with shmbusd's log. Each kind of line (its key: who, what, which
// topic) is logged at most once per interval; the next one logged says how many were left out.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

namespace shmbus::daemon {

class LogLimit {
public:
    explicit LogLimit(uint64_t interval_ns = 1'000'000'000) noexcept : interval_ns_(interval_ns) {}

    // Whether a line of kind `key` may be logged at `now_ns` (CLOCK_MONOTONIC). When it may,
    // `suppressed` is how many lines of that kind were refused since the last one logged.
    [[nodiscard]] bool allow(const std::string& key, uint64_t now_ns, uint64_t& suppressed) {
        if (seen_.size() >= kMaxKeys && seen_.find(key) == seen_.end()) forget_quiet(now_ns);
        Seen& s = seen_[key];
        if (s.logged_ns != 0 && now_ns - s.logged_ns < interval_ns_) {
            ++s.suppressed;
            return false;
        }
        suppressed = s.suppressed;
        s = {now_ns, 0};
        return true;
    }

private:
    static constexpr std::size_t kMaxKeys = 4096;  // kinds remembered at once (a flood of distinct ones)
    struct Seen {
        uint64_t logged_ns = 0;
        uint64_t suppressed = 0;
    };
    // Kinds not logged within the interval have nothing left to say: forgotten. If every kind
    // is recent, all are forgotten (a bounded map over an exact count).
    void forget_quiet(uint64_t now_ns) {
        std::erase_if(seen_, [&](const auto& kv) { return now_ns - kv.second.logged_ns >= interval_ns_; });
        if (seen_.size() >= kMaxKeys) seen_.clear();
    }
    uint64_t interval_ns_;
    std::unordered_map<std::string, Seen> seen_;
};

}  // namespace shmbus::daemon
