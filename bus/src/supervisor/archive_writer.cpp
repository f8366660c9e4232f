// The archive's appending side: recovery of the newest file at open, appends, retention.
#include "archive/archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/errno_error.h"
#include "core/untrusted_files.h"
#include "core/wall_clock.h"

namespace shmbus::detail::archive {

using layout::ArchiveFileHeader;
using layout::ArchiveIndexEntry;
using layout::ArchiveRecordHeader;

namespace {

constexpr std::size_t kWriteBuffer = 1 << 20;

}  // namespace

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


}  // namespace shmbus::detail::archive
