// What callers and responders share about a topic served as a service (shmbus/request.h): who
// serves it, and the words of a conversation's headers.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/segment.h"

namespace shmbus::detail {

// The service groups of a topic with at least one member holding its slot now (shmbusd frees a
// member's slot when its process ends), and those members.
struct Responders {
    uint32_t groups = 0;
    uint32_t members = 0;
};
[[nodiscard]] Responders live_responders(const Segment& seg) noexcept;

// A correlation number as its header carries it (decimal), and back.
struct NumberText {
    char text[24];
    uint8_t size;
    [[nodiscard]] std::string_view view() const noexcept { return {text, size}; }
};
[[nodiscard]] NumberText number_text(uint64_t n) noexcept;
[[nodiscard]] std::optional<uint64_t> parse_number(std::string_view text) noexcept;

// The id of the request a reply answers (Reply::request_id).
inline constexpr std::string_view kRequestId = "shmbus-request-id";
// The words a reply's status header carries (kReplyStatus).
inline constexpr std::string_view kStatusError = "error";
inline constexpr std::string_view kStatusResponderDied = "responder-died";

}  // namespace shmbus::detail
