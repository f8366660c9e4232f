#include "access_control.h"

#include <fnmatch.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace shmbus::daemon {

const char* operation_name(Operation op) noexcept {
    switch (op) {
        case Operation::publish: return "publish";
        case Operation::subscribe: return "subscribe";
        case Operation::admin: return "admin";
        case Operation::observe: return "observe";
    }
    return "?";
}

Identity identity_of_peer(int sock) noexcept {
    Identity who;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        who.uid = cred.uid;
        who.gid = cred.gid;
    } else {
        who.uid = who.gid = uint32_t(-1);  // nobody we know: matches no rule
    }
    // SO_PEERGROUPS: the supplementary groups the peer had when it connected. ERANGE tells the
    // size needed.
    std::vector<gid_t> groups(32);
    for (int attempt = 0; attempt < 4; ++attempt) {
        socklen_t bytes = socklen_t(groups.size() * sizeof(gid_t));
        if (getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
            groups.resize(bytes / sizeof(gid_t));
            who.groups = std::move(groups);
            break;
        }
        if (errno != ERANGE) break;
        groups.resize(bytes / sizeof(gid_t) + 1);
    }
    return who;
}

namespace {

bool matches(const Principal& p, const Identity& who) {
    if (p.kind == Principal::Kind::user) return who.uid == p.id;
    return who.gid == p.id || std::find(who.groups.begin(), who.groups.end(), gid_t(p.id)) != who.groups.end();
}

bool any_matches(const std::vector<Principal>& list, const Identity& who) {
    return std::any_of(list.begin(), list.end(), [&](const Principal& p) { return matches(p, who); });
}

bool grants(const AclEntry& e, const Identity& who, Operation op) {
    switch (op) {
        case Operation::publish: return any_matches(e.publish, who);
        case Operation::subscribe: return any_matches(e.subscribe, who);
        case Operation::admin: return any_matches(e.admin, who);
        case Operation::observe:
            return any_matches(e.publish, who) || any_matches(e.subscribe, who) || any_matches(e.admin, who);
    }
    return false;
}

bool covers(const AclEntry& e, std::string_view topic) {
    const std::string name(topic);
    return std::any_of(e.topics.begin(), e.topics.end(),
                       [&](const std::string& pattern) { return fnmatch(pattern.c_str(), name.c_str(), 0) == 0; });
}

std::string describe(const AclEntry& e) {
    return "acl entry " + std::to_string(e.index) + " (line " + std::to_string(e.line) + ")";
}

}  // namespace

Decision AccessControl::check(const Identity& who, std::string_view topic, Operation op) const {
    if (privileged(who)) return {true, true, who.uid == 0 ? "root" : "bus owner"};
    for (const AclEntry& e : entries_)
        if (covers(e, topic)) return {grants(e, who, op), false, describe(e)};
    return {false, false, "no acl entry matches"};
}

bool AccessControl::holds_anywhere(const Identity& who, Operation op) const {
    return privileged(who) || std::any_of(entries_.begin(), entries_.end(), [&](const AclEntry& e) { return grants(e, who, op); });
}

}  // namespace shmbus::daemon
