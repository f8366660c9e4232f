// The archive on disk (layout/archive_file.h): the writer the archiver appends with, the reader
// subscribers replay from, and the scans behind recovery, `archive info` and `archive verify`.
// Everything works through a directory descriptor (the topic's archive directory), so a client
// reads exactly the directory shmbusd handed it and never a path of its choosing.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shmbus/archive.h"
#include "shmbus/layout/archive_file.h"
#include "shmbus/result.h"

namespace shmbus::detail {
// The durable subscription name of a topic's archiver: none a client may choose ('$').
inline constexpr std::string_view kArchiverSubscription = "$archiver";
[[nodiscard]] inline bool is_archiver_name(std::string_view name) noexcept { return name == kArchiverSubscription; }
}  // namespace shmbus::detail

namespace shmbus::detail::archive {

// A descriptor its holder owns: closed when it goes, handed on when moved.
class OwnedFd {
public:
    OwnedFd() noexcept = default;
    explicit OwnedFd(int fd) noexcept : fd_(fd) {}
    OwnedFd(OwnedFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    OwnedFd& operator=(OwnedFd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~OwnedFd() { reset(); }
    void reset(int fd = -1) noexcept;
    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }

private:
    int fd_ = -1;
};

[[nodiscard]] uint32_t crc32c(uint32_t crc, const void* data, std::size_t size) noexcept;
// A file header's CRC32C (of the bytes before its crc field), and a record's (its length, the
// fields after its crc, then its body).
[[nodiscard]] uint32_t header_crc(const layout::ArchiveFileHeader& h) noexcept;
[[nodiscard]] uint32_t record_crc(const layout::ArchiveRecordHeader& h, const std::byte* body) noexcept;
// Writes all `n` bytes (again after a short write or EINTR); false with errno set (EIO for a
// write that wrote nothing).
[[nodiscard]] bool write_all(int fd, const std::byte* data, std::size_t n) noexcept;
// The newest file without a whole header yet: the archiver is starting it (or died doing so, and
// removes it when it starts again). Nothing is in it. `e`: LogScanner::open's error.
[[nodiscard]] bool being_started(const Error& e);
// Opens a file of an archive directory: never through a link, never blocking on a FIFO, and only
// a regular file (open_checked_at; also of our uid when opened for writing). -1 with errno set.
[[nodiscard]] int open_archive_file(int dir_fd, const std::string& name, int flags, mode_t mode = 0) noexcept;
// Archive files and the directory are readable by anyone who can reach them: only shmbusd can (the
// state directory and each topic's directory are 0700), and it hands the archive directory's
// descriptor to the clients the ACL lets subscribe, whose uid may differ from shmbusd's.
inline constexpr mode_t kArchiveFileMode = 0644;
inline constexpr mode_t kArchiveDirMode = 0755;

// The log files of an archive directory, oldest first, by the first id their names carry.
struct LogFile {
    uint64_t first_id;
    std::string name;  // <first id>.log
};
[[nodiscard]] Result<std::vector<LogFile>> list_logs(int dir_fd);
[[nodiscard]] std::string log_name(uint64_t first_id);
[[nodiscard]] std::string index_name(uint64_t first_id);

// The record view a scan or a reader yields; `body` lives until the next call.
struct StoredRecord {
    uint64_t id = 0;
    uint64_t timestamp_ns = 0;
    uint16_t flags = 0;
    uint64_t offset = 0;  // where its header starts in the file
    std::span<const std::byte> body;
};

// Reads one log file's records in order with a buffer, checking each. Used by every reader.
class LogScanner {
public:
    // record: a whole record. end: the end of the file. partial: a record that may still be being
    // written (or was cut by a crash): its header is cut short, or its length is plausible (at most
    // the file's max_record) and its body runs past the end of the file. broken: damage, anything
    // else (an impossible length, a checksum mismatch, ids out of order): `why` says how.
    enum class Step : uint8_t { record, end, partial, broken };
    // Takes ownership of `fd`. `topic`: the topic the header must name (empty: any).
    [[nodiscard]] static Result<LogScanner> open(int fd, std::string_view topic, std::string_view name);

