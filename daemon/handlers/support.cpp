#include "handlers/support.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include <cstring>

#include "core/futex.h"
#include "groups/group.h"
#include "registry.h"
#include "supervisor/group_admin.h"
#include "core/proc.h"

namespace shmbus::daemon {

using detail::Process;
using detail::SlotState;

TopicConfig from_wire(const protocol::WireConfig& w, uint32_t flags) {
    TopicConfig c;
    c.single_producer = (flags & protocol::kSingleProducer) != 0;
    c.timestamps = (flags & protocol::kUntimed) == 0;
    c.capacity = w.capacity;
    c.max_message = w.max_message;
    c.on_full = OnFull(w.on_full);
    c.max_producers = w.max_producers;
    c.max_consumers = w.max_consumers;
    c.unblock_timeout = detail::duration_from_ns(w.unblock_timeout_ns);
    c.expire_detached = detail::duration_from_ns(w.expire_detached_ns);
    c.ttl = detail::duration_from_ns(w.ttl_ns);
    return c;
}

TopicConfig inbox_config(const TopicConfig& asked) {
    TopicConfig c;
    c.capacity = asked.capacity == 0 || asked.capacity == TopicConfig{}.capacity ? 1u << 20
                                                                                 : std::clamp<uint64_t>(asked.capacity, 64u << 10, 16u << 20);
    c.capacity = round_capacity(c.capacity);
    c.max_message = uint32_t(std::min<uint64_t>(asked.max_message, max_message_for(c.capacity)));
    c.on_full = OnFull::overwrite;
    c.max_producers = 256;
    c.max_consumers = 4;
    c.timestamps = false;
    return c;
}

bool held_by_live_owner(const layout::ConsumerSlot& s, SlotState state) {
    return state == SlotState::attached && detail::process_alive(Process{s.pid, s.start_time});
}

std::vector<int32_t> live_users(const detail::Segment& seg, bool subscribers) {
    std::vector<int32_t> pids;
    auto note = [&](int32_t pid, uint64_t start_time) {
        if (std::find(pids.begin(), pids.end(), pid) == pids.end() && detail::process_alive(Process{pid, start_time}))
            pids.push_back(pid);
    };
    for (uint32_t i = 0; i < seg.max_producers(); ++i) {
        const auto& p = seg.producer_slot(i);
        if (detail::producer_active(p)) note(p.pid, p.start_time);
    }
    for (uint32_t i = 0; subscribers && i < seg.max_consumers(); ++i) {
        const auto& s = seg.consumer_slot(i);
        // The archiver is the topic's own: deleting the topic stops it.
        if (detail::state_of(s) == SlotState::attached && seg.archiver_slot() != i) note(s.pid, s.start_time);
    }
    return pids;
}

std::string pid_list(const std::vector<int32_t>& pids) {
    std::string out = pids.size() == 1 ? "pid " : "pids ";
    for (std::size_t i = 0; i < pids.size() && i < 8; ++i) out += (i > 0 ? ", " : "") + std::to_string(pids[i]);
    if (pids.size() > 8) out += " and " + std::to_string(pids.size() - 8) + " more";
    return out;
}

void tell_deleted(const detail::Segment& seg) {
    seg.mark_deleted();
    detail::futex_signal(seg.producers().data_futex);
    detail::futex_signal(seg.consumers().space_futex);
}

const char* doing(Operation op) {
    switch (op) {
        case Operation::publish: return "publish to";
        case Operation::subscribe: return "subscribe to";
        case Operation::admin: return "administer (create, delete, settings)";
        case Operation::observe: return "see";
    }
    return "use";
}

Error not_yours(const char* what, uint32_t slot, const std::string& topic) {
    return make_error(Errc::invalid_argument, std::string(what) + " " + std::to_string(slot) + " of '" + topic + "' is not yours");
}

void drop_unserved_services(TopicEntry& t) {
    const auto& seg = t.segment();
    for (uint32_t i = 0; i < seg.max_groups(); ++i) {
        const auto& b = seg.group_block(i);
        // acquire: pairs with our own release store when the group was made (another run's, adopted).
        if (b.state.load(std::memory_order_acquire) != uint32_t(layout::GroupState::active) || (b.options & layout::kService) == 0 ||
            b.consumer_slot >= seg.max_consumers() || !detail::group_member_pids(seg, b.consumer_slot).empty())
            continue;
        const std::string name(b.name, strnlen(b.name, sizeof b.name));
        if (auto st = detail::delete_group(seg, {i, b.consumer_slot}); !st)
            spdlog::warn("cannot remove service group '{}' of '{}': {}", name, t.name(), st.error().message);
        else
            spdlog::info("removed service group '{}' of '{}': its last responder left", name, t.name());
    }
}

}  // namespace shmbus::daemon
