// shmbus-bench: recovery figures (docs/architecture.md, "Crash recovery"): how long readers are
// held up by a dead or stalled publisher, how fast a dead subscriber's slot is released, and how
// long shmbusd takes to restart and re-adopt 1,000 topics.
#pragma once

namespace bench {

void register_recovery_benchmarks();

}  // namespace bench