    // The next whole record, or why there is none. Never reads or allocates more than the file
    // holds, whatever a damaged length says.
    [[nodiscard]] Step next(StoredRecord& out) noexcept;
    // The longest record body this file may hold (its header's max_record; kMaxArchiveRecord for 1.0 files).
    [[nodiscard]] uint32_t max_record() const noexcept {
        return header_.max_record != 0 ? header_.max_record : layout::kMaxArchiveRecord;
    }
    void seek(uint64_t offset, uint64_t previous_id) noexcept;
    [[nodiscard]] uint64_t offset() const noexcept { return offset_; }
    [[nodiscard]] uint64_t first_id() const noexcept { return header_.first_id; }
    [[nodiscard]] uint64_t created_ns() const noexcept { return header_.created_ns; }
    [[nodiscard]] const std::string& why() const noexcept { return why_; }
    [[nodiscard]] int fd() const noexcept { return fd_.get(); }

private:
    LogScanner() = default;
    [[nodiscard]] bool fill(uint64_t offset, std::size_t bytes) noexcept;
    OwnedFd fd_;
    layout::ArchiveFileHeader header_{};
    uint64_t offset_ = 0;
    uint64_t previous_id_ = 0;  // ids must rise
    bool any_ = false;
    std::vector<std::byte> buf_;
    uint64_t buf_offset_ = 0;   // file offset of buf_[0]
    std::size_t buf_len_ = 0;
    std::string why_;
};

// The appending side, one per archive (the archiver holds the directory's lock). Opening checks
// the last file and cuts it back to its last whole record if what follows is a record cut short
// (a crash at any moment leaves an archive that holds each message at most once); the archiver
// then resumes after last_id(). A last file that is damaged instead is never cut: it is kept as it
// is (damage() says where and how) and the next record starts a new file.
class Writer {
public:
    // `max_record`: the longest body the topic's records can have (recorded in each new file).
    [[nodiscard]] static Result<Writer> open(int dir_fd, std::string topic, ArchiveSettings settings,
                                             uint32_t max_record = layout::kMaxArchiveRecord);
    Writer(Writer&&) noexcept = default;
    Writer& operator=(Writer&&) = delete;  // the one it would replace could not write what it buffered
    ~Writer();  // writes what is buffered

    [[nodiscard]] bool empty() const noexcept { return !has_last_; }
    [[nodiscard]] uint64_t last_id() const noexcept { return last_id_; }
    // The first id of the file being written (compaction never touches it); UINT64_MAX when none is open.
    [[nodiscard]] uint64_t file_first_id() const noexcept { return log_fd_.valid() ? file_first_id_ : UINT64_MAX; }
    [[nodiscard]] uint64_t recovered_cut_bytes() const noexcept { return cut_bytes_; }
    // Damage found in the last file at open (file name and why), which was left as it is; empty if none.
    [[nodiscard]] const std::string& damage() const noexcept { return damage_; }
    // Buffers one record (ids must rise); write() hands the buffer to the kernel.
    [[nodiscard]] Status append(uint64_t id, uint64_t timestamp_ns, uint16_t flags, std::span<const std::byte> body);
    // Writes what is buffered; with `sync`, forces it to the disk (fdatasync) as well.
    [[nodiscard]] Status write(bool sync);
    // Deletes the oldest files (never the one being written) while the archive is over its size
    // limit or a file's newest record is older than its age limit. Returns the files deleted.
    [[nodiscard]] Result<uint32_t> apply_retention(uint64_t now_ns);
    void set_settings(const ArchiveSettings& s) noexcept { settings_ = s; }
    [[nodiscard]] const ArchiveSettings& settings() const noexcept { return settings_; }

private:
    Writer() = default;
    [[nodiscard]] Status start_file(uint64_t first_id);
    [[nodiscard]] Status recover_last(const LogFile& file);
    [[nodiscard]] Status close_file(bool sync);
    int dir_fd_ = -1;  // not owned
    std::string topic_;
    ArchiveSettings settings_;
    OwnedFd log_fd_, idx_fd_;
    uint64_t file_first_id_ = 0;
    uint64_t file_size_ = 0;        // bytes in the file, buffered ones included
    uint64_t next_index_at_ = 0;    // log offset past which the next index entry is due
    uint64_t max_timestamp_ = 0;    // highest timestamp written to the current file
    std::vector<std::byte> log_buf_, idx_buf_;
    uint64_t last_id_ = 0;
    bool has_last_ = false;
    uint64_t cut_bytes_ = 0;
    uint32_t max_record_ = layout::kMaxArchiveRecord;
    std::string damage_;
    bool dir_dirty_ = false;        // a file was created since the directory was last synced
};

// Compaction of one closed file of a compacted archive (docs/archive.md, "Compacted topics"): its
// records that `keep` accepts, in order, are written under a temporary name with a new index, then
// renamed over the file (index first), so a reader sees the old file or the new one whole, and
// one that pairs a log with the other's index finds the index wrong and scans instead. With
// nothing kept the file and its index are removed. A file with damage is left as it is (error).
struct CompactedFile {
    uint64_t kept = 0, dropped = 0;
    uint64_t bytes_before = 0, bytes_after = 0;
    bool removed = false;
};
[[nodiscard]] Result<CompactedFile> compact_file(int dir_fd, const std::string& topic, const LogFile& file,
                                                 const std::function<bool(const StoredRecord&)>& keep, bool sync);

// Reads an archive in id order across its files, as a subscriber replaying it does.
class Reader {
public:
    [[nodiscard]] static Result<Reader> open(int dir_fd, std::string topic);  // dir_fd owned

