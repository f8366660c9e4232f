// Stale state: shared-memory segments and sockets left behind by buses that no longer run.
// A bus "no longer runs" when the directory its segments name is gone or now holds another bus
// (its bus.id differs); a bus whose daemon is merely down keeps everything, since a restarted
// shmbusd re-adopts it. Run by shmbusd at start and on `shmbus gc`, and by `shmbus gc` itself
// when no shmbusd runs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shmbus/client.h"

namespace shmbus::detail {

// Removes segments of other buses that are gone, segments with a bad header that are older than
// `min_age_s` (a bus creating one right now finishes in microseconds), and the socket files of
// stopped buses that still exist. Segments of `own_bus_id` are left to the registry.
[[nodiscard]] std::vector<RemovedItem> collect_stale(uint64_t own_bus_id, unsigned min_age_s = 60);

// The bus ids of the valid segments (of our uid) that name `dir` as their bus directory: what a
// bus whose bus.id went missing was called.
[[nodiscard]] std::vector<uint64_t> bus_ids_naming(const std::string& dir);

}  // namespace shmbus::detail
