// The archive's reading side: replay in id order across files, and the scans behind `archive info`
// and `archive verify`.
#include "archive/archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/errno_error.h"
#include "core/untrusted_files.h"

namespace shmbus::detail::archive {

using layout::ArchiveFileHeader;
using layout::ArchiveIndexEntry;
using layout::ArchiveRecordHeader;

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
    if (best == nullptr || best->id == 0) return ok_status();
    // An index may belong to another version of the log: compaction renames a new log and index
    // over the old ones, and this reader may have opened one of each. The record at the entry's
    // offset must be the entry's, else the scan starts at the beginning.
    const uint64_t start = scanner_->offset();
    scanner_->seek(best->offset, best->id - 1);
    StoredRecord r;
    const bool right = scanner_->next(r) == LogScanner::Step::record && r.id == best->id;
    if (right) scanner_->seek(best->offset, best->id - 1);
    else scanner_->seek(start, 0);
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


}  // namespace shmbus::detail::archive
