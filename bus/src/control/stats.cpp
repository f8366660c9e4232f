#include "control/stats.h"

#include "groups/group.h"

#include "shmbus/statistics.h"

#include <algorithm>
#include <cstring>

#include "control/control.h"
#include "core/ring.h"
#include "core/slots.h"
#include "core/wall_clock.h"

namespace shmbus::detail {

namespace {

void collect_groups(const Segment& seg, TopicStats& t) {
    for (uint32_t i = 0; i < seg.max_groups(); ++i) {
        const auto& b = seg.group_block(i);
        // acquire: pairs with shmbusd's release store of `state` once name and settings are written.
        if (b.state.load(std::memory_order_acquire) != uint32_t(layout::GroupState::active) || b.consumer_slot >= seg.max_consumers())
            continue;
        GroupStats g;
        g.name = printable(std::string_view(b.name, strnlen(b.name, sizeof b.name)));
        g.members = group_member_pids(seg, b.consumer_slot);
        g.next_id = read_dispatch(seg.consumer_slot(b.consumer_slot)).id;
        g.lag = t.published > g.next_id ? t.published - g.next_id : 0;
        uint64_t oldest = UINT64_MAX;
        for (const auto& e : b.entries) {
            const auto state = layout::EntryControl::unpack(e.control.load(std::memory_order_relaxed)).state;  // relaxed: a statistic
            if (state == layout::EntryState::free) continue;
            if (state == layout::EntryState::backoff || state == layout::EntryState::moving || state == layout::EntryState::moved)
                ++g.waiting_retry;
            else if (state == layout::EntryState::blocked)
                ++g.waiting_key;
            else
                ++g.in_flight;
            if (state == layout::EntryState::backoff && e.dead_letter_refused.load(std::memory_order_relaxed) != 0)
                ++g.dead_letters_refused;
            if (const uint64_t first = e.first_delivery_ns.load(std::memory_order_relaxed); first != 0) oldest = std::min(oldest, first);
        }
        if (oldest != UINT64_MAX) {
            const uint64_t now = WallClock::system_ns();
            g.oldest_unsettled_age = duration_from_ns(now > oldest ? now - oldest : 0);
        }
        // relaxed: statistics, read racily by design.
        g.delivered = b.delivered.load(std::memory_order_relaxed);
        g.acked = b.acked.load(std::memory_order_relaxed);
        g.redelivered = b.redelivered.load(std::memory_order_relaxed);
        g.nacked = b.nacked.load(std::memory_order_relaxed);
        g.dead_lettered = b.dead_lettered.load(std::memory_order_relaxed);
        g.ack_too_late = b.ack_too_late.load(std::memory_order_relaxed);
        g.reparked = b.reparked.load(std::memory_order_relaxed);
        g.expired = b.expired.load(std::memory_order_relaxed);  // 1.11: padding (zero) before
        g.settings = group_settings_of(b);
        t.groups.push_back(std::move(g));
    }
}

void collect_named_producers(const Segment& seg, TopicStats& t) {
    for (uint32_t i = 0; i < seg.sequence_entries(); ++i) {
        const auto& e = seg.sequence_entry(i);
        // acquire: pairs with shmbusd's release store of `state` once the name is written.
        if (e.state.load(std::memory_order_acquire) != uint32_t(layout::SequenceState::named)) continue;
        NamedProducerStats p;
        p.name = printable(std::string_view(e.name, strnlen(e.name, sizeof e.name)));
        p.last_sequence = e.committed.load(std::memory_order_relaxed);  // relaxed: a statistic
        const uint32_t holder = e.holder_slot;
        if (holder != 0 && holder <= seg.max_producers() && producer_active(seg.producer_slot(holder - 1)))
            p.pid = seg.producer_slot(holder - 1).pid;
        t.named_producers.push_back(std::move(p));
    }
    std::sort(t.named_producers.begin(), t.named_producers.end(),
              [](const NamedProducerStats& a, const NamedProducerStats& b) { return a.name < b.name; });
}

// The upper edge of the bucket holding the q-th fraction of the samples.
std::optional<uint64_t> bucket_percentile(const std::vector<uint64_t>& buckets, uint64_t total, double q) {
    if (total == 0) return std::nullopt;
    const uint64_t rank = uint64_t(q * double(total - 1)) + 1;
    uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets.size(); ++i)
        if ((seen += buckets[i]) >= rank) return uint64_t(2) << i;
    return uint64_t(2) << (buckets.size() - 1);
}

void read_processing(const layout::ConsumerSlot& s, SubscriptionStats& sub) {
    // relaxed: statistics; a racy snapshot may be a sample or two behind the buckets.
    uint64_t total = 0;
    for (const auto& b : s.processing) total += sub.processing_buckets.emplace_back(b.load(std::memory_order_relaxed));
    sub.processing_samples = total;
    sub.processing_sum_ns = s.processing_sum_ns.load(std::memory_order_relaxed);
    sub.processing_p50_ns = bucket_percentile(sub.processing_buckets, total, 0.50);
    sub.processing_p99_ns = bucket_percentile(sub.processing_buckets, total, 0.99);
}

}  // namespace

