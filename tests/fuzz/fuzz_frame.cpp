// Fuzz target: a control frame as shmbusd receives it. parse_frame must accept only frames whose
// header says exactly what arrived, and never read outside the buffer.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "control/control.h"
#include "control/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // A valid header in front of the fuzzed bytes half of the time, so bodies get exercised too.
    std::vector<std::byte> buf;
    if (size > 0 && (data[0] & 1)) {
        const uint16_t type = size > 1 ? data[1] : 0;
        const shmbus::protocol::FrameHeader h{shmbus::protocol::kFrameMagic, shmbus::protocol::kProtocolVersion, type,
                                              uint32_t(sizeof h + size - 1), 1};
        buf.resize(sizeof h + size - 1);
        std::memcpy(buf.data(), &h, sizeof h);
        if (size > 1) std::memcpy(buf.data() + sizeof h, data + 1, size - 1);
    } else {
        buf.assign(reinterpret_cast<const std::byte*>(data), reinterpret_cast<const std::byte*>(data) + size);
    }
    shmbus::protocol::FrameHeader h{};
    const std::byte* body = nullptr;
    std::size_t body_size = 0;
    if (!shmbus::detail::parse_frame(buf, h, body, body_size)) return 0;
    if (h.length != buf.size() || body_size != buf.size() - sizeof h || (body_size != 0 && body != buf.data() + sizeof h))
        std::abort();
    volatile std::byte sink{};
    for (std::size_t i = 0; i < body_size; ++i) sink = body[i];  // every byte it points at is ours
    (void)sink;
    return 0;
}
