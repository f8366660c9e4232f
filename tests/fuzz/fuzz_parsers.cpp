// Fuzz target: the text parsers of the CLI and the library (sizes, durations, names), shmbusd's
// configuration file, and the decoding of numbers that arrive on the wire. None may crash, and each accepted value must be
// consistent with what was parsed.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "access_control.h"
#include "config.h"
#include "control.h"
#include "protocol.h"
#include "shmbus/names.h"
#include "shmbus/result.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto v = shmbus::parse_size(text); v && text.empty()) std::abort();  // nothing is no size
    if (auto d = shmbus::parse_duration(text); d && d->count() < 0) std::abort();
    if (shmbus::validate_topic_name(text) && (text.empty() || text.size() > 63)) std::abort();
    if (shmbus::validate_subscription_name(text) && (text.empty() || text.size() > 47)) std::abort();
    const std::string shown = shmbus::detail::printable(text);
    for (const char c : shown)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) std::abort();
    // A configuration either parses into rules that answer every question, or is refused with
    // an error that names the input.
    if (auto config = shmbus::daemon::parse_config(text, "fuzz.toml")) {
        const shmbus::daemon::AccessControl acl(1000, config->acl);
        (void)acl.check({2000, 2000, {}}, "t", shmbus::daemon::Operation::publish);
    } else if (config.error().message.rfind("fuzz.toml", 0) != 0) {
        std::abort();
    }
    if (size >= 4) {
        uint32_t code = 0;
        std::memcpy(&code, data, 4);
        if (auto e = shmbus::errc_from_code(code); e && uint32_t(*e) != code) std::abort();
        shmbus::StartFrom from{};
        if (shmbus::protocol::start_from_wire(code, from) && uint32_t(from) != code) std::abort();
    }
    return 0;
}
