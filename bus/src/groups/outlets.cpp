#include "groups/outlets.h"

#include <algorithm>
#include <string>
#include <vector>

#include "publish/publisher_core.h"
#include "shmbus/headers.h"
#include "shmbus/names.h"

namespace shmbus::detail {

// Bytes a dead letter adds to its message: six headers of origin (the reason up to
// kMaxHeaderValue), with their keys and lengths, rounded up generously.
constexpr uint64_t kDeadLetterAllowance = 8192;

// A dead-letter topic made on first use holds any message of its topic with its dead-letter
// headers (one made with the defaults refused a large one, which then waited in retry forever).
TopicConfig dead_letter_config(const TopicConfig& source) noexcept {
    TopicConfig c;
    const uint64_t needed = uint64_t(source.max_message) + kDeadLetterAllowance;
    c.capacity = std::max<uint64_t>(source.capacity, kMinCapacity);
    while (max_message_for(c.capacity) < needed && c.capacity < kMaxCapacity) c.capacity *= 2;
    c.max_message = uint32_t(std::min<uint64_t>(needed, max_message_for(c.capacity)));
    return c;
}


GroupMember::DeadLetter dead_letter_outlet(std::function<Publisher*()> publisher, std::string topic) {
    using Outcome = DeadLetterOutcome;
    return [publisher = std::move(publisher), topic = std::move(topic)](const DeadLetterInfo& letter) {
        Publisher* dlq = publisher();
        if (dlq == nullptr) return Outcome::later;
        const Message& m = letter.message;
        // Its own headers first (less any origin of an earlier dead-lettering), then where it came from.
        std::vector<Header> headers;
        for (const Header& h : m.headers)
            if (!is_shmbus_header(h.key) && headers.size() + 6 < kMaxHeaders) headers.push_back(h);
        const std::string id = std::to_string(m.id), attempts = std::to_string(m.attempt);
        const std::string first = rfc3339_utc(letter.first_delivery_ns), last = rfc3339_utc(letter.last_delivery_ns);
        headers.push_back({kDeadLetterTopic, topic});
        headers.push_back({kDeadLetterId, id});
        headers.push_back({kDeadLetterAttempts, attempts});
        headers.push_back({kDeadLetterReason, letter.reason.substr(0, kMaxHeaderValue)});
        // A message that expired before its first delivery was never delivered: no times to give.
        if (letter.first_delivery_ns != 0) headers.push_back({kDeadLetterFirstDelivery, first});
        if (letter.last_delivery_ns != 0) headers.push_back({kDeadLetterLastDelivery, last});
        // Its key goes with it; its expiry and delivery time do not (a dead letter waits to be looked at).
        switch (dlq->publish(m.payload, MessageOptions{.headers = headers, .key = m.key}, std::chrono::nanoseconds(0))) {
            case PublishStatus::ok: return Outcome::sent;
            case PublishStatus::too_large:
            case PublishStatus::bad_headers: return Outcome::refused;  // it will never fit as it is
            default: return Outcome::later;
        }
    };
}


GroupMember::Repark repark_outlet(std::function<PublisherCore*()> publisher) {
    return [publisher = std::move(publisher)](const layout::RetryInfo& info, std::span<const std::byte> data, uint16_t flags,
                                              uint64_t& position) {
        PublisherCore* own = publisher();
        return own != nullptr && publish_retry(*own, info, data, flags, position) == PublishStatus::ok;
    };
}

}  // namespace shmbus::detail
