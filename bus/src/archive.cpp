#include "archive.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "errno_error.h"
#include "untrusted_files.h"
#include "wall_clock.h"

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

namespace {

uint32_t header_crc(const ArchiveFileHeader& h) noexcept { return crc32c(0, &h, offsetof(ArchiveFileHeader, crc)); }

// The checksum a record carries: its length, the fields after the checksum, then its body.
uint32_t record_crc(const ArchiveRecordHeader& h, const std::byte* body) noexcept {
    uint32_t c = crc32c(0, &h.length, sizeof h.length);
    c = crc32c(c, reinterpret_cast<const std::byte*>(&h) + 8, sizeof h - 8);
    return crc32c(c, body, h.length);
}

// The newest file without a whole header yet: the archiver is starting it (or died doing so, and
// removes it when it starts again). Nothing is in it.
bool being_started(const Error& e) { return e.message.find("shorter than its header") != std::string::npos; }

constexpr std::size_t kScanBuffer = 1 << 20;
constexpr std::size_t kWriteBuffer = 1 << 20;

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

// Opens a file of an archive directory: never through a link, never blocking on a FIFO, and only
// a regular file (open_checked_at). -1 with errno set (EACCES for a file that is not regular or
// not ours to write) so that callers keep their own messages.
int open_archive_file(int dir_fd, const std::string& name, int flags, mode_t mode = 0) noexcept {
    auto fd = open_checked_at(dir_fd, name, flags, mode, (flags & (O_WRONLY | O_RDWR)) != 0);
    return fd ? *fd : -1;  // errno: as open_checked_at left it
}

// Archive files and the directory are readable by anyone who can reach them: only shmbusd can (the
// state directory and each topic's directory are 0700), and it hands the archive directory's
// descriptor to the clients the ACL lets subscribe, whose uid may differ from shmbusd's.
constexpr mode_t kArchiveFileMode = 0644;
constexpr mode_t kArchiveDirMode = 0755;

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
    // Asked before fill(): a plausible length still need not fit in the file, and the buffer is
    // grown only for a record the file holds.
    struct stat st{};
    if (::fstat(fd_.get(), &st) != 0 || offset_ + sizeof h + h.length > uint64_t(st.st_size) ||
        !fill(offset_, sizeof h + h.length)) {
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

// ---- Writer ----

Writer::~Writer() {
    if (log_fd_.valid()) (void)write(false);
}

Result<Writer> Writer::open(int dir_fd, std::string topic, ArchiveSettings settings, uint32_t max_record) {
    Writer w;
    w.dir_fd_ = dir_fd;
    w.topic_ = std::move(topic);
    w.settings_ = settings;
    w.max_record_ = std::clamp<uint32_t>(max_record, 1, layout::kMaxArchiveRecord);
    (void)::fchmod(dir_fd, kArchiveDirMode);  // readers of other uids list it through the descriptor they are handed
    auto files = list_logs(dir_fd);
    if (!files) return files.error();
    // A file that never got a whole header (a crash right after creating it) holds nothing.
    while (!files->empty()) {
        Status s = w.recover_last(files->back());
        if (s) return w;
        if (!being_started(s.error())) return s.error();
        if (::unlinkat(dir_fd, files->back().name.c_str(), 0) != 0)
            return errno_error(Errc::io_error, "cannot remove the empty archive file " + files->back().name);
        (void)::unlinkat(dir_fd, index_name(files->back().first_id).c_str(), 0);
        files->pop_back();
    }
    return w;
}

// Scans the newest file, cuts it after its last whole record, rebuilds its index, and opens it
// for appending.
Status Writer::recover_last(const LogFile& file) {
    const int fd = open_archive_file(dir_fd_, file.name, O_RDWR);
    if (fd < 0) return errno_error(Errc::io_error, "cannot open archive file " + file.name);
    (void)::fchmod(fd, kArchiveFileMode);  // a file an older shmbusd made 0640
    const int check_fd = ::dup(fd);
    auto scanner = LogScanner::open(check_fd, topic_, file.name);
    if (!scanner) {
        ::close(fd);
        return scanner.error();
    }
    std::vector<ArchiveIndexEntry> index;
    uint64_t next_index = 0, max_ts = 0;
    StoredRecord r;
    LogScanner::Step step;
    while ((step = scanner->next(r)) == LogScanner::Step::record) {
        if (r.offset >= next_index) {
            index.push_back({r.id, r.offset, max_ts});
            next_index = r.offset + layout::kArchiveIndexEvery;
        }
        max_ts = std::max(max_ts, r.timestamp_ns);
        last_id_ = r.id;
        has_last_ = true;
    }
    const uint64_t end = scanner->offset();
    if (step == LogScanner::Step::broken) {
        // Damage, not a crash mid-write: what follows may hold records already acknowledged, so
        // the file stays as it is for an operator (and `archive verify`) to see; readers step
        // over the damage and report it. The next record starts a new file.
        damage_ = file.name + ": " + scanner->why();
        ::close(fd);
        return ok_status();
    }
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        return errno_error(Errc::io_error, "cannot stat archive file " + file.name);
    }
    if (uint64_t(st.st_size) > end) {
        cut_bytes_ = uint64_t(st.st_size) - end;
        if (::ftruncate(fd, off_t(end)) != 0) {
            ::close(fd);
            return errno_error(Errc::io_error, "cannot cut archive file " + file.name + " back to its last whole record");
        }
    }
    if (::lseek(fd, off_t(end), SEEK_SET) < 0) {
        ::close(fd);
        return errno_error(Errc::io_error, "cannot seek in archive file " + file.name);
    }
    const std::string idx = index_name(file.first_id);
    const int ifd = open_archive_file(dir_fd_, idx, O_RDWR | O_CREAT, kArchiveFileMode);
    if (ifd >= 0 && (::ftruncate(ifd, 0) != 0 || ::fchmod(ifd, kArchiveFileMode) != 0)) {
        ::close(ifd);
        ::close(fd);
        return errno_error(Errc::io_error, "cannot rebuild archive index " + idx);
    }
    if (ifd < 0 || !write_all(ifd, reinterpret_cast<const std::byte*>(index.data()), index.size() * sizeof(ArchiveIndexEntry))) {
        if (ifd >= 0) ::close(ifd);
        ::close(fd);
        return errno_error(Errc::io_error, "cannot rebuild archive index " + idx);
    }
    log_fd_.reset(fd);
    idx_fd_.reset(ifd);
    file_first_id_ = file.first_id;
    file_size_ = end;
    next_index_at_ = next_index;
    max_timestamp_ = max_ts;
    return ok_status();
}

Status Writer::start_file(uint64_t first_id) {
    const std::string name = log_name(first_id);
    // A damaged file left in place may already bear this name (damage before its first whole
    // record): it is kept under another name, where readers no longer look, for the operator.
    if (!damage_.empty() && ::faccessat(dir_fd_, name.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        const std::string aside = name + ".damaged";
        if (::renameat(dir_fd_, name.c_str(), dir_fd_, aside.c_str()) != 0)
            return errno_error(Errc::io_error, "cannot move the damaged archive file " + name + " aside");
        (void)::unlinkat(dir_fd_, index_name(first_id).c_str(), 0);
    }
    const int fd = open_archive_file(dir_fd_, name, O_RDWR | O_CREAT | O_EXCL, kArchiveFileMode);
    if (fd < 0) return errno_error(errno == ENOSPC ? Errc::no_space : Errc::io_error, "cannot create archive file " + name);
    const int ifd = open_archive_file(dir_fd_, index_name(first_id), O_RDWR | O_CREAT, kArchiveFileMode);
    // Modes set explicitly: a umask (systemd's UMask=0077) must not hide the archive from readers.
    if (ifd < 0 || ::ftruncate(ifd, 0) != 0 || ::fchmod(fd, kArchiveFileMode) != 0 || ::fchmod(ifd, kArchiveFileMode) != 0) {
        if (ifd >= 0) ::close(ifd);
        ::close(fd);
        return errno_error(Errc::io_error, "cannot create archive index " + index_name(first_id));
    }
    ArchiveFileHeader h{};
    h.magic = layout::kArchiveMagic;
    h.version_major = layout::kArchiveVersionMajor;
    h.version_minor = layout::kArchiveVersionMinor;
    h.header_size = sizeof h;
    h.first_id = first_id;
    h.created_ns = WallClock::system_ns();
    h.max_record = max_record_;
    std::memcpy(h.topic, topic_.data(), std::min(topic_.size(), sizeof h.topic - 1));
    h.crc = header_crc(h);
    log_fd_.reset(fd);
    idx_fd_.reset(ifd);
    dir_dirty_ = true;
    file_first_id_ = first_id;
    file_size_ = 0;
    next_index_at_ = sizeof h;
    max_timestamp_ = 0;
    log_buf_.insert(log_buf_.end(), reinterpret_cast<const std::byte*>(&h), reinterpret_cast<const std::byte*>(&h + 1));
    file_size_ = sizeof h;
    return ok_status();
}

Status Writer::append(uint64_t id, uint64_t timestamp_ns, uint16_t flags, std::span<const std::byte> body) {
    if (has_last_ && id <= last_id_)
        return make_error(Errc::invalid_argument, "archive ids must rise: " + std::to_string(id) + " after " + std::to_string(last_id_));
    if (body.size() > max_record_)
        return make_error(Errc::message_too_large, "a record of " + std::to_string(body.size()) +
                                                       " bytes is longer than this archive's records may be (" +
                                                       std::to_string(max_record_) + ")");
    if (log_fd_.valid() && file_size_ >= std::max(settings_.file_bytes, kMinArchiveFileBytes)) {
        if (Status s = close_file(settings_.fsync != ArchiveFsync::never); !s) return s;
    }
    if (!log_fd_.valid()) {
        if (Status s = start_file(id); !s) return s;
    }
    ArchiveRecordHeader h{};
    h.length = uint32_t(body.size());
    h.id = id;
    h.timestamp_ns = timestamp_ns;
    h.flags = flags;
    h.crc = record_crc(h, body.data());
    if (file_size_ >= next_index_at_) {
        const ArchiveIndexEntry e{id, file_size_, max_timestamp_};
        idx_buf_.insert(idx_buf_.end(), reinterpret_cast<const std::byte*>(&e), reinterpret_cast<const std::byte*>(&e + 1));
        next_index_at_ = file_size_ + layout::kArchiveIndexEvery;
    }
    log_buf_.insert(log_buf_.end(), reinterpret_cast<const std::byte*>(&h), reinterpret_cast<const std::byte*>(&h + 1));
    log_buf_.insert(log_buf_.end(), body.begin(), body.end());
    file_size_ += sizeof h + body.size();
    max_timestamp_ = std::max(max_timestamp_, timestamp_ns);
    last_id_ = id;
    has_last_ = true;
    if (log_buf_.size() >= kWriteBuffer) return write(false);
    return ok_status();
}

Status Writer::write(bool sync) {
    if (!log_fd_.valid()) return ok_status();
    // The log before its index: an index entry never points past what the log holds.
    if (!write_all(log_fd_.get(), log_buf_.data(), log_buf_.size()))
        return errno_error(errno == ENOSPC ? Errc::no_space : Errc::io_error, "cannot write archive file " + log_name(file_first_id_));
    log_buf_.clear();
    if (!write_all(idx_fd_.get(), idx_buf_.data(), idx_buf_.size()))
        return errno_error(errno == ENOSPC ? Errc::no_space : Errc::io_error, "cannot write archive index " + index_name(file_first_id_));
    idx_buf_.clear();
    if (sync && ::fdatasync(log_fd_.get()) != 0) return errno_error(Errc::io_error, "cannot sync archive file " + log_name(file_first_id_));
    // A file's name must be on the disk as well before records in it are acknowledged as synced.
    if (sync && dir_dirty_) {
        if (::fsync(dir_fd_) != 0) return errno_error(Errc::io_error, "cannot sync the archive directory");
        dir_dirty_ = false;
    }
    return ok_status();
}

Status Writer::close_file(bool sync) {
    if (Status s = write(sync); !s) return s;
    log_fd_.reset();
    idx_fd_.reset();
    return ok_status();
}

Result<uint32_t> Writer::apply_retention(uint64_t now_ns) {
    if (settings_.retain_bytes == 0 && settings_.retain_time.count() == 0) return 0u;
    auto files = list_logs(dir_fd_);
    if (!files) return files.error();
    uint64_t total = 0;
    std::vector<uint64_t> sizes;
    for (const LogFile& f : *files) {
        struct stat st{};
        sizes.push_back(::fstatat(dir_fd_, f.name.c_str(), &st, 0) == 0 ? uint64_t(st.st_size) : 0);
        total += sizes.back();
    }
    uint32_t deleted = 0;
    // Never the newest file: it may be the one being written.
    for (std::size_t i = 0; i + 1 < files->size(); ++i) {
        bool too_old = false;
        if (settings_.retain_time.count() > 0) {
            // A file's newest record is at most as old as the next file's creation.
            const int fd = open_archive_file(dir_fd_, (*files)[i + 1].name, O_RDONLY);
            if (fd >= 0) {
                ArchiveFileHeader h{};
                if (::pread(fd, &h, sizeof h, 0) == ssize_t(sizeof h) && h.magic == layout::kArchiveMagic)
                    too_old = h.created_ns + uint64_t(settings_.retain_time.count()) < now_ns;
                ::close(fd);
            }
        }
        const bool too_big = settings_.retain_bytes != 0 && total > settings_.retain_bytes;
        if (!too_old && !too_big) break;
        if (::unlinkat(dir_fd_, (*files)[i].name.c_str(), 0) != 0 && errno != ENOENT)
            return errno_error(Errc::io_error, "cannot delete archive file " + (*files)[i].name);
        (void)::unlinkat(dir_fd_, index_name((*files)[i].first_id).c_str(), 0);
        total -= sizes[i];
        ++deleted;
    }
    return deleted;
}

// ---- Reader ----

Result<Reader> Reader::open(int dir_fd, std::string topic) {
    Reader r;
    r.dir_fd_.reset(dir_fd);
    r.topic_ = std::move(topic);
    return r;
}

Status Reader::open_file(std::size_t index, uint64_t from_id, uint64_t from_time) {
    scanner_.reset();
    file_ = index;
    if (index >= files_.size()) return ok_status();
    current_first_ = files_[index].first_id;
    have_current_ = true;  // even if it cannot be opened: the next one is newer
    const int fd = open_archive_file(dir_fd_.get(), files_[index].name, O_RDONLY);
    if (fd < 0)
        return errno_error(errno == ENOENT ? Errc::topic_not_found : errno == EACCES ? Errc::permission_denied : Errc::io_error,
                           "cannot open archive file " + files_[index].name);
    auto s = LogScanner::open(fd, topic_, files_[index].name);
    if (!s) return s.error();
    scanner_.emplace(std::move(*s));
    return position_in_file(from_id, from_time);
}

// Starts the scanner at the last index entry before the wanted id or time: at most
// kArchiveIndexEvery bytes are then read and stepped over.
Status Reader::position_in_file(uint64_t from_id, uint64_t from_time) {
    const int ifd = open_archive_file(dir_fd_.get(), index_name(files_[file_].first_id), O_RDONLY);
    if (ifd < 0) return ok_status();  // no index: scan from the start
    struct stat st{};
    std::vector<ArchiveIndexEntry> entries;
    if (::fstat(ifd, &st) == 0) {
        entries.resize(std::size_t(st.st_size) / sizeof(ArchiveIndexEntry));
        const ssize_t n = ::pread(ifd, entries.data(), entries.size() * sizeof(ArchiveIndexEntry), 0);
        entries.resize(n > 0 ? std::size_t(n) / sizeof(ArchiveIndexEntry) : 0);
    }
    ::close(ifd);
    // The entries are hints: a damaged one only makes the scan start elsewhere, and the scan
    // checks every record it reads.
    const ArchiveIndexEntry* best = nullptr;
    for (const ArchiveIndexEntry& e : entries) {
        const bool before = from_time != 0 ? e.max_timestamp_before_ns < from_time : e.id <= from_id;
        if (!before || (best != nullptr && e.offset <= best->offset)) break;
        best = &e;
    }
    if (best != nullptr && best->id > 0) scanner_->seek(best->offset, best->id - 1);
    return ok_status();
}

Status Reader::seek_id(uint64_t id) {
    auto files = list_logs(dir_fd_.get());
    if (!files) return files.error();
    files_ = std::move(*files);
    skip_below_id_ = id;
    skip_before_time_ = 0;
    have_current_ = false;
    std::size_t i = 0;
    while (i + 1 < files_.size() && files_[i + 1].first_id <= id) ++i;
    for (;; ++i) {
        Status s = open_file(i, id, 0);
        if (s || s.error().code != Errc::topic_not_found) return s;  // deleted meanwhile: the next one
    }
}

Status Reader::seek_time(uint64_t time_ns) {
    auto files = list_logs(dir_fd_.get());
    if (!files) return files.error();
    files_ = std::move(*files);
    skip_below_id_ = 0;
    skip_before_time_ = time_ns;
    have_current_ = false;
    // The first file whose successor was begun at or after `time_ns` holds the first such record
    // (or none does); begin two files earlier since clocks differ between publishers.
    std::size_t i = 0;
    for (; i + 1 < files_.size(); ++i) {
        const int fd = open_archive_file(dir_fd_.get(), files_[i + 1].name, O_RDONLY);
        if (fd < 0) continue;
        auto s = LogScanner::open(fd, topic_, files_[i + 1].name);
        if (s && s->created_ns() >= time_ns) break;
    }
    i = i >= 1 ? i - 1 : 0;
    for (;; ++i) {
        Status s = open_file(i, 0, time_ns);
        if (s || s.error().code != Errc::topic_not_found) return s;
    }
}

bool Reader::wanted(const StoredRecord& r) noexcept {
    if (r.id < skip_below_id_) return false;
    if (skip_before_time_ != 0 && r.timestamp_ns < skip_before_time_) return false;
    skip_before_time_ = 0;  // from the first record this late on, everything in order
    return true;
}

// Opens the oldest file newer than the one read last (any file if none was); false if none is.
Reader::Step Reader::open_newer(bool& opened) noexcept {
    opened = false;
    auto files = list_logs(dir_fd_.get());
    if (!files) {
        why_ = files.error().message;
        return Step::broken;
    }
    files_ = std::move(*files);
    for (std::size_t i = 0; i < files_.size(); ++i) {
        if (have_current_ && files_[i].first_id <= current_first_) continue;
        Status s = open_file(i, skip_below_id_, skip_before_time_);
        if (s) {
            opened = true;
            return Step::record;
        }
        if (s.error().code == Errc::topic_not_found) continue;  // deleted by retention meanwhile
        why_ = s.error().message;
        return Step::broken;
    }
    return Step::end;
}

Reader::Step Reader::next(StoredRecord& out) noexcept {
    for (;;) {
        if (scanner_) {
            const LogScanner::Step step = scanner_->next(out);
            if (step == LogScanner::Step::record) {
                last_read_id_ = out.id;
                if (wanted(out)) return Step::record;
                continue;
            }
            // The end of this file, or an unfinished record at its end. If a newer file exists
            // the writer has closed this one: read it once more for what it wrote before closing.
            auto files = list_logs(dir_fd_.get());
            if (!files) {
                why_ = files.error().message;
                return Step::broken;
            }
            const bool newest = files->empty() || files->back().first_id <= current_first_;
            if (newest && step == LogScanner::Step::partial) return Step::end;  // the writer is at work
            // A newer file exists, so the writer has closed this one: read it once more for
            // what it wrote before closing. Damage (or a cut record in a closed file) ends the
            // file: its remaining ids are counted lost and reading goes on in the next file.
            const LogScanner::Step again = step == LogScanner::Step::broken ? step : scanner_->next(out);
            if (again == LogScanner::Step::record) {
                last_read_id_ = out.id;
                if (wanted(out)) return Step::record;
                continue;
            }
            if (again == LogScanner::Step::end && newest) return Step::end;
            if (again != LogScanner::Step::end) {
                damage_ = log_name(current_first_) + ": " + scanner_->why();
                const auto next = std::find_if(files->begin(), files->end(),
                                               [&](const LogFile& f) { return f.first_id > current_first_; });
                if (next != files->end()) {
                    const uint64_t from = std::max(last_read_id_ + 1, current_first_);
                    if (next->first_id > from) lost_ += next->first_id - from;
                } else {
                    why_ = damage_;  // damage in the newest file, with nothing after it to go on from
                    return Step::broken;
                }
            }
            scanner_.reset();
        }
        bool opened = false;
        const Step s = open_newer(opened);
        if (!opened) return s;
    }
}

// ---- info and verify ----

namespace {

// Scans one file to its end; `tail_broken` reports where whole records stopped.
struct FileScan {
    ArchiveFileInfo info;
    std::string broken;  // why whole records stopped before the end; empty if they did not
    bool partial = false;  // they stopped at a record cut short (plausible), not at damage
    uint64_t broken_bytes = 0;
};

Result<FileScan> scan_file(int dir_fd, const std::string& topic, const LogFile& f) {
    auto opened = open_checked_at(dir_fd, f.name, O_RDONLY);
    if (!opened) return make_error(opened.error().code, "archive file " + opened.error().message);
    const int fd = *opened;
    struct stat st{};
    (void)::fstat(fd, &st);
    auto s = LogScanner::open(fd, topic, f.name);
    if (!s) return s.error();
    FileScan out;
    out.info.name = f.name;
    out.info.bytes = uint64_t(st.st_size);
    if (s->first_id() != f.first_id) {
        out.broken = "its header says it begins at id " + std::to_string(s->first_id());
        return out;
    }
    StoredRecord r;
    LogScanner::Step step;
    while ((step = s->next(r)) == LogScanner::Step::record) {
        ++out.info.records;
        if (!out.info.first_id) out.info.first_id = r.id, out.info.first_time_ns = r.timestamp_ns;
        out.info.last_id = r.id;
        out.info.last_time_ns = r.timestamp_ns;
    }
    if (step == LogScanner::Step::broken || step == LogScanner::Step::partial) {
        out.broken = s->why();
        out.partial = step == LogScanner::Step::partial;
        out.broken_bytes = uint64_t(st.st_size) > s->offset() ? uint64_t(st.st_size) - s->offset() : 0;
    }
    return out;
}

}  // namespace

Status check_readable(int dir_fd) {
    auto files = list_logs(dir_fd);
    if (!files) return files.error();
    for (const LogFile& f : *files) {  // the oldest that still exists (retention may delete one meanwhile)
        const int fd = open_archive_file(dir_fd, f.name, O_RDONLY);
        if (fd >= 0) {
            ::close(fd);
            return ok_status();
        }
        if (errno != ENOENT)
            return errno_error(errno == EACCES ? Errc::permission_denied : Errc::io_error, "cannot open archive file " + f.name);
    }
    return ok_status();
}

Result<ArchiveInfo> describe(int dir_fd, std::string topic) {
    auto files = list_logs(dir_fd);
    if (!files) return files.error();
    ArchiveInfo info;
    info.topic = topic;
    for (std::size_t i = 0; i < files->size(); ++i) {
        const LogFile& f = (*files)[i];
        auto scan = scan_file(dir_fd, topic, f);
        if (!scan) {
            if (scan.error().code == Errc::topic_not_found) continue;  // deleted by retention meanwhile
            if (i + 1 == files->size() && being_started(scan.error())) continue;
            return scan.error();
        }
        const ArchiveFileInfo& fi = scan->info;
        info.bytes += fi.bytes;
        info.records += fi.records;
        if (fi.first_id && !info.first_id) info.first_id = fi.first_id, info.first_time_ns = fi.first_time_ns;
        if (fi.last_id) info.last_id = fi.last_id, info.last_time_ns = fi.last_time_ns;
        info.files.push_back(fi);
    }
    return info;
}

Result<ArchiveVerifyReport> verify(int dir_fd, std::string topic) {
    auto files = list_logs(dir_fd);
    if (!files) return files.error();
    ArchiveVerifyReport report;
    std::optional<uint64_t> last;
    for (std::size_t i = 0; i < files->size(); ++i) {
        const LogFile& f = (*files)[i];
        auto scan = scan_file(dir_fd, topic, f);
        if (!scan) {
            if (scan.error().code == Errc::topic_not_found) continue;
            if (i + 1 == files->size() && being_started(scan.error())) {
                struct stat st{};
                report.partial_tail_bytes = ::fstatat(dir_fd, f.name.c_str(), &st, 0) == 0 ? uint64_t(st.st_size) : 0;
                continue;
            }
            report.damage.push_back(f.name + ": " + scan.error().message);
            continue;
        }
        ++report.files;
        report.records += scan->info.records;
        report.bytes += scan->info.bytes;
        if (scan->info.first_id && last && *scan->info.first_id <= *last)
            report.damage.push_back(f.name + ": id " + std::to_string(*scan->info.first_id) + " repeats or goes back after " +
                                    std::to_string(*last));
        if (scan->info.last_id) last = scan->info.last_id;
        if (scan->broken.empty()) continue;
        // The newest file's unfinished last record is the archiver at work (or a crash it will
        // cut back on restart); anything else broken is damage.
        const bool newest = i + 1 == files->size();
        if (newest && scan->partial) report.partial_tail_bytes = scan->broken_bytes;
        else report.damage.push_back(f.name + ": " + scan->broken);
    }
    return report;
}

}  // namespace detail::archive
}  // namespace shmbus
