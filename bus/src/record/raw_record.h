// The record behind a delivered Message as the ring (or the archive) stores it: its flags and its
// body (producer stamp, header block, payload). For the archiver, which writes records as they were.
#pragma once

#include <span>

#include "shmbus/subscriber.h"
#include "record/record_view.h"

namespace shmbus::detail {

struct RawRecord {
    [[nodiscard]] static uint16_t flags(const Message& m) noexcept { return m.record_flags_; }
    [[nodiscard]] static std::span<const std::byte> body(const Message& m) noexcept { return m.record_body_; }
    [[nodiscard]] static bool from_archive(const Message& m) noexcept { return m.from_archive_; }
};

}  // namespace shmbus::detail
