// Fuzz target: the text parsers of the CLI and the library (sizes, durations, names), shmbusd's
// configuration file (and the shape check its state files pass first), an archive file's records
// as every archive reader scans them, a record's body as every reader splits it (retry prefix,
// producer stamp, meta block, header block), and the decoding of numbers that arrive on the wire. None may crash, and each accepted value must be
// consistent with what was parsed.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <string>
#include <string_view>

#include "access_control.h"
#include "archive/archive.h"
#include "config.h"
#include "control/control.h"
#include "control/protocol.h"
#include "shmbus/names.h"
#include "shmbus/result.h"
#include "core/untrusted_files.h"
#include "record/record_view.h"

namespace {

// `data` as the records of an archive file of topic "t" behind a valid header (max_record from
// the first byte): the scan yields records inside the file, with rising ids, and then stops.
void scan_as_archive_file(const uint8_t* data, size_t size) {
    using namespace shmbus::layout;
    ArchiveFileHeader h{};
    h.magic = kArchiveMagic;
    h.version_major = kArchiveVersionMajor;
    h.version_minor = kArchiveVersionMinor;
    h.header_size = sizeof h;
    h.max_record = size > 0 ? uint32_t(data[0]) * 16 + 1 : 0;
    std::memcpy(h.topic, "t", 2);
    h.crc = shmbus::detail::archive::crc32c(0, &h, offsetof(ArchiveFileHeader, crc));
    const int fd = memfd_create("fuzz-archive", MFD_CLOEXEC);
    if (fd < 0) return;
    if (::write(fd, &h, sizeof h) != ssize_t(sizeof h) || ::write(fd, data, size) != ssize_t(size)) {
        ::close(fd);
        return;
    }
    auto scanner = shmbus::detail::archive::LogScanner::open(fd, "t", "fuzz.log");
    if (!scanner) std::abort();  // the header is valid
    shmbus::detail::archive::StoredRecord r;
    uint64_t previous = 0;
    bool any = false;
    while (scanner->next(r) == shmbus::detail::archive::LogScanner::Step::record) {
        if (r.offset + sizeof(ArchiveRecordHeader) + r.body.size() > sizeof h + size) std::abort();
        if (r.body.size() > h.max_record || (any && r.id <= previous)) std::abort();
        previous = r.id;
        any = true;
    }
}

// `data` as a record's body under every combination of flags: whatever a publisher wrote, the
// parts a reader takes (key, producer, headers, payload) lie inside the body.
void split_as_record(const uint8_t* data, size_t size) {
    using namespace shmbus::layout;
    const auto* body = reinterpret_cast<const std::byte*>(data);
    const auto* end = body + size;
    auto inside = [&](const void* p, std::size_t n) {
        const auto* b = static_cast<const std::byte*>(p);
        return n == 0 || (b >= body && b + n <= end);
    };
    for (uint16_t flags = 0; flags < 16; ++flags) {
        shmbus::Message m;
        shmbus::detail::split_record(body, uint32_t(size), flags, m);
        if (!inside(m.payload.data(), m.payload.size()) || !inside(m.key.data(), m.key.size()) ||
            !inside(m.producer.data(), m.producer.size()) || m.key.size() > kMaxKey)
            std::abort();
        for (const shmbus::Header& h : m.headers)
            if (!inside(h.key.data(), h.key.size()) || !inside(h.value.data(), h.value.size())) std::abort();
        const auto meta = shmbus::detail::record_meta(body, uint32_t(size), flags);
        if (meta.key != m.key || meta.expires_at_ns != m.expires_at_ns) std::abort();
    }
}

}  // namespace

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
    if (auto why = shmbus::detail::toml_shape_error(text); why && why->empty()) std::abort();
    scan_as_archive_file(data, size);
    split_as_record(data, size);
    if (size >= 4) {
        uint32_t code = 0;
        std::memcpy(&code, data, 4);
        if (auto e = shmbus::errc_from_code(code); e && uint32_t(*e) != code) std::abort();
        shmbus::StartFrom from{};
        if (shmbus::protocol::start_from_wire(code, from) && uint32_t(from) != code) std::abort();
    }
    return 0;
}
