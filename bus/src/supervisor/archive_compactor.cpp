// Compaction of a compacted archive's closed files: superseded records dropped, the order of the
// survivors kept (docs/archive.md, "Compacted topics"). Only the archiver runs it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "archive/archive.h"
#include "core/errno_error.h"

namespace shmbus::detail::archive {

using layout::ArchiveFileHeader;
using layout::ArchiveIndexEntry;
using layout::ArchiveRecordHeader;

namespace {

constexpr std::size_t kFlushAt = 1 << 20;

// Writes the buffer out and empties it.
bool flush(int fd, std::vector<std::byte>& buf) noexcept {
    if (!write_all(fd, buf.data(), buf.size())) return false;
    buf.clear();
    return true;
}

template <class T>
void put(std::vector<std::byte>& buf, const T& v) {
    buf.insert(buf.end(), reinterpret_cast<const std::byte*>(&v), reinterpret_cast<const std::byte*>(&v + 1));
}

// A temporary file of the archive directory, made afresh (one a crashed compaction left is removed).
Result<OwnedFd> create_temporary(int dir_fd, const std::string& name) {
    if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT)
        return errno_error(Errc::io_error, "cannot remove the stale " + name);
    const int fd = open_archive_file(dir_fd, name, O_RDWR | O_CREAT | O_EXCL, kArchiveFileMode);
    if (fd < 0) return errno_error(errno == ENOSPC ? Errc::no_space : Errc::io_error, "cannot create " + name);
    (void)::fchmod(fd, kArchiveFileMode);  // whatever the umask: readers of other uids read it
    return OwnedFd(fd);
}

}  // namespace

Result<CompactedFile> compact_file(int dir_fd, const std::string& topic, const LogFile& file,
                                   const std::function<bool(const StoredRecord&)>& keep, bool sync) {
    const int in = open_archive_file(dir_fd, file.name, O_RDONLY);
    if (in < 0) return errno_error(errno == ENOENT ? Errc::topic_not_found : Errc::io_error, "cannot open archive file " + file.name);
    ArchiveFileHeader header{};
    struct stat st{};
    if (::pread(in, &header, sizeof header, 0) != ssize_t(sizeof header) || ::fstat(in, &st) != 0) {
        ::close(in);
        return errno_error(Errc::io_error, "cannot read archive file " + file.name);
    }
    auto scanner = LogScanner::open(in, topic, file.name);
    if (!scanner) return scanner.error();

    const std::string log_tmp = file.name + ".compacting", idx_tmp = index_name(file.first_id) + ".compacting";
    auto log = create_temporary(dir_fd, log_tmp);
    if (!log) return log.error();
    auto idx = create_temporary(dir_fd, idx_tmp);
    if (!idx) return idx.error();
    auto abandon = [&](Error e) -> Error {
        (void)::unlinkat(dir_fd, log_tmp.c_str(), 0);
        (void)::unlinkat(dir_fd, idx_tmp.c_str(), 0);
        return e;
    };

    CompactedFile out;
    out.bytes_before = uint64_t(st.st_size);
    std::vector<std::byte> log_buf, idx_buf;
    put(log_buf, header);  // the same header: the same name, first id, creation time and bound
    uint64_t size = sizeof header, next_index_at = sizeof header, max_ts = 0;
    StoredRecord r;
    LogScanner::Step step;
    while ((step = scanner->next(r)) == LogScanner::Step::record) {
        if (!keep(r)) {
            ++out.dropped;
            continue;
        }
        if (size >= next_index_at) {
            put(idx_buf, ArchiveIndexEntry{r.id, size, max_ts});
            next_index_at = size + layout::kArchiveIndexEvery;
        }
        ArchiveRecordHeader h{};
        h.length = uint32_t(r.body.size());
        h.id = r.id;
        h.timestamp_ns = r.timestamp_ns;
        h.flags = r.flags;
        h.crc = record_crc(h, r.body.data());
        put(log_buf, h);
        log_buf.insert(log_buf.end(), r.body.begin(), r.body.end());
        size += sizeof h + r.body.size();
        max_ts = std::max(max_ts, r.timestamp_ns);
        ++out.kept;
        if (log_buf.size() >= kFlushAt && !flush(log->get(), log_buf))
            return abandon(errno_error(errno == ENOSPC ? Errc::no_space : Errc::io_error, "cannot write " + log_tmp));
    }
    if (step != LogScanner::Step::end)  // damage (or a cut record) in a closed file: left for an operator to see
        return abandon(make_error(Errc::corrupt_segment, file.name + ": " + scanner->why() + "; not compacted"));
    if (out.kept == 0) {
        (void)abandon(make_error(Errc::io_error, ""));
        if (::unlinkat(dir_fd, file.name.c_str(), 0) != 0 && errno != ENOENT)
            return errno_error(Errc::io_error, "cannot remove the emptied archive file " + file.name);
        (void)::unlinkat(dir_fd, index_name(file.first_id).c_str(), 0);
        out.removed = true;
        return out;
    }
    if (!flush(log->get(), log_buf) || !flush(idx->get(), idx_buf))
        return abandon(errno_error(errno == ENOSPC ? Errc::no_space : Errc::io_error, "cannot write " + log_tmp));
    if (sync && (::fdatasync(log->get()) != 0 || ::fdatasync(idx->get()) != 0))
        return abandon(errno_error(Errc::io_error, "cannot sync " + log_tmp));
    // The index first: a reader that opens the new log with the old index, or the old log with
    // the new index, finds the record at an entry's offset is not the entry's and scans instead.
    if (::renameat(dir_fd, idx_tmp.c_str(), dir_fd, index_name(file.first_id).c_str()) != 0 ||
        ::renameat(dir_fd, log_tmp.c_str(), dir_fd, file.name.c_str()) != 0)
        return abandon(errno_error(Errc::io_error, "cannot replace " + file.name + " by its compacted copy"));
    if (sync && ::fsync(dir_fd) != 0) return errno_error(Errc::io_error, "cannot sync the archive directory");
    out.bytes_after = size;
    return out;
}

}  // namespace shmbus::detail::archive
