// Aeron IPC as a transport of shmbus-bench (aeron.cpp): present when the build was given an Aeron
// install tree, otherwise every entry point says why it is missing.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "harness.h"
#include "links.h"

namespace bench {

[[nodiscard]] bool aeron_available();
[[nodiscard]] std::string aeron_missing_reason();
// aeron_ipc (a concurrent publication) or aeron_ipc_exclusive (an exclusive one), ping-pong.
std::unique_ptr<Link> make_aeron_link(const std::string& transport, std::size_t size, std::string& why);
// One publisher offering `count` messages of `size` bytes to one reader polling 10 fragments at a
// time (Aeron's streaming_publisher and rate_subscriber), every message checked.
void throughput_aeron(benchmark::State& state, bool exclusive, std::size_t size, std::size_t term_length, uint64_t count);
// The same stream, its outcome returned (PairedThroughput).
StreamRate stream_aeron(bool exclusive, std::size_t size, std::size_t term_length, uint64_t count);

}  // namespace bench
