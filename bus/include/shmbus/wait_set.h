// WaitSet: one thread waits on many subscriptions at once, by itself or through a file
// descriptor that an event loop (epoll, Boost.Asio, libuv, asyncio) watches.
//
//   shmbus::WaitSet set;
//   set.add(prices);                              // Subscribers, consumer-group members included
//   set.add(orders);
//   for (;;) {
//       auto ready = set.wait(std::chrono::seconds(1));
//       for (shmbus::Subscriber* s : ready.value()) s->poll(handle);
//   }
//
// With an event loop: watch set.fd() for reading; when it is readable call set.wait(0) and poll
// the subscriptions it names. The descriptor stays readable while a subscription may have
// something to deliver, and is reset by a wait() that finds nothing ready (which arms it again):
// it behaves as a level-triggered descriptor (docs/wait-sets.md).
//
// A ready subscription may still poll empty (a message taken by another group member, a record
// that turned out to be a skip): poll() tells. Publishers pay nothing more for a subscription in
// a wait set than for one asleep in receive(): they wake it through the topic's data futex, and
// only while it waits.
//
// Threads: a WaitSet belongs to one thread at a time, as its subscriptions do (docs/threads.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>

#include "shmbus/result.h"
#include "shmbus/subscriber.h"

namespace shmbus {

namespace detail {
struct WaitSetCore;
}

class WaitSet {
public:
    WaitSet() noexcept;
    WaitSet(WaitSet&&) noexcept;
    WaitSet& operator=(WaitSet&&) noexcept;
    ~WaitSet();  // its subscriptions leave it (they live on)

    // Adds `subscriber`: the set refers to it, wherever it is moved, until it is removed or
    // destroyed (it leaves the set then by itself). A subscriber belongs to one set at a time:
    // adding it to another is invalid_argument; adding it again to this one changes nothing.
    [[nodiscard]] Status add(Subscriber& subscriber) noexcept;
    // False if it was not in the set.
    bool remove(Subscriber& subscriber) noexcept;
    [[nodiscard]] std::size_t size() const noexcept;

    // Waits up to `timeout` (0: not at all) until at least one subscription may have something
    // to deliver, and returns those (valid until the next call on the set). An empty list means
    // none before the deadline. Errors: only io_error, from the descriptor's machinery.
    [[nodiscard]] Result<std::span<Subscriber* const>> wait(std::chrono::nanoseconds timeout) noexcept;

    // A descriptor that is readable while some subscription may have something to deliver (see
    // above), or why it cannot be made (EMFILE, no thread). Owned by the set: do not close it.
    // The first call starts the set's watcher thread (one per 127 subscriptions), which sleeps
    // on the subscriptions' futexes and makes the descriptor readable when one is bumped.
    [[nodiscard]] Result<int> fd() noexcept;

private:
    std::unique_ptr<detail::WaitSetCore> core_;
};

}  // namespace shmbus
