// Who may do what to which topic. Identity comes from the socket (SO_PEERCRED, SO_PEERGROUPS),
// never from anything a client says. shmbusd's own uid and root may do everything; anyone else
// only what the first ACL entry matching the topic grants (nothing, if no entry matches).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"

namespace shmbus::daemon {

enum class Operation : uint8_t {
    publish,
    subscribe,
    admin,    // create, delete, delete a subscription, gc
    observe,  // see the topic at all: list it, read its statistics (any of the three above)
};
[[nodiscard]] const char* operation_name(Operation op) noexcept;

struct Identity {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups
};

// The identity of a socket's peer: its uid and gid and supplementary groups, from the kernel.
[[nodiscard]] Identity identity_of_peer(int sock) noexcept;

struct Decision {
    bool allowed = false;
    bool privileged = false;  // the bus owner or root: allowed whatever the rules say
    std::string rule;  // why, for the log: "bus owner", "acl entry 2 (line 9)", "no acl entry matches"
};

class AccessControl {
public:
    // No entries: the bus owner and root alone.
    explicit AccessControl(uid_t owner, std::vector<AclEntry> entries = {}) : owner_(owner), entries_(std::move(entries)) {}

    [[nodiscard]] Decision check(const Identity& who, std::string_view topic, Operation op) const;
    // Whether `who` holds `op` on some topic through some entry (gc is bus-wide: any admin may run it).
    [[nodiscard]] bool holds_anywhere(const Identity& who, Operation op) const;
    [[nodiscard]] std::size_t entries() const noexcept { return entries_.size(); }
    // The bus owner or root: allowed everything, whatever the rules say.
    [[nodiscard]] bool privileged(const Identity& who) const noexcept { return who.uid == owner_ || who.uid == 0; }

private:

    uid_t owner_;
    std::vector<AclEntry> entries_;
};

}  // namespace shmbus::daemon
