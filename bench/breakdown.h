// shmbus-bench: where the time of one message goes, one side at a time and without a partner
// (no cache line crosses cores): the primitives a publish is made of, a publish on each kind of
// topic, a batched publish, and a subscriber's poll per message.
#pragma once

namespace bench {

void register_breakdown_benchmarks();

}  // namespace bench
