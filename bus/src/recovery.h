// Recovery actions shmbusd takes for producers that died or stalled mid-message
// (docs/architecture.md, "Crash recovery"). All of them end the same way: the uncommitted claim
// becomes a committed skip record (its wrap padding committed too), so readers step over it.
#pragma once

#include <cstdint>
#include <vector>

#include "segment.h"

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
// still commit). Covers a claim the producer recorded (claim_start) and one it only announced
// (`intent`, when it died between its winning CAS and recording the claim). On retry_later,
// `pending` describes the claim to pass to seal_orphan_claim() later; the slot may be reused.
[[nodiscard]] SealOutcome seal_abandoned_claim(const Segment& seg, uint32_t slot, Claim& pending) noexcept;

// Looks again at an announced claim of a dead producer: seals it once no live producer can own
// it. `others` are further announced claims of dead producers still pending (a claim may be
// followed by one of them).
[[nodiscard]] SealOutcome seal_orphan_claim(const Segment& seg, const Claim& claim,
                                            const std::vector<Claim>& others) noexcept;

// Takes back the claim `tagged` (claim_start as read earlier) of a live producer that kept it
// open too long: wins it from the producer with a CAS on claim_start, marks it revoked (so
// producers do not overwrite its bytes while the late writer may still write), then seals it.
// Returns false if the producer committed first.
[[nodiscard]] bool take_back_stalled_claim(const Segment& seg, uint32_t slot, uint64_t tagged) noexcept;

}  // namespace shmbus::detail