    // Positions at the first record with id >= `id`. `lost` counts nothing (the ids a retention
    // deleted are counted by the caller from the first id it then reads).
    [[nodiscard]] Status seek_id(uint64_t id);
    // Positions at the first record (in id order) whose timestamp is >= `time_ns`.
    [[nodiscard]] Status seek_time(uint64_t time_ns);
    // The first id of the oldest file, as of the last seek; none if the archive was empty.
    [[nodiscard]] std::optional<uint64_t> oldest_id() const noexcept {
        return files_.empty() ? std::nullopt : std::optional<uint64_t>(files_.front().first_id);
    }
    enum class Step : uint8_t { record, end, broken };
    // The next record; `end` when nothing more is archived yet. A file damaged before its end is
    // read up to the damage and then left for the next file: take_lost() counts the ids skipped
    // (at most that many messages; some ids may have been skipped claims) and damage() says why.
    [[nodiscard]] Step next(StoredRecord& out) noexcept;
    [[nodiscard]] const std::string& why() const noexcept { return why_; }
    [[nodiscard]] uint64_t take_lost() noexcept { return std::exchange(lost_, 0); }
    [[nodiscard]] const std::string& damage() const noexcept { return damage_; }

private:
    Reader() = default;
    [[nodiscard]] Status open_file(std::size_t index, uint64_t from_id, uint64_t from_time);
    [[nodiscard]] Status position_in_file(uint64_t from_id, uint64_t from_time);
    [[nodiscard]] bool wanted(const StoredRecord& r) noexcept;
    [[nodiscard]] Step open_newer(bool& opened) noexcept;
    OwnedFd dir_fd_;
    std::string topic_;
    std::vector<LogFile> files_;
    std::size_t file_ = 0;
    std::optional<LogScanner> scanner_;
    uint64_t current_first_ = 0;     // the first id of the file open (or read last)
    bool have_current_ = false;
    uint64_t skip_below_id_ = 0;     // seek: records below are stepped over
    uint64_t skip_before_time_ = 0;  // seek_time: records (in order) before the first this late
    uint64_t last_read_id_ = 0;      // the id of the last record read (0: none yet)
    uint64_t lost_ = 0;              // ids stepped over at damage, not yet taken
    std::string damage_;             // the last damage stepped over
    std::string why_;
};

// Whether this process can read the archive through `dir_fd`: the directory lists and its oldest
// file opens. A subscriber asks before it relies on the archive, so that a reader the files are
// closed to says so instead of quietly starting where the ring does.
[[nodiscard]] Status check_readable(int dir_fd);

[[nodiscard]] Result<ArchiveInfo> describe(int dir_fd, std::string topic);
[[nodiscard]] Result<ArchiveVerifyReport> verify(int dir_fd, std::string topic);

}  // namespace shmbus::detail::archive
