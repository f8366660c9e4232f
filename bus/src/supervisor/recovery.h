// Recovery actions shmbusd takes for producers that died or stalled mid-message
// (docs/architecture.md, "Crash recovery"). All of them end the same way: the uncommitted claim
// becomes a committed skip record (its wrap padding committed too), so readers step over it.
#pragma once

#include <cstdint>
#include <vector>

#include "core/segment.h"

namespace shmbus::detail {

// A claim as a producer slot describes it: [start, end) with the id of its message.
struct Claim {
    uint64_t start;
    uint64_t end;
    uint64_t id;
};

enum class SealOutcome : uint8_t {
    nothing,     // no uncommitted claim of this owner: nothing to repair
    sealed,      // the claim is now a skip record
    retry_later, // a claim may be this owner's, but a live producer could still own it: look again
};

// Seals the open claim of a dead producer (call only once the owner is gone: a live owner may
// still commit). Covers a claim the producer recorded (claim_start), one taken back from it
// (revoked), and one it only announced (intent: it died between its winning CAS and recording
// the claim). `dead` lists the producer slots whose owners are known dead (this one included):
// their announcements do not count as a live producer's. On retry_later the claim may still be
// a live producer's: keep the slot and call again later. The slot's claim words are cleared once
// the outcome is settled, never before, so a daemon that dies halfway leaves them to its successor.
[[nodiscard]] SealOutcome seal_abandoned_claim(const Segment& seg, uint32_t slot,
                                               const std::vector<uint32_t>& dead) noexcept;

// Takes back the claim `tagged` (claim_start as read earlier) of a live producer that kept it
// open too long: marks it revoked (so producers do not overwrite its bytes while the late writer
// may still write), wins it from the producer with a CAS on claim_start, then seals it.
// Returns false if the producer committed first, or if an earlier take-back is not yet noticed.
[[nodiscard]] bool take_back_stalled_claim(const Segment& seg, uint32_t slot, uint64_t tagged) noexcept;

// For a live producer found at start: finishes or undoes a take-back the previous daemon began
// and did not finish (it died between marking, taking and sealing).
void settle_take_back(const Segment& seg, uint32_t slot) noexcept;

}  // namespace shmbus::detail