TopicStats collect_stats(const Segment& seg) {
    TopicStats t;
    t.name = seg.topic();
    t.config = seg.config();
    t.archived = seg.archived();
    t.segment_bytes = seg.size();
    const TailSnapshot tail = Ring(seg).read_tail();
    t.published = tail.next_id;
    t.tail_position = tail.position;
    auto& p = seg.producers();
    // relaxed loads throughout: a snapshot for humans, each figure may be a moment old.
    t.skip_records = p.skip_records.load(std::memory_order_relaxed);
    t.aborted_loans = p.aborted_loans.load(std::memory_order_relaxed);
    t.full_refusals = p.full_refusals.load(std::memory_order_relaxed);
    t.full_wait_ns = p.full_wait_ns.load(std::memory_order_relaxed);
    t.waiting_publishers = seg.space_waiters().load(std::memory_order_relaxed);
    t.requests.requests = p.requests.load(std::memory_order_relaxed);
    t.requests.timed_out = p.timed_out.load(std::memory_order_relaxed);
    t.requests.no_responder = p.no_responder.load(std::memory_order_relaxed);
    t.requests.responder_died = p.responder_died.load(std::memory_order_relaxed);
    t.requests.late_replies = p.late_replies.load(std::memory_order_relaxed);
    t.requests.replies = p.replies.load(std::memory_order_relaxed);
    const auto& r = seg.recovery();
    t.recovery.dead_claims_sealed = r.dead_claims_sealed.load(std::memory_order_relaxed);
    t.recovery.stalled_claims_unblocked = r.stalled_claims_unblocked.load(std::memory_order_relaxed);
    t.recovery.late_commits_refused = p.late_commits.load(std::memory_order_relaxed);
    t.recovery.producers_released = r.producers_released.load(std::memory_order_relaxed);
    t.recovery.subscribers_freed = r.subscribers_freed.load(std::memory_order_relaxed);
    t.recovery.subscribers_detached = r.subscribers_detached.load(std::memory_order_relaxed);
    t.recovery.cursors_expired = r.cursors_expired.load(std::memory_order_relaxed);
    t.recovery.owners_dead_at_restart = r.owners_dead_at_restart.load(std::memory_order_relaxed);
    const uint64_t now_ns = WallClock::system_ns();
    const uint64_t expire_ns = seg.expire_detached_ns();
    for (uint32_t i = 0; i < seg.max_producers(); ++i)
        if (producer_active(seg.producer_slot(i))) ++t.producers;
    for (uint32_t i = 0; i < seg.max_consumers(); ++i) {
        auto& s = seg.consumer_slot(i);
        // SYNC: acquire pairs with the release (or seq_cst) stores of state in slots.cpp and
        // place_cursor(): the owner fields read below are the ones published with it.
        const SlotState state = state_of(s);
        if (!holds_cursor(state)) continue;
        if (s.kind == uint32_t(SlotKind::group) || s.kind == uint32_t(SlotKind::member)) continue;  // groups: below
        SubscriptionStats sub;
        sub.slot = i;
        sub.durable = is_durable(s);
        // Printable: any process with write access to the segment could have put anything there.
        sub.name = sub.durable ? printable(std::string_view(s.name, strnlen(s.name, sizeof s.name))) : std::string();
        sub.attached = state == SlotState::attached;
        sub.pid = s.pid;
        sub.next_id = sub.durable ? s.ack_id.load(std::memory_order_relaxed) : s.read_id.load(std::memory_order_relaxed);
        sub.lag = t.published > sub.next_id ? t.published - sub.next_id : 0;
        if (sub.durable) {
            sub.ack_position = s.ack_position.load(std::memory_order_relaxed);
            sub.lag_bytes = t.tail_position > *sub.ack_position ? t.tail_position - *sub.ack_position : 0;
        }
        sub.delivered = s.delivered.load(std::memory_order_relaxed);
        sub.lost = s.lost.load(std::memory_order_relaxed);
        sub.expired = s.expired.load(std::memory_order_relaxed);  // 1.11: padding (zero) before
        if (sub.durable && seg.consumer_slot_has(sizeof(layout::ConsumerSlot))) read_processing(s, sub);
        if (!sub.attached) {
            sub.detached_ns = s.detached_ns;
            if (sub.durable && expire_ns != 0) {
                const uint64_t gone = now_ns > sub.detached_ns ? now_ns - sub.detached_ns : 0;
                sub.expires_in = duration_from_ns(gone >= expire_ns ? 0 : expire_ns - gone);
            }
        }
        if (sub.lag_bytes) t.depth_bytes = std::max(t.depth_bytes, *sub.lag_bytes);
        t.subscriptions.push_back(std::move(sub));
    }
    collect_groups(seg, t);
    for (const auto& g : t.groups)
        if (g.settings.service) {
            ++t.requests.service_groups;
            t.requests.responders += uint32_t(g.members.size());
        }
    collect_named_producers(seg, t);
    return t;
}

}  // namespace shmbus::detail

