// What several request handlers share: decoding a topic's wire settings, a request's
// registration, who holds a topic, the words of refusals.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "access_control.h"
#include "connection.h"
#include "control/control.h"
#include "control/protocol.h"
#include "core/segment.h"
#include "core/slots.h"

namespace shmbus::daemon {

struct TopicEntry;

using detail::copy_name;
using detail::field_name;
using detail::Registration;
using detail::SlotKind;
using detail::SlotState;

// The settings a client sent (OpenTopic, JoinGroup's topic) as a TopicConfig; `flags` are the
// request's OpenFlags (single-producer has its bit there).
[[nodiscard]] TopicConfig from_wire(const protocol::WireConfig& w, uint32_t flags);
// The settings of a reply inbox from those its requester asked for: its ring size (64 KiB to
// 16 MiB, 1 MiB unless asked) and largest reply within what that allows; always overwrite (a
// requester never holds a responder back: a reply it is too slow to read is lost to it, as if late),
// no timestamps, one reader, up to 256 responders replying at once.
[[nodiscard]] TopicConfig inbox_config(const TopicConfig& asked);
[[nodiscard]] inline detail::Registration registration(const Conn& c, uint64_t token) { return {c.process, token, c.session}; }
// A durable cursor in use: attached, and its owner still runs (a dead one's is free to take over).
[[nodiscard]] bool held_by_live_owner(const layout::ConsumerSlot& s, detail::SlotState state);
// The processes that hold a topic now: registered publishers and (with `subscribers`) attached
// subscribers whose owners still run (a detached durable cursor has no one to tell).
[[nodiscard]] std::vector<int32_t> live_users(const detail::Segment& seg, bool subscribers = true);
// "pid 12" / "pids 12, 13 and 4 more", for messages.
[[nodiscard]] std::string pid_list(const std::vector<int32_t>& pids);
// Marks a topic deleted for the clients that still map it, and wakes those asleep on it: their
// next publish fails and their subscriptions end once drained.
void tell_deleted(const detail::Segment& seg);
// Removes the service groups of `t` that no responder serves any more (docs/requests.md): a request
// is never left waiting in one, and a caller is told "no responder" at once.
void drop_unserved_services(TopicEntry& t);
// What `op` is, in a refusal: "publish to", "subscribe to", ...
[[nodiscard]] const char* doing(Operation op);
[[nodiscard]] Error not_yours(const char* what, uint32_t slot, const std::string& topic);

}  // namespace shmbus::daemon
