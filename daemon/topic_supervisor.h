// The recovery policy of one topic (docs/architecture.md, "Crash recovery"): releasing the slots
// of owners that left or died, sealing claims dead publishers left open, taking back claims
// live publishers stalled in, expiring forgotten durable cursors. It works on the topic's
// segment alone (no sockets, no descriptors, no clock of its own), so every rule is unit-tested
// without processes; shmbusd's event loop tells it what happened and when.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/proc.h"
#include "supervisor/recovery.h"
#include "core/segment.h"

namespace shmbus::daemon {

using detail::Process;

// Why a slot is released: the text is for the log; only a death counts as a recovery.
struct ReleaseReason {
    const char* text;
    bool death;
};
inline constexpr ReleaseReason kUnsubscribed{"unsubscribed", false};
inline constexpr ReleaseReason kClosed{"closed", false};
inline constexpr ReleaseReason kClientGone{"client gone", true};
inline constexpr ReleaseReason kExited{"process exited", true};
inline constexpr ReleaseReason kDiedWhileDown{"died while shmbusd was down", true};

// Ticks: while claims may need taking back, and while only cursors may expire.
inline constexpr uint64_t kClaimTickNs = 5'000'000;
inline constexpr uint64_t kExpiryTickNs = 250'000'000;

using Liveness = std::function<bool(const Process&)>;

class TopicSupervisor {
public:
    TopicSupervisor(std::string name, detail::Segment segment);

    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] const detail::Segment& segment() const noexcept { return seg_; }
    // `topic set`: the settings that may change under live clients (checked by the caller).
    void set_live_settings(OnFull on_full, uint64_t unblock_timeout_ns, uint64_t expire_detached_ns) noexcept {
        seg_.set_live_settings(on_full, unblock_timeout_ns, expire_detached_ns);
    }

    // Each acts only if the slot still belongs to `owner`: the same death may be seen twice
    // (connection closed, pidfd readable), and a slot may have changed hands in between.
    void release_consumer(uint32_t slot, const Process& owner, ReleaseReason why);
    // Seals a claim the owner left open, so readers move past it at once. A claim it only
    // announced may still be a live producer's: then the slot stays taken (still naming the
    // claim, so a successor daemon finds it too) and is looked at again every tick.
    void release_producer(uint32_t slot, const Process& owner, ReleaseReason why);
    // Every slot `owner` registered through connection `session` (it closed). Returns how many.
    std::size_t release_connection(const Process& owner, uint64_t session, ReleaseReason why);
    // Every slot of `owner`, whatever connection registered it (the process exited).
    std::size_t release_process(const Process& owner, ReleaseReason why);

    // Makes the producer name `name` free for a new publisher: nothing to do if no live publisher
    // holds it; a holder that died unseen (its hang-up not yet read) is released now, its pending
    // publish settled. busy while a live publisher holds it or a dead one's claim is unsettled.
    [[nodiscard]] Status free_producer_name(std::string_view name);
    // Makes room for the one publisher of a single-producer topic: nothing to do if no producer
    // slot is taken; a publisher that died unseen is released now. busy while a live one holds
    // it, or while a dead one's claim is unsettled.
    [[nodiscard]] Status free_single_producer();

    // At start, over a segment an earlier shmbusd served: slots whose owners died meanwhile get the
    // recovery a death seen live gets, half-made reservations are freed, take-backs left halfway
    // are settled. Returns the owners still alive, which the caller watches from now on.
    [[nodiscard]] std::vector<Process> reconcile(const Liveness& alive);

    // The periodic work; `now_ns` is CLOCK_MONOTONIC, `wall_ns` CLOCK_REALTIME.
    void tick(uint64_t now_ns, uint64_t wall_ns);
    // How often tick() must run for this topic: kClaimTickNs, kExpiryTickNs, or 0 (never).
    [[nodiscard]] uint64_t tick_period() const noexcept;

private:
    // The slots of `owner`: those registered through `session`, or all of them (nullopt).
    std::size_t release_owned(const Process& owner, std::optional<uint64_t> session, ReleaseReason why);
    void free_producer_slot(uint32_t slot, detail::SealOutcome outcome, ReleaseReason why);
    // An active producer slot's owner: its pid while it lives; if it died unseen (its hang-up not
    // yet read), the slot is released now, as its death would have released it.
    [[nodiscard]] std::optional<int32_t> live_owner_or_release(uint32_t slot);
    // Lets go of the producer names slot `slot` held, settling a publish it left pending.
    void release_producer_names(uint32_t slot);
    void retry_dying();
    void unblock_stalled_claims(uint64_t now_ns);
    void expire_detached(uint64_t wall_ns);

    std::string name_;
    detail::Segment seg_;
    // The open claim seen in each producer slot and since when (unblock-timeout).
    struct ClaimWatch {
        uint64_t tag = 0;
        uint64_t since_ns = 0;
    };
    std::vector<ClaimWatch> claim_watch_;
    // Producer slots of dead owners, kept until their claim is settled (a live producer might
    // still own what they announced).
    std::vector<uint32_t> dying_;
};

}  // namespace shmbus::daemon