namespace shmbus {
namespace {

using T = TopicStats;
using S = SubscriptionStats;
constexpr auto kCounter = StatKind::counter;
constexpr auto kGauge = StatKind::gauge;

constexpr Statistic<T> kTopic[] = {
    {"published", "shmbus_messages_published_total", "published", "Messages published to the topic (the id the next message gets).", kCounter,
     [](const T& t) noexcept { return t.published; }},
    {"tail_position", "shmbus_log_bytes_total", "log bytes", "Bytes ever claimed in the topic's log, padding included.", kCounter,
     [](const T& t) noexcept { return t.tail_position; }},
    {"producers", "shmbus_publishers", "producers", "Publishers registered on the topic now.", kGauge,
     [](const T& t) noexcept { return uint64_t(t.producers); }},
    {"skip_records", "shmbus_skip_records_total", "skip records", "Claimed messages that were given up and skipped by readers.", kCounter,
     [](const T& t) noexcept { return t.skip_records; }},
    {"aborted_loans", "shmbus_aborted_loans_total", "aborted loans", "Loans dropped without a commit.", kCounter,
     [](const T& t) noexcept { return t.aborted_loans; }},
    {"full_refusals", "shmbus_full_refusals_total", "full refusals", "Publishes refused (fail) or timed out (block) on a full ring.", kCounter,
     [](const T& t) noexcept { return t.full_refusals; }},
    {"full_wait_ns", "shmbus_full_wait_nanoseconds_total", "full wait ns", "Time publishers spent waiting for room on a full ring.", kCounter,
     [](const T& t) noexcept { return t.full_wait_ns; }},
    {"waiting_publishers", "shmbus_publishers_waiting", "waiting publishers", "Publishers waiting for room on a full ring now.", kGauge,
     [](const T& t) noexcept { return uint64_t(t.waiting_publishers); }},
    {"depth_bytes", "shmbus_depth_bytes", "depth bytes", "Bytes the slowest durable subscription has yet to acknowledge.", kGauge,
     [](const T& t) noexcept { return t.depth_bytes; }},
};

constexpr Statistic<T> kRecovery[] = {
    {"dead_claims_sealed", "shmbus_recovery_dead_claims_sealed_total", "dead claims sealed", "Claims of dead publishers turned into skip records.", kCounter,
     [](const T& t) noexcept { return t.recovery.dead_claims_sealed; }},
    {"stalled_claims_unblocked", "shmbus_recovery_stalled_claims_unblocked_total", "stalled claims unblocked",
     "Claims of live publishers taken back after the topic's unblock-timeout.", kCounter,
     [](const T& t) noexcept { return t.recovery.stalled_claims_unblocked; }},
    {"late_commits_refused", "shmbus_recovery_late_commits_refused_total", "late commits refused", "Commits refused because their claim had been taken back.", kCounter,
     [](const T& t) noexcept { return t.recovery.late_commits_refused; }},
    {"producers_released", "shmbus_recovery_producers_released_total", "producers released", "Producer slots of dead publishers freed.", kCounter,
     [](const T& t) noexcept { return t.recovery.producers_released; }},
    {"subscribers_freed", "shmbus_recovery_subscribers_freed_total", "subscribers freed", "Ephemeral subscription slots of dead subscribers freed.", kCounter,
     [](const T& t) noexcept { return t.recovery.subscribers_freed; }},
    {"subscribers_detached", "shmbus_recovery_subscribers_detached_total", "subscribers detached", "Durable subscriptions whose owner died, cursor kept.", kCounter,
     [](const T& t) noexcept { return t.recovery.subscribers_detached; }},
    {"cursors_expired", "shmbus_recovery_cursors_expired_total", "cursors expired", "Detached durable cursors released after the topic's expire-detached.",
     kCounter, [](const T& t) noexcept { return t.recovery.cursors_expired; }},
    {"owners_dead_at_restart", "shmbus_recovery_owners_dead_at_restart_total", "owners found dead at restart", "Slots whose owner died while no shmbusd ran.", kCounter,
     [](const T& t) noexcept { return t.recovery.owners_dead_at_restart; }},
};

constexpr Statistic<T> kRequests[] = {
    {"requests", "shmbus_requests_total", "requests", "Requests published to the topic (shmbus request, Client::request).", kCounter,
     [](const T& t) noexcept { return t.requests.requests; }},
    {"replies", "shmbus_replies_total", "replies", "Replies callers received before their deadline (failures a responder answered included).", kCounter,
     [](const T& t) noexcept { return t.requests.replies; }},
    {"timed_out", "shmbus_requests_timed_out_total", "timed out", "Requests not answered before their deadline.", kCounter,
     [](const T& t) noexcept { return t.requests.timed_out; }},
    {"no_responder", "shmbus_requests_no_responder_total", "no responder", "Requests refused at once: no responder served the topic.",
     kCounter, [](const T& t) noexcept { return t.requests.no_responder; }},
    {"responder_died", "shmbus_requests_responder_died_total", "responder died",
     "Requests whose responder died (or every responder left) before replying.", kCounter,
     [](const T& t) noexcept { return t.requests.responder_died; }},
    {"late_replies", "shmbus_late_replies_total", "late replies", "Replies that came after their request had timed out (dropped).",
     kCounter, [](const T& t) noexcept { return t.requests.late_replies; }},
    {"responders", "shmbus_responders", "responders", "Responders serving the topic now (members of its service groups).", kGauge,
     [](const T& t) noexcept { return uint64_t(t.requests.responders); }},
};

constexpr Statistic<S> kSubscription[] = {
    {"next_id", "shmbus_subscription_next_id", "next id", "Durable: the first unacked message id; ephemeral: the next id to read.", kGauge,
     [](const S& s) noexcept { return s.next_id; }},
    {"lag", "shmbus_subscription_lag_messages", "lag", "Messages published and not yet acked (durable) or read (ephemeral).", kGauge,
     [](const S& s) noexcept { return s.lag; }},
    {"delivered", "shmbus_subscription_delivered_total", "delivered", "Messages handed to the subscriber's handler.", kCounter,
     [](const S& s) noexcept { return s.delivered; }},
    {"lost", "shmbus_subscription_lost_total", "lost", "Messages the subscription lost to overruns.", kCounter, [](const S& s) noexcept { return s.lost; }},
    {"expired", "shmbus_subscription_expired_total", "expired", "Durable: messages stepped over because their time to live had passed.",
     kCounter, [](const S& s) noexcept { return s.expired; }},
};

using G = GroupStats;
constexpr Statistic<G> kGroup[] = {
    {"members", "shmbus_group_members", "members", "Member processes holding a slot of the group now.", kGauge,
     [](const G& g) noexcept { return uint64_t(g.members.size()); }},
    {"next_id", "shmbus_group_next_id", "next id", "The next message no member has taken.", kGauge,
     [](const G& g) noexcept { return g.next_id; }},
    {"lag", "shmbus_group_lag_messages", "lag", "Messages published and not yet taken by any member.", kGauge,
     [](const G& g) noexcept { return g.lag; }},
    {"in_flight", "shmbus_group_in_flight_messages", "in flight", "Messages taken by a member and not settled.", kGauge,
     [](const G& g) noexcept { return g.in_flight; }},
    {"waiting_retry", "shmbus_group_waiting_retry_messages", "waiting retry", "Nacked messages waiting out their backoff.", kGauge,
     [](const G& g) noexcept { return g.waiting_retry; }},
    {"waiting_key", "shmbus_group_waiting_key_messages", "waiting key",
     "Ordered by key: messages taken that wait for an earlier message of their key to be settled.", kGauge,
     [](const G& g) noexcept { return g.waiting_key; }},
    {"delivered", "shmbus_group_delivered_total", "delivered", "First deliveries to a member.", kCounter,
     [](const G& g) noexcept { return g.delivered; }},
    {"acked", "shmbus_group_acked_total", "acked", "Messages acked.", kCounter, [](const G& g) noexcept { return g.acked; }},
    {"redelivered", "shmbus_group_redelivered_total", "redelivered", "Deliveries after the first (nack, visibility timeout, member death).",
     kCounter, [](const G& g) noexcept { return g.redelivered; }},
    {"nacked", "shmbus_group_nacked_total", "nacked", "Messages nacked into a backoff.", kCounter,
     [](const G& g) noexcept { return g.nacked; }},
    {"dead_lettered", "shmbus_group_dead_lettered_total", "dead-lettered", "Messages moved to the dead-letter topic.", kCounter,
     [](const G& g) noexcept { return g.dead_lettered; }},
    {"dead_letters_refused", "shmbus_group_dead_letters_refused_messages", "dead letters refused",
     "Messages due for the dead-letter topic that it refused (too large for it): they wait and are tried again.", kGauge,
     [](const G& g) noexcept { return g.dead_letters_refused; }},
    {"ack_too_late", "shmbus_group_acks_too_late_total", "acks too late", "Acks refused: the message had been given to another member.",
     kCounter, [](const G& g) noexcept { return g.ack_too_late; }},
    {"reparked", "shmbus_group_reparked_total", "moved to the tail", "Messages waiting for a retry moved to the ring's tail.", kCounter,
     [](const G& g) noexcept { return g.reparked; }},
    {"expired", "shmbus_group_expired_total", "expired",
     "Messages not delivered because their time to live had passed (dead-lettered where the group says so).", kCounter,
     [](const G& g) noexcept { return g.expired; }},
};

}  // namespace

std::span<const Statistic<GroupStats>> group_statistics() noexcept { return kGroup; }
std::span<const Statistic<TopicStats>> topic_statistics() noexcept { return kTopic; }
std::span<const Statistic<TopicStats>> recovery_statistics() noexcept { return kRecovery; }
std::span<const Statistic<TopicStats>> request_statistics() noexcept { return kRequests; }
std::span<const Statistic<SubscriptionStats>> subscription_statistics() noexcept { return kSubscription; }

}  // namespace shmbus
