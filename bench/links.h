// Two-way links between a parent and a forked partner, one per transport. A Link is created in
// the parent before fork (shared state), then each side calls open() in its own process.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "shmbus/client.h"

namespace bench {

class Link {
public:
    virtual ~Link() = default;
    // Per-process setup after fork; `first` is the parent's (or the producer's) side.
    [[nodiscard]] virtual bool open(bool first, std::size_t size) = 0;
    // Sends one message of exactly the opened size.
    [[nodiscard]] virtual bool send(std::span<const std::byte> msg) = 0;
    // Blocks (spinning or sleeping, per transport) for one message; the view stays valid until
    // the next recv(). An empty span means the transport failed.
    [[nodiscard]] virtual std::span<const std::byte> recv() = 0;
    // Flushes what an asynchronous transport still queues; called before a partner exits.
    virtual void close() {}
};

// Creates the link for `transport`, or nullptr with `why` set if it is not available here.
std::unique_ptr<Link> make_link(const std::string& transport, std::size_t size, std::string& why);

// Transports compiled into this binary, and the ones left out (with the reason).
std::vector<std::string> available_transports();
std::vector<std::string> missing_transports();

// Started once per process, stopped at exit: shmbusd for the shmbus transports, RouDi for iceoryx.
bool ensure_shmbusd(std::string& why);
const std::string& shmbus_dir();
// A client of that shmbusd.
shmbus::Result<shmbus::Client> connect_bus();
bool ensure_roudi(std::string& why);

}  // namespace bench
