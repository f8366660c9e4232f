// Subscriptions by pattern (docs/patterns.md): one subscription over every topic whose name
// matches a pattern, topics created after it included. Tokens are the parts of a name between
// dots; `*` matches exactly one token and `>`, as the last token, one or more (as NATS does):
//
//   auto sensors = client.subscribe_pattern("sensors.>");   // sensors.kitchen, sensors.hall.temp, ...
//   sensors->receive([](const shmbus::Message& m) { std::printf("%.*s\n", int(m.topic.size()), m.topic.data()); },
//                    std::chrono::seconds(1));
//
// Each topic is a subscription of its own with the options given (a durable name makes one durable
// subscription of that name per topic, each resuming where it was acked): messages of one topic come
// in order, and each says its topic (Message::topic). Topics the caller may not read are left out
// (refused()). New topics are looked for when /dev/shm says one may have been made (see below),
// and at once by refresh(); a topic
// found after the subscription was made is read from its first message (SubscribeOptions::from
// applies to the topics there at the start, and a time to all).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/result.h"
#include "shmbus/subscriber.h"

namespace shmbus {

class Client;

// A pattern: topic-name tokens separated by '.', each a name's characters or `*`, with `>` only as
// the last token; at least one `*` or `>` (a name without them is a topic, not a pattern).
[[nodiscard]] Status validate_topic_pattern(std::string_view pattern) noexcept;
[[nodiscard]] bool is_topic_pattern(std::string_view text) noexcept;  // holds `*` or `>`
[[nodiscard]] bool topic_matches(std::string_view pattern, std::string_view topic) noexcept;

// New topics: shmbusd makes each topic's shared-memory object in /dev/shm, and the kernel says so
// (inotify): a pattern subscription looks for that notice at most every kPatternNoticeCheck (also
// while it waits) and lists the topics when one came, and in any case every kPatternRelist. Where
// the kernel cannot tell (no inotify), it lists them every kPatternRefresh.
inline constexpr std::chrono::milliseconds kPatternNoticeCheck{5};
inline constexpr std::chrono::milliseconds kPatternRelist{1000};
inline constexpr std::chrono::milliseconds kPatternRefresh{100};

// A pattern subscription some client holds (Client::pattern_subscriptions).
struct PatternSubscriptionInfo {
    std::string pattern;
    int32_t pid = 0;
    uint32_t uid = 0;
};

namespace detail {
struct PatternCore;
}

class PatternSubscriber {
public:
    PatternSubscriber(PatternSubscriber&&) noexcept;
    PatternSubscriber& operator=(PatternSubscriber&&) noexcept;
    ~PatternSubscriber();

    // Delivers up to `max` ready messages across the covered topics (in turn), after looking for
    // new topics if one was noticed (or kPatternRelist passed). `deleted` never: a deleted topic just leaves.
    [[nodiscard]] PollResult poll(Handler handler, std::size_t max = 256) noexcept;
    // As poll(), waiting up to `timeout` for the first message (asleep on every covered topic).
    [[nodiscard]] PollResult receive(Handler handler, std::chrono::nanoseconds timeout, std::size_t max = 256) noexcept;
    // Acks one message (it names its topic), or everything delivered so far (auto_ack = false).
    [[nodiscard]] AckStatus ack(const Message& message) noexcept;
    void ack_delivered() noexcept;
    // Looks for new matching topics now; the number of topics added.
    [[nodiscard]] Result<std::size_t> refresh() noexcept;

    [[nodiscard]] const std::string& pattern() const noexcept;
    [[nodiscard]] std::vector<std::string> topics() const;   // covered now, by name
    [[nodiscard]] std::vector<std::string> refused() const;  // matching, but not readable by the caller
    [[nodiscard]] uint64_t lost() const noexcept;             // over all covered topics

private:
    friend class Client;
    explicit PatternSubscriber(std::unique_ptr<detail::PatternCore> core) noexcept;
    std::unique_ptr<detail::PatternCore> core_;
};

}  // namespace shmbus
