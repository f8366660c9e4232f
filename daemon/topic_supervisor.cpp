#include "topic_supervisor.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "control/control.h"
#include "supervisor/group_admin.h"
#include "supervisor/registration.h"
#include "groups/group.h"
#include "core/proc.h"
#include "supervisor/sequences.h"
#include "core/slots.h"
#include "core/wall_clock.h"

namespace shmbus::daemon {

using detail::field_name;
using detail::Released;
using detail::SealOutcome;
using detail::SlotState;

namespace {
void count(std::atomic<uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }  // relaxed: a statistic
}  // namespace

TopicSupervisor::TopicSupervisor(std::string name, detail::Segment segment)
    : name_(std::move(name)), seg_(std::move(segment)), claim_watch_(seg_.max_producers()) {}

void TopicSupervisor::release_consumer(uint32_t slot, const Process& owner, ReleaseReason why) {
    auto& s = seg_.consumer_slot(slot);
    switch (detail::release_consumer(seg_, slot, owner, detail::WallClock::system_ns())) {
        case Released::not_owned:
            return;
        case Released::detached:
            if (why.death) count(seg_.recovery().subscribers_detached);
            spdlog::info("durable subscription '{}' of '{}' detached (pid {}: {}); cursor kept at id {}", detail::printable(field_name(s.name)),
                         name_, owner.pid, why.text, s.ack_id.load(std::memory_order_relaxed));
            return;
        case Released::freed:
            if (why.death) count(seg_.recovery().subscribers_freed);
            spdlog::log(why.death ? spdlog::level::info : spdlog::level::debug,
                        "ephemeral subscription slot {} of '{}' freed (pid {}: {})", slot, name_, owner.pid, why.text);
            return;
    }
}

void TopicSupervisor::release_producer(uint32_t slot, const Process& owner, ReleaseReason why) {
    if (!detail::owned_by(seg_.producer_slot(slot), owner)) return;  // released already, or given to someone else
    if (std::find(dying_.begin(), dying_.end(), slot) != dying_.end()) return;
    dying_.push_back(slot);
    const auto outcome = detail::seal_abandoned_claim(seg_, slot, dying_);
    if (outcome != SealOutcome::retry_later) {
        free_producer_slot(slot, outcome, why);
        return;
    }
    spdlog::info("topic '{}': pid {} died around a claim that a live producer may own; re-checking", name_, owner.pid);
}

void TopicSupervisor::free_producer_slot(uint32_t slot, SealOutcome outcome, ReleaseReason why) {
    const auto& p = seg_.producer_slot(slot);
    std::erase(dying_, slot);
    if (outcome == SealOutcome::sealed) {
        count(seg_.recovery().dead_claims_sealed);
        spdlog::warn("topic '{}': pid {} died holding an uncommitted message; sealed it as a skip record", name_, p.pid);
    }
    claim_watch_[slot] = {};
    release_producer_names(slot);
    if (why.death) count(seg_.recovery().producers_released);
    spdlog::log(why.death ? spdlog::level::info : spdlog::level::debug, "topic '{}': producer slot {} released (pid {}: {})",
                name_, slot, p.pid, why.text);
    detail::free_producer(seg_, slot);
}

void TopicSupervisor::release_producer_names(uint32_t slot) {
    for (const uint32_t i : detail::release_sequence_entries(seg_, slot, detail::WallClock::system_ns())) {
        const auto& e = seg_.sequence_entry(i);
        spdlog::info("topic '{}': producer '{}' died right after committing sequence {}; recorded it as committed", name_,
                     detail::printable(field_name(e.name)), e.committed.load(std::memory_order_relaxed));
    }
}

std::optional<int32_t> TopicSupervisor::live_owner_or_release(uint32_t slot) {
    const auto& p = seg_.producer_slot(slot);
    const Process owner{p.pid, p.start_time};
    if (detail::process_alive(owner)) return p.pid;
    release_producer(slot, owner, kExited);
    return std::nullopt;
}

Status TopicSupervisor::free_producer_name(std::string_view name) {
    const auto entry = detail::find_sequence_entry(seg_, name);
    if (!entry) return ok_status();
    const uint32_t holder = detail::sequence_holder(seg_, *entry);
    if (holder == 0 || holder > seg_.max_producers()) return ok_status();
    if (!detail::producer_active(seg_.producer_slot(holder - 1))) release_producer_names(holder - 1);
    else if (const auto pid = live_owner_or_release(holder - 1))
        return make_error(Errc::busy, "producer '" + std::string(name) + "' on topic '" + name_ + "' is held by pid " +
                                          std::to_string(*pid) + " (one publisher per producer name)");
    if (detail::sequence_holder(seg_, *entry) != 0)
        return make_error(Errc::busy, "producer '" + std::string(name) + "' on topic '" + name_ +
                                          "': its last holder died mid-publish and is still being recovered; try again");
    return ok_status();
}

Status TopicSupervisor::free_single_producer() {
    for (uint32_t i = 0; i < seg_.max_producers(); ++i) {
        if (!detail::producer_active(seg_.producer_slot(i))) continue;
        if (const auto pid = live_owner_or_release(i))
            return make_error(Errc::busy, "topic '" + name_ + "' is single-producer and pid " + std::to_string(*pid) +
                                              " publishes to it (one publisher at a time)");
        if (detail::producer_active(seg_.producer_slot(i)))
            return make_error(Errc::busy, "topic '" + name_ + "': its last publisher died mid-publish and is still being "
                                              "recovered; try again");
    }
    return ok_status();
}

std::size_t TopicSupervisor::release_connection(const Process& owner, uint64_t session, ReleaseReason why) {
    return release_owned(owner, session, why);
}

std::size_t TopicSupervisor::release_process(const Process& owner, ReleaseReason why) {
    return release_owned(owner, std::nullopt, why);
}

std::size_t TopicSupervisor::release_owned(const Process& owner, std::optional<uint64_t> session, ReleaseReason why) {
    std::size_t released = 0;
    for (uint32_t i = 0; i < seg_.max_consumers(); ++i)
        if (session ? detail::consumer_registered_through(seg_, i, owner, *session) : detail::owned_by(seg_.consumer_slot(i), owner)) {
            release_consumer(i, owner, why);
            ++released;
        }
    for (uint32_t i = 0; i < seg_.max_producers(); ++i)
        if (session ? detail::producer_registered_through(seg_, i, owner, *session) : detail::owned_by(seg_.producer_slot(i), owner)) {
            release_producer(i, owner, why);
            ++released;
        }
    return released;
}

std::vector<Process> TopicSupervisor::reconcile(const Liveness& alive) {
    std::vector<Process> live;
    auto& r = seg_.recovery();
    for (const std::string& half : detail::free_half_made_groups(seg_))
        spdlog::info("topic '{}': {} was half made or half deleted when shmbusd stopped; freed", name_, half);
    for (uint32_t i = 0; i < seg_.max_consumers(); ++i) {
        auto& s = seg_.consumer_slot(i);
        const SlotState state = detail::state_of(s);
        if (state == SlotState::reserved && detail::free_consumer(seg_, i, SlotState::reserved)) {
            count(r.subscribers_freed);  // a subscribe the previous daemon never finished
            spdlog::info("topic '{}': subscription slot {} was half set up when shmbusd stopped; freed", name_, i);
        }
        if (state != SlotState::attached) continue;
        const Process owner{s.pid, s.start_time};
        if (alive(owner)) {
            live.push_back(owner);
        } else {
            count(r.owners_dead_at_restart);
            release_consumer(i, owner, kDiedWhileDown);
        }
    }
    for (uint32_t i = 0; i < seg_.max_producers(); ++i) {
        auto& p = seg_.producer_slot(i);
        if (!detail::producer_active(p)) continue;
        const Process owner{p.pid, p.start_time};
        if (alive(owner)) {
            detail::settle_take_back(seg_, i);  // one the previous daemon may have left halfway
            live.push_back(owner);
        } else {
            count(r.owners_dead_at_restart);
            release_producer(i, owner, kDiedWhileDown);
        }
    }
    // A name whose holder's slot is gone (the previous daemon died between freeing the slot and
    // letting go of the name).
    for (uint32_t i = 0; i < seg_.sequence_entries(); ++i)
        if (const uint32_t h = detail::sequence_holder(seg_, i);
            h != 0 && (h > seg_.max_producers() || !detail::producer_active(seg_.producer_slot(h - 1))))
            release_producer_names(h - 1);
    return live;
}

uint64_t TopicSupervisor::tick_period() const noexcept {
    if (seg_.unblock_timeout_ns() != 0 || !dying_.empty()) return kClaimTickNs;
    if (seg_.expire_detached_ns() != 0) return kExpiryTickNs;
    return 0;
}

void TopicSupervisor::tick(uint64_t now_ns, uint64_t wall_ns) {
    if (!dying_.empty()) retry_dying();
    if (seg_.unblock_timeout_ns() != 0) unblock_stalled_claims(now_ns);
    if (seg_.expire_detached_ns() != 0) expire_detached(wall_ns);
}

void TopicSupervisor::retry_dying() {
    for (const uint32_t slot : std::vector<uint32_t>(dying_)) {
        const auto outcome = detail::seal_abandoned_claim(seg_, slot, dying_);
        if (outcome != SealOutcome::retry_later) free_producer_slot(slot, outcome, kExited);
    }
}

// A claim is timed from the first tick that sees it, so it is taken back between one timeout
// and one timeout plus a tick (5 ms) after it was made.
void TopicSupervisor::unblock_stalled_claims(uint64_t now) {
    for (uint32_t i = 0; i < seg_.max_producers(); ++i) {
        auto& p = seg_.producer_slot(i);
        auto& watch = claim_watch_[i];
        // acquire: pairs with the producer's release store of claim_start (end and id with it).
        const uint64_t tag = detail::producer_active(p) ? p.claim_start.load(std::memory_order_acquire) : 0;
        if (tag != watch.tag) {
            watch = {tag, now};
            continue;
        }
        if (tag == 0 || now - watch.since_ns < seg_.unblock_timeout_ns()) continue;
        watch = {};
        if (!detail::take_back_stalled_claim(seg_, i, tag)) continue;  // committed just in time
        count(seg_.recovery().stalled_claims_unblocked);
        spdlog::warn("topic '{}': pid {} kept message at position {} uncommitted for over {} ms; sealed it as a skip "
                     "record, its late commit will be refused",
                     name_, p.pid, tag - 1, seg_.unblock_timeout_ns() / 1'000'000);
    }
}

void TopicSupervisor::expire_detached(uint64_t wall) {
    const uint64_t expire = seg_.expire_detached_ns();
    for (uint32_t i = 0; i < seg_.max_consumers(); ++i) {
        auto& s = seg_.consumer_slot(i);
        if (detail::state_of(s) != SlotState::detached || s.kind == uint32_t(detail::SlotKind::group)) continue;  // groups never expire
        if (seg_.archiver_slot() == i) continue;  // nor does the archiver's cursor: its archive depends on it
        if (wall < s.detached_ns || wall - s.detached_ns < expire) continue;
        if (!detail::free_consumer(seg_, i, SlotState::detached)) continue;
        count(seg_.recovery().cursors_expired);
        spdlog::warn("topic '{}': durable subscription '{}' detached for over {} s; released its cursor (was at id {})",
                     name_, detail::printable(field_name(s.name)), expire / 1'000'000'000, s.ack_id.load(std::memory_order_relaxed));
    }
}

}  // namespace shmbus::daemon
