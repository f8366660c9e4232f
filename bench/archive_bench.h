// shmbus-bench: archived topics. Archive write throughput beside the disk's sequential-write floor
// measured in the same run, replay from disk, and the publish cost with and without an archiver.
#pragma once

namespace bench {

void register_archive_benchmarks();

}  // namespace bench
