// Fault injection for the recovery tests: SHMBUS_CRASH_POINT=<point>:<N> makes the process kill
// itself with SIGKILL the Nth time it reaches <point>. Points: in_claim (the claim CAS won, the
// claim not yet recorded), in_wrap (an early wrap's padding claim won, the padding not written), after_claim (a claim recorded, not committed), before_commit (a named
// producer's publish marked pending, the record not committed), after_commit (its record
// committed, the sequence table not told), after_store_commit (an IdempotentConsumer committed a
// message's transaction, the message not acked), before_ack (messages delivered, the ack not stored),
// mid_subscribe (shmbusd attached the subscription, the client never saw the reply). The variable is read once, when
// a publisher or subscriber is created; the hot path only compares a counter.
#pragma once

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace shmbus::detail {

class CrashPoint {
public:
    // N if SHMBUS_CRASH_POINT names `point`, else 0 (never).
    [[nodiscard]] static uint64_t passes_before(const char* point) noexcept {
        const char* v = std::getenv("SHMBUS_CRASH_POINT");
        const std::size_t n = std::strlen(point);
        if (v == nullptr || std::strncmp(v, point, n) != 0 || v[n] != ':') return 0;
        return std::strtoull(v + n + 1, nullptr, 10);
    }
    explicit CrashPoint(const char* point) noexcept : at_(passes_before(point)) {}
    // Counts one pass; the Nth kills the process. Off: one compare.
    void pass() noexcept {
        if (at_ != 0 && ++passes_ == at_) raise(SIGKILL);
    }

private:
    uint64_t at_;
    uint64_t passes_ = 0;
};

}  // namespace shmbus::detail
