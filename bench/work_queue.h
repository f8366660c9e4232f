// shmbus-bench: work queues. Group throughput with 1, 2, 4 and 8 members acking each message
// (also ordered by key, over 1,000 keys),
// beside RabbitMQ (a queue with manual acks and a prefetch equal to the group's window) and Redis
// Streams consumer groups (XREADGROUP and XACK), each server started on loopback by the benchmark
// and stopped after it; the latency of one job (publish to a member's handler); the cost of ack
// and nack.
#pragma once

#include <string>
#include <vector>

namespace bench {

void register_work_queue_benchmarks();
// Peers compiled in but whose server is missing, and peers not compiled in, with the reason.
std::vector<std::string> missing_work_queue_peers();

}  // namespace bench
