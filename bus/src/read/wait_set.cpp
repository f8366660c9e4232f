#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "read/subscriber_core.h"
#include "read/wait_set_core.h"

namespace shmbus {
namespace detail {

namespace {
// How often a group member in a set is reported ready with nothing new, so that its poll finds
// messages due for redelivery (receive() looks as often, kMaxSleep in subscriber.cpp).
constexpr uint64_t kGroupScanNs = 100'000'000;
// Without futex_waitv (Linux before 5.16), a watcher compares the words this often.
constexpr uint64_t kFallbackPollNs = 1'000'000;

uint64_t earliest(uint64_t a, uint64_t b) noexcept {
    if (a == 0) return b;
    if (b == 0) return a;
    return std::min(a, b);
}

Error errno_error(const char* what) {
    return make_error(Errc::io_error, std::string(what) + ": " + std::strerror(errno));
}
}  // namespace

void leave_wait_set(WaitSetCore& set, SubscriberCore& sub) noexcept { (void)set.remove(sub); }

WaitSetCore::~WaitSetCore() {
    stop_watchers();
    for (Member& m : members) m.sub->wait_set = nullptr;
    if (event_fd >= 0) ::close(event_fd);
}

Status WaitSetCore::add(SubscriberCore& sub) noexcept {
    if (sub.wait_set == this) return ok_status();
    if (sub.wait_set != nullptr) return make_error(Errc::invalid_argument, "the subscriber of '" + sub.topic + "' is in another wait set");
    disarm();  // the next arm covers it
    try {
        std::lock_guard<std::mutex> g(lock);
        members.reserve(members.size() + 1);
        words.reserve(members.size() + 1);
        ready.reserve(members.size() + 1);
        members.push_back({&sub, monotonic_ns() + kGroupScanNs});
        words.push_back({&sub.seg.producers().data_futex, 0, true});
    } catch (...) {
        return make_error(Errc::io_error, "out of memory adding to a wait set");
    }
    sub.count_as_sleeper_for_wait_set();
    sub.wait_set = this;
    return ok_status();
}

bool WaitSetCore::remove(SubscriberCore& sub) noexcept {
    if (sub.wait_set != this) return false;
    disarm();
    {
        std::lock_guard<std::mutex> g(lock);
        for (std::size_t i = 0; i < members.size(); ++i) {
            if (members[i].sub != &sub) continue;
            members.erase(members.begin() + std::ptrdiff_t(i));
            words.erase(words.begin() + std::ptrdiff_t(i));
            break;
        }
    }
    ready.clear();  // may name it
    sub.wait_set = nullptr;
    return true;
}

bool WaitSetCore::collect_ready(uint64_t now, uint64_t& look_by) noexcept {
    ready.clear();  // reserved in add(): never allocates
    look_by = 0;
    for (Member& m : members) {
        bool may = m.sub->may_deliver(now);
        if (m.sub->group) {
            if (!may && now >= m.next_scan_ns) may = true;
            if (may) m.next_scan_ns = now + kGroupScanNs;
            look_by = earliest(look_by, m.next_scan_ns);
        }
        if (may) ready.push_back(m.sub->handle);
        else look_by = earliest(look_by, m.sub->look_again_by(now));
    }
    return !ready.empty();
}

void WaitSetCore::register_waiting() noexcept {
    std::lock_guard<std::mutex> g(lock);
    if (registered) return;
    for (std::size_t i = 0; i < members.size(); ++i) {
        members[i].sub->seg.consumers().data_waiters.fetch_add(1, std::memory_order_seq_cst);
        // SYNC: seq_cst, after the increment above; pairs with the fence in
        // PublisherCore::wake_readers, as in sleep_on_data: either the look that follows sees
        // the commit, or the publisher sees us counted and bumps the word.
        words[i].expected = words[i].word->load(std::memory_order_seq_cst);
    }
    registered = true;
}

void WaitSetCore::unregister_waiting() noexcept {
    // Called with `lock` held (or with no watcher running).
    if (!registered) return;
    for (Member& m : members) m.sub->seg.consumers().data_waiters.fetch_sub(1, std::memory_order_relaxed);  // relaxed: a hint
    registered = false;
}

void WaitSetCore::sleep_here(uint64_t until) noexcept {
    if (futex_waitv(words.data(), words.size(), until) == WaitvResult::woken) return;
    // Linux before 5.16: sleep on the first word, looking at the others every millisecond.
    const uint64_t now = monotonic_ns();
    uint64_t step = kFallbackPollNs;
    if (until != 0) step = until > now ? std::min(step, until - now) : 0;
    futex_wait(*words.front().word, words.front().expected, std::chrono::nanoseconds(step));
}

Result<std::span<Subscriber* const>> WaitSetCore::wait(std::chrono::nanoseconds timeout) noexcept {
    const uint64_t start = monotonic_ns();
    const uint64_t deadline = timeout.count() > 0 ? start + uint64_t(timeout.count()) : 0;
    for (;;) {
        disarm();  // fd mode: the watchers' sleep (and their counts) back to us
        const uint64_t now = monotonic_ns();
        uint64_t look_by = 0;
        if (collect_ready(now, look_by)) {
            if (event_fd >= 0) signal_event();  // readable while something may be ready
            return std::span<Subscriber* const>(ready);
        }
        const bool expired = deadline == 0 || now >= deadline;
        if (members.empty() && expired) return std::span<Subscriber* const>();
        if (!members.empty()) {
            register_waiting();
            // The protocol's second look, after counting ourselves and reading the words.
            if (collect_ready(now, look_by)) {
                {
                    std::lock_guard<std::mutex> g(lock);
                    unregister_waiting();
                }
                if (event_fd >= 0) signal_event();  // takes `lock` itself
                return std::span<Subscriber* const>(ready);
            }
        }
        if (event_fd >= 0 || members.size() > kWordsPerWatcher) {
            if (event_fd < 0) {
                if (auto fd_made = fd(); !fd_made) return fd_made.error();
            }
            clear_event();
            if (Status armed_now = arm(look_by); !armed_now) return armed_now.error();
            if (expired) return std::span<Subscriber* const>();
            if (auto r = wait_on_event(deadline); !r) return r;
            continue;
        }
        if (expired) {
            std::lock_guard<std::mutex> g(lock);
            unregister_waiting();
            return std::span<Subscriber* const>();
        }
        if (members.empty()) {
            futex_wait(control, control.load(std::memory_order_relaxed), std::chrono::nanoseconds(deadline - now));
            continue;
        }
        sleep_here(earliest(deadline, look_by));
        std::lock_guard<std::mutex> g(lock);
        unregister_waiting();
    }
}

Result<std::span<Subscriber* const>> WaitSetCore::wait_on_event(uint64_t deadline) noexcept {
    pollfd p{event_fd, POLLIN, 0};
    const uint64_t now = monotonic_ns();
    const uint64_t left = deadline > now ? deadline - now : 0;
    timespec ts{time_t(left / 1'000'000'000), long(left % 1'000'000'000)};
    if (::ppoll(&p, 1, &ts, nullptr) < 0 && errno != EINTR) return errno_error("waiting on the wait set's eventfd");
    return std::span<Subscriber* const>();
}

void WaitSetCore::kick_watchers() noexcept {
    // SYNC: release pairs with the acquire load of `control` at the top of watch(); the state it
    // guards is read under `lock` anyway: this only ends sleeps on old words.
    control.fetch_add(1, std::memory_order_release);
    futex_wake_all(control);
}

Status WaitSetCore::arm(uint64_t look_by) noexcept {
    if (Status started = start_watchers(); !started) {
        std::lock_guard<std::mutex> g(lock);
        unregister_waiting();
        return started;
    }
    {
        std::lock_guard<std::mutex> g(lock);
        armed = true;
        arm_deadline = look_by;
        ++generation;
    }
    kick_watchers();
    return ok_status();
}

void WaitSetCore::disarm() noexcept {
    if (watchers.empty()) return;
    {
        std::lock_guard<std::mutex> g(lock);
        if (!armed) return;
        armed = false;
        ++generation;
        unregister_waiting();
    }
    kick_watchers();
}

void WaitSetCore::signal_event() noexcept {
    std::lock_guard<std::mutex> g(lock);  // callers do not hold it
    if (event_pending) return;
    const uint64_t one = 1;
    if (::write(event_fd, &one, sizeof one) == sizeof one) event_pending = true;
}

void WaitSetCore::clear_event() noexcept {
    std::lock_guard<std::mutex> g(lock);
    uint64_t count = 0;
    while (::read(event_fd, &count, sizeof count) == sizeof count) {
    }
    event_pending = false;
}

Result<int> WaitSetCore::fd() noexcept {
    if (event_fd >= 0) return event_fd;
    const int made = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (made < 0) return errno_error("eventfd");
    event_fd = made;
    if (Status started = start_watchers(); !started) {
        ::close(event_fd);
        event_fd = -1;
        return started.error();
    }
    // Nothing armed yet: readable, so that the first wait(0) looks and arms.
    signal_event();
    return event_fd;
}

Status WaitSetCore::start_watchers() noexcept {
    const std::size_t needed = std::max<std::size_t>(1, (members.size() + kWordsPerWatcher - 1) / kWordsPerWatcher);
    try {
        while (watchers.size() < needed) {
            const std::size_t first = watchers.size() * kWordsPerWatcher;
            watchers.emplace_back([this, first] { watch(first); });
        }
    } catch (...) {
        return make_error(Errc::io_error, "cannot start a wait set's watcher thread");
    }
    return ok_status();
}

void WaitSetCore::watch(std::size_t first) noexcept {
    WaitWord local[kMaxWaitWords];
    bool waitv = true;
    for (;;) {
        // SYNC: acquire pairs with kick_watchers' release increment (see there).
        const uint32_t control_seen = control.load(std::memory_order_acquire);
        std::size_t n = 0;
        uint64_t gen = 0, deadline = 0;
        bool mine = false;
        {
            std::lock_guard<std::mutex> g(lock);
            if (stopping) return;
            if (armed && (first < words.size() || first == 0)) {
                n = first < words.size() ? std::min(words.size() - first, kWordsPerWatcher) : 0;
                std::copy_n(words.begin() + std::ptrdiff_t(first), n, local);
                gen = generation;
                deadline = arm_deadline;
                mine = true;
            }
        }
        if (!mine) {
            futex_wait(control, control_seen, std::chrono::seconds(1));
            continue;
        }
        local[n] = {&control, control_seen, true};  // shared: woken by futex_wake_all, as every word here
        if (waitv && futex_waitv(local, n + 1, deadline) == WaitvResult::unsupported) waitv = false;
        if (!waitv) {
            futex_wait(control, control_seen, std::chrono::nanoseconds(kFallbackPollNs));
            const bool moved = std::any_of(local, local + n, [](const WaitWord& w) {
                return w.word->load(std::memory_order_relaxed) != w.expected;  // relaxed: fired on, then looked at under the protocol
            });
            if (!moved && (deadline == 0 || monotonic_ns() < deadline)) continue;
        }
        // relaxed: only tells whether the application changed the arming meanwhile (it holds the lock for that).
        if (control.load(std::memory_order_relaxed) != control_seen) continue;
        bool fired = false;
        {
            std::lock_guard<std::mutex> g(lock);
            if (armed && generation == gen) {
                armed = false;
                ++generation;
                unregister_waiting();
                fired = true;
            }
        }
        if (fired) {
            signal_event();
            kick_watchers();  // the others stop sleeping on words no longer counted
        }
    }
}

void WaitSetCore::stop_watchers() noexcept {
    {
        std::lock_guard<std::mutex> g(lock);
        stopping = true;
        armed = false;
        unregister_waiting();
    }
    kick_watchers();
    for (std::thread& t : watchers) t.join();
    watchers.clear();
}

}  // namespace detail

WaitSet::WaitSet() noexcept {
    try {
        core_ = std::make_unique<detail::WaitSetCore>();
    } catch (...) {  // out of memory: every call says so
    }
}
WaitSet::WaitSet(WaitSet&&) noexcept = default;
WaitSet& WaitSet::operator=(WaitSet&&) noexcept = default;
WaitSet::~WaitSet() = default;

Status WaitSet::add(Subscriber& subscriber) noexcept {
    if (!core_) return make_error(Errc::io_error, "out of memory: the wait set could not be made");
    if (!subscriber.core_) return make_error(Errc::invalid_argument, "a moved-from subscriber");
    return core_->add(*subscriber.core_);
}
bool WaitSet::remove(Subscriber& subscriber) noexcept {
    return core_ && subscriber.core_ && core_->remove(*subscriber.core_);
}
std::size_t WaitSet::size() const noexcept { return core_ ? core_->members.size() : 0; }
Result<std::span<Subscriber* const>> WaitSet::wait(std::chrono::nanoseconds timeout) noexcept {
    if (!core_) return make_error(Errc::io_error, "out of memory: the wait set could not be made");
    return core_->wait(timeout);
}
Result<int> WaitSet::fd() noexcept {
    if (!core_) return make_error(Errc::io_error, "out of memory: the wait set could not be made");
    return core_->fd();
}

}  // namespace shmbus
