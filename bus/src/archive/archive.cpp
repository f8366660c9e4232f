// The archive on disk, its common part: checksums, file names, the directory listing and the
// scanner every reader and the writer use (archive_writer.cpp, archive_reader.cpp hold the rest).
#include "archive/archive.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/errno_error.h"
#include "core/untrusted_files.h"

namespace shmbus {

const char* to_string(ArchiveFsync fsync) noexcept {
    switch (fsync) {
        case ArchiveFsync::never: return "never";
        case ArchiveFsync::interval: return "interval";
        case ArchiveFsync::always: return "always";
    }
    return "unknown";
}

bool parse_fsync(std::string_view text, ArchiveFsync& out) noexcept {
    for (ArchiveFsync f : {ArchiveFsync::never, ArchiveFsync::interval, ArchiveFsync::always}) {
        if (text == to_string(f)) {
            out = f;
            return true;
        }
    }
    return false;
}

namespace detail::archive {

void OwnedFd::reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

using layout::ArchiveFileHeader;
using layout::ArchiveIndexEntry;
using layout::ArchiveRecordHeader;

// ---- CRC32C (Castagnoli): the SSE4.2 instruction where the CPU has it, else a table. ----
namespace {

struct Crc32cTable {
    uint32_t t[256];
    constexpr Crc32cTable() : t() {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            t[i] = c;
        }
    }
};
constexpr Crc32cTable kCrcTable;

uint32_t crc32c_table(uint32_t crc, const unsigned char* p, std::size_t n) noexcept {
    while (n-- > 0) crc = kCrcTable.t[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const unsigned char* p, std::size_t n) noexcept {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t word;
        std::memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        n -= 8;
    }
    auto c32 = uint32_t(c);
    while (n-- > 0) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
const bool kHaveSse42 = __builtin_cpu_supports("sse4.2");
#endif

}  // namespace

uint32_t crc32c(uint32_t crc, const void* data, std::size_t size) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    crc = ~crc;
#if defined(__x86_64__)
    if (kHaveSse42) return ~crc32c_sse42(crc, p, size);
#endif
    return ~crc32c_table(crc, p, size);
}

// ---- Shared by the scanner, the writer and the readers (declared in archive.h) ----

uint32_t header_crc(const ArchiveFileHeader& h) noexcept { return crc32c(0, &h, offsetof(ArchiveFileHeader, crc)); }

// The checksum a record carries: its length, the fields after the checksum, then its body.
uint32_t record_crc(const ArchiveRecordHeader& h, const std::byte* body) noexcept {
    uint32_t c = crc32c(0, &h.length, sizeof h.length);
    c = crc32c(c, reinterpret_cast<const std::byte*>(&h) + 8, sizeof h - 8);
    return crc32c(c, body, h.length);
}

bool write_all(int fd, const std::byte* data, std::size_t n) noexcept {
    while (n > 0) {
        const ssize_t w = ::write(fd, data, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return false;
        }
        data += w;
        n -= std::size_t(w);
    }
    return true;
}

bool being_started(const Error& e) { return e.message.find("shorter than its header") != std::string::npos; }

int open_archive_file(int dir_fd, const std::string& name, int flags, mode_t mode) noexcept {
    auto fd = open_checked_at(dir_fd, name, flags, mode, (flags & (O_WRONLY | O_RDWR)) != 0);
    return fd ? *fd : -1;  // errno: as open_checked_at left it
}

namespace {

constexpr std::size_t kScanBuffer = 1 << 20;

bool parse_log_name(const char* name, uint64_t& first_id) noexcept {
    if (std::strlen(name) != 24 || std::strcmp(name + 20, ".log") != 0) return false;
    uint64_t v = 0;
    for (int i = 0; i < 20; ++i) {
        if (name[i] < '0' || name[i] > '9') return false;
        const uint64_t digit = uint64_t(name[i] - '0');
        if (v > (UINT64_MAX - digit) / 10) return false;
        v = v * 10 + digit;
    }
    first_id = v;
    return true;
}

}  // namespace

std::string log_name(uint64_t first_id) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%020llu.log", static_cast<unsigned long long>(first_id));
    return buf;
}
std::string index_name(uint64_t first_id) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%020llu.idx", static_cast<unsigned long long>(first_id));
    return buf;
}

Result<std::vector<LogFile>> list_logs(int dir_fd) {
    const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno_error(Errc::io_error, "cannot open the archive directory");
    DIR* dir = ::fdopendir(fd);
    if (dir == nullptr) {
        ::close(fd);
        return errno_error(Errc::io_error, "cannot read the archive directory");
    }
    std::vector<LogFile> files;
    while (const dirent* e = ::readdir(dir)) {
        uint64_t first = 0;
        if (parse_log_name(e->d_name, first)) files.push_back({first, e->d_name});
    }
    ::closedir(dir);
    std::sort(files.begin(), files.end(), [](const LogFile& a, const LogFile& b) { return a.first_id < b.first_id; });
    return files;
}

