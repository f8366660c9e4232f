// Request/reply inside the library: what a caller's inbox holds, and the way into the publishers
// and subscribers a conversation is made of (shmbus/request.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "publish/publisher_core.h"
#include "read/subscriber_core.h"
#include "request/service.h"
#include "shmbus/publisher.h"
#include "shmbus/subscriber.h"

namespace shmbus::detail {

struct Conversation {
    [[nodiscard]] static PublisherCore& core(Publisher& p) noexcept { return *p.core_; }
    [[nodiscard]] static SubscriberCore& core(Subscriber& s) noexcept { return *s.core_; }
};

// A caller's inbox: its subscription, the publishers of the topics it called, and the requests that
// timed out lately (so that their replies, if they still come, are counted against their topics).
struct Inbox {
    std::string name;
    Subscriber reader;
    uint64_t reconnects = 0;         // the Client's count when it was made: after a reconnect it is gone
    uint64_t next_correlation = 1;
    struct Service {
        std::string topic;
        Publisher publisher;
        uint64_t checked_ns = 0;     // when its responders were last counted (CLOCK_MONOTONIC)
        Responders responders{};
    };
    std::vector<Service> services;
    struct TimedOut {
        uint64_t correlation = 0;
        std::size_t service = 0;
    };
    std::vector<TimedOut> timed_out;  // the last kRememberedTimeouts, oldest first
};
inline constexpr std::size_t kRememberedTimeouts = 64;
inline constexpr std::size_t kMaxServicesPerInbox = 64;

// A Client's inboxes not in use by a call now.
class Conversations {
public:
    [[nodiscard]] std::unique_ptr<Inbox> take() noexcept {
        std::lock_guard lock(mutex_);
        if (idle_.empty()) return nullptr;
        auto inbox = std::move(idle_.back());
        idle_.pop_back();
        return inbox;
    }
    void give_back(std::unique_ptr<Inbox> inbox) noexcept {
        std::lock_guard lock(mutex_);
        idle_.push_back(std::move(inbox));
    }

private:
    std::mutex mutex_;
    std::vector<std::unique_ptr<Inbox>> idle_;
};

}  // namespace shmbus::detail
