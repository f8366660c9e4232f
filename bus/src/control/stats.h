// Reads a racy statistics snapshot out of a segment (CLI, daemon metrics).
#pragma once

#include "core/segment.h"
#include "shmbus/topic.h"

namespace shmbus::detail {
[[nodiscard]] TopicStats collect_stats(const Segment& seg);
}