// ---- LogScanner ----

Result<LogScanner> LogScanner::open(int fd, std::string_view topic, std::string_view name) {
    LogScanner s;
    s.fd_.reset(fd);
    const std::string where(name);
    const ssize_t n = ::pread(fd, &s.header_, sizeof s.header_, 0);
    if (n < 0) return errno_error(Errc::io_error, "cannot read archive file " + where);
    if (std::size_t(n) < sizeof s.header_)
        return make_error(Errc::corrupt_segment, "archive file " + where + " is shorter than its header");
    const ArchiveFileHeader& h = s.header_;
    if (h.magic != layout::kArchiveMagic)
        return make_error(Errc::bad_magic, "archive file " + where + " is not a shmbus archive file");
    if (h.version_major != layout::kArchiveVersionMajor)
        return make_error(Errc::bad_version, "archive file " + where + " has format " + std::to_string(h.version_major) +
                                                 "." + std::to_string(h.version_minor) + "; this build reads " +
                                                 std::to_string(layout::kArchiveVersionMajor) + ".x");
    if (h.crc != header_crc(h) || h.header_size != sizeof(ArchiveFileHeader))
        return make_error(Errc::corrupt_segment, "archive file " + where + " has a damaged header");
    const std::string_view stored(h.topic, strnlen(h.topic, sizeof h.topic));
    if (!topic.empty() && stored != topic)
        return make_error(Errc::corrupt_segment, "archive file " + where + " belongs to topic '" + std::string(stored) + "'");
    s.offset_ = h.header_size;
    s.buf_.resize(kScanBuffer);
    return s;
}

void LogScanner::seek(uint64_t offset, uint64_t previous_id) noexcept {
    offset_ = offset;
    previous_id_ = previous_id;
    any_ = previous_id != 0 || offset != header_.header_size;
    buf_len_ = 0;
}

// Makes [offset, offset + bytes) available in buf_ if the file holds it; false if it does not.
bool LogScanner::fill(uint64_t offset, std::size_t bytes) noexcept {
    if (offset >= buf_offset_ && offset + bytes <= buf_offset_ + buf_len_) return true;
    if (bytes > buf_.size()) buf_.resize(bytes);
    std::size_t got = 0;
    while (got < buf_.size()) {
        const ssize_t n = ::pread(fd_.get(), buf_.data() + got, buf_.size() - got, off_t(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += std::size_t(n);
    }
    buf_offset_ = offset;
    buf_len_ = got;
    return got >= bytes;
}

LogScanner::Step LogScanner::next(StoredRecord& out) noexcept {
    ArchiveRecordHeader h;
    if (!fill(offset_, sizeof h)) {
        if (buf_len_ == 0) return Step::end;
        why_ = "a record header cut short at byte " + std::to_string(offset_);
        return Step::partial;
    }
    std::memcpy(&h, buf_.data() + (offset_ - buf_offset_), sizeof h);
    if (h.length > max_record()) {
        why_ = "an impossible record length " + std::to_string(h.length) + " at byte " + std::to_string(offset_) +
               " (records of this topic hold at most " + std::to_string(max_record()) + " bytes)";
        return Step::broken;
    }
    // A record already in the buffer was read from the file, so the file holds it. Otherwise the
    // size is asked before fill(): a plausible length still need not fit in the file, and the
    // buffer is grown only for a record the file holds (one fstat per buffer, not per record).
    const uint64_t end = offset_ + sizeof h + h.length;
    const bool buffered = end <= buf_offset_ + buf_len_;
    struct stat st{};
    if (!buffered && (::fstat(fd_.get(), &st) != 0 || end > uint64_t(st.st_size) || !fill(offset_, sizeof h + h.length))) {
        why_ = "a record cut short at byte " + std::to_string(offset_);
        return Step::partial;
    }
    const std::byte* body = buf_.data() + (offset_ - buf_offset_) + sizeof h;
    if (record_crc(h, body) != h.crc) {
        why_ = "a checksum mismatch at byte " + std::to_string(offset_);
        return Step::broken;
    }
    if (h.id < header_.first_id || (any_ && h.id <= previous_id_)) {
        why_ = "id " + std::to_string(h.id) + " out of order at byte " + std::to_string(offset_);
        return Step::broken;
    }
    out.id = h.id;
    out.timestamp_ns = h.timestamp_ns;
    out.flags = h.flags;
    out.offset = offset_;
    out.body = {body, h.length};
    offset_ += sizeof h + h.length;
    previous_id_ = h.id;
    any_ = true;
    return Step::record;
}

}  // namespace detail::archive
}  // namespace shmbus
