// The payload every stress and multi-process test sends: who sent it, its per-producer sequence,
// a checksum of both, then `filler` bytes.
#pragma once

#include <cstdint>

namespace shmbus::test {

struct Payload {
    uint32_t producer;
    uint32_t filler;  // bytes that follow the struct
    uint64_t seq;
    uint64_t checksum;
};

inline uint64_t checksum_of(uint32_t producer, uint64_t seq) {
    uint64_t x = (uint64_t(producer) << 40) ^ seq ^ 0x9E3779B97F4A7C15ull;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 29);
}

}  // namespace shmbus::test
