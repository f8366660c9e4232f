// The table of statistics: every figure a topic and its subscriptions report, once, with its
// name, its words for people and its help text. `shmbus topic info` (text and JSON) and any
// exporter read these tables, so a new counter is added here and nowhere else.
#pragma once

#include <cstdint>
#include <span>

#include "shmbus/topic.h"

namespace shmbus {

enum class StatKind : uint8_t {
    counter,  // only grows while the topic exists
    gauge,    // goes up and down
};

template <class Stats>
struct Statistic {
    const char* key;    // snake_case: the JSON key
    const char* metric; // the Prometheus metric name (labelled by topic, and subscription)
    const char* label;  // words for the text view, e.g. "full refusals"
    const char* help;   // one sentence: what is counted, for people and an exporter's HELP line
    StatKind kind;
    uint64_t (*get)(const Stats&) noexcept;
};

// Figures of the topic as a whole.
[[nodiscard]] std::span<const Statistic<TopicStats>> topic_statistics() noexcept;
// What shmbusd repaired on the topic (TopicStats::recovery), each an event count.
[[nodiscard]] std::span<const Statistic<TopicStats>> recovery_statistics() noexcept;
// The topic as a service (TopicStats::requests): requests, replies and what failed.
[[nodiscard]] std::span<const Statistic<TopicStats>> request_statistics() noexcept;
// Figures of one subscription.
[[nodiscard]] std::span<const Statistic<SubscriptionStats>> subscription_statistics() noexcept;
// Figures of one consumer group (labelled by topic and group).
[[nodiscard]] std::span<const Statistic<GroupStats>> group_statistics() noexcept;

}  // namespace shmbus
