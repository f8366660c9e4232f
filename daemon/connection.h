// One client connection to shmbusd, as the request handlers see it, and the replies they send.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "access_control.h"
#include "control/control.h"
#include "core/proc.h"
#include "control/protocol.h"
#include "shmbus/result.h"

namespace shmbus::daemon {

struct Conn {
    int fd = -1;
    detail::Process process;  // from SO_PEERCRED, with its start time
    Identity who;             // from SO_PEERCRED and SO_PEERGROUPS: what access control judges
    // Names this connection in the slots it registers (layout 1.2), so that its closing releases
    // exactly its own slots: the slots are the one record of who owns what. Unique per daemon run
    // and, being random-based, across runs.
    uint64_t session = 0;
    bool said_hello = false;
    std::string name;
    // Set by a handler that cannot answer yet (its topic is still being created): the server keeps
    // the request and reads nothing more from this connection until it serves the request again.
    bool parked = false;
    std::vector<std::byte> parked_frame;
    uint64_t parked_order = 0;  // requests parked earlier are served first: a topic's creator before those who wait for it
};

// False if the reply could not be sent (the client stopped reading, or is gone): the caller then
// closes the connection. `fd` >= 0 is passed along with SCM_RIGHTS.
[[nodiscard]] bool reply(Conn& c, protocol::Type type, uint32_t id, const void* body, std::size_t size,
                         detail::PassedFds fds = {});
[[nodiscard]] bool reply_error(Conn& c, uint32_t id, const Error& e);

}  // namespace shmbus::daemon
