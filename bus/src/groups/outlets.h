// Where a group member's messages go when they leave the ring's order: dead letters to the topic's
// dead-letter topic, messages waiting out a backoff to the tail of their own topic. The client
// opens the publishers (on the first message) and hands them in.
#pragma once

#include <functional>
#include <string>

#include "groups/group.h"
#include "shmbus/publisher.h"
#include "shmbus/topic.h"

namespace shmbus::detail {

struct PublisherCore;

// The settings a dead-letter topic made on first use gets: room for any message of `source` with
// its dead-letter headers (one made with the defaults refused a large one, which then waited in
// retry forever).
[[nodiscard]] TopicConfig dead_letter_config(const TopicConfig& source) noexcept;
// Publishes a dead letter of `topic` through `publisher` (nullptr while it cannot be opened: the
// letter waits) with the headers of its origin.
[[nodiscard]] GroupMember::DeadLetter dead_letter_outlet(std::function<Publisher*()> publisher, std::string topic);
// Moves a message waiting out a backoff to the tail through `publisher`'s core.
[[nodiscard]] GroupMember::Repark repark_outlet(std::function<PublisherCore*()> publisher);

}  // namespace shmbus::detail
