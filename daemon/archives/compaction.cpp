#include "archives/compaction.h"

#include <spdlog/spdlog.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <vector>

#include "core/wall_clock.h"
#include "record/record_view.h"

namespace shmbus::daemon {

using detail::archive::LogFile;
using detail::archive::StoredRecord;

namespace {

// Temporary files a compaction killed midway left (`<name>.compacting`).
void remove_leftovers(int dir_fd) {
    const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    DIR* dir = ::fdopendir(fd);
    if (dir == nullptr) {
        ::close(fd);
        return;
    }
    std::vector<std::string> leftovers;
    while (const dirent* e = ::readdir(dir)) {
        const std::string_view name(e->d_name);
        if (name.ends_with(".compacting")) leftovers.emplace_back(name);
    }
    ::closedir(dir);
    for (const std::string& name : leftovers) (void)::unlinkat(dir_fd, name.c_str(), 0);
}

}  // namespace

Compaction::~Compaction() {
    if (pass_.joinable()) pass_.join();
}

Status Compaction::load() {
    remove_leftovers(dir_);
    const int fd = ::fcntl(dir_, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return make_error(Errc::io_error, "cannot duplicate the archive directory's descriptor");
    auto reader = detail::archive::Reader::open(fd, topic_);
    if (!reader) return reader.error();
    if (Status s = reader->seek_id(0); !s) return s;
    auto files = detail::archive::list_logs(dir_);
    if (!files) return files.error();
    std::vector<uint64_t> firsts;
    for (const LogFile& f : *files) firsts.push_back(f.first_id);
    std::lock_guard lock(mutex_);
    StoredRecord r;
    detail::archive::Reader::Step step;
    while ((step = reader->next(r)) == detail::archive::Reader::Step::record) {
        const detail::RecordKey k = detail::record_key(r.body, r.flags);
        if (!k.key.empty()) table_.apply(r.id, k.key, k.tombstone, r.timestamp_ns);
        // The file it lies in: the last whose first id is at or below it.
        const auto at = std::upper_bound(firsts.begin(), firsts.end(), r.id);
        if (at != firsts.begin()) ++records_[*(at - 1)];
        ++total_records_;
    }
    // Damage in the newest file (the reader steps over damage elsewhere): what it hides is in no
    // one's reach, and archiving must go on, so the table is what could be read.
    if (step == detail::archive::Reader::Step::broken)
        spdlog::warn("archiver of '{}': the table of keys stops at damage in the archive: {}", topic_, reader->why());
    spdlog::info("archiver of '{}': compacted archive holds {} live key(s), {} tombstone(s)", topic_, table_.live_keys(),
                 table_.tombstones());
    return ok_status();
}

void Compaction::appended(const Message& m, uint64_t file_first_id) {
    std::lock_guard lock(mutex_);
    if (!m.key.empty()) table_.apply(m.id, m.key, m.payload.empty(), m.timestamp_ns);
    ++records_[file_first_id];
    ++total_records_;
}

void Compaction::maybe_start(uint64_t current_file, bool sync) {
    if (running_.load(std::memory_order_acquire)) return;  // SYNC: pairs with the release at the end of run_pass
    if (pass_.joinable()) pass_.join();
    {
        std::lock_guard lock(mutex_);
        // Worth a pass when the records that are no key's latest (superseded, deleted, evicted or
        // keyless) have grown, since what the last pass left, by a quarter of the live keys (at
        // least 1024): the archive then stays within about twice its live size plus the file
        // being written. At start nothing was left by a pass: what a restart found dead counts.
        if (dead_records() < left_dead_ + std::max<uint64_t>(1024, table_.live_keys() / 4)) return;
        if (records_.empty() || records_.begin()->first >= current_file) return;
    }
    running_.store(true, std::memory_order_relaxed);  // relaxed: only this thread starts passes
    pass_ = std::thread([this, current_file, sync] { run_pass(current_file, sync); });
}

bool Compaction::keep(const StoredRecord& r, uint64_t tombstones_before_ns, std::vector<std::string>& dropped_tombstones) {
    const detail::RecordKey k = detail::record_key(r.body, r.flags);
    if (k.key.empty()) return false;  // belongs to no key
    std::lock_guard lock(mutex_);
    if (!table_.is_latest(r.id, k.key)) return false;
    if (k.tombstone && table_.stale_tombstone(k.key, tombstones_before_ns)) {
        dropped_tombstones.emplace_back(k.key);
        return false;
    }
    return true;
}

void Compaction::run_pass(uint64_t current_file, bool sync) {
    uint64_t dropped = 0, before = 0, after = 0;
    uint32_t compacted = 0;
    try {
        // Live records per closed file: the ones worth rewriting hold more dead than live.
        std::map<uint64_t, uint64_t> live;
        std::map<uint64_t, uint64_t> records;
        {
            std::lock_guard lock(mutex_);
            records = records_;
            table_.for_each_latest([&](uint64_t id) {
                auto at = records.upper_bound(id);
                if (at != records.begin()) ++live[std::prev(at)->first];
            });
        }
        const uint64_t now = detail::WallClock::system_ns();
        const uint64_t tombstones_before = now > kTombstoneKeepNs ? now - kTombstoneKeepNs : 0;
        for (const auto& [first, count] : records) {
            if (first >= current_file) break;
            if (count < 2 * live[first] || count == live[first]) continue;
            std::vector<std::string> dropped_tombstones;
            const LogFile file{first, detail::archive::log_name(first)};
            auto done = detail::archive::compact_file(
                dir_, topic_, file, [&](const StoredRecord& r) { return keep(r, tombstones_before, dropped_tombstones); }, sync);
            if (!done) {
                if (done.error().code != Errc::topic_not_found)
                    spdlog::warn("archiver of '{}': compaction: {}", topic_, done.error().message);
                continue;
            }
            std::lock_guard lock(mutex_);
            for (const std::string& key : dropped_tombstones) table_.forget(key);
            total_records_ -= done->dropped;
            if (done->removed) records_.erase(first);
            else records_[first] = done->kept;
            dropped += done->dropped;
            before += done->bytes_before;
            after += done->bytes_after;
            ++compacted;
        }
    } catch (const std::exception& e) {  // out of memory: the next pass tries again
        spdlog::warn("archiver of '{}': compaction: {}", topic_, e.what());
    }
    {
        std::lock_guard lock(mutex_);
        left_dead_ = dead_records();
    }
    if (compacted != 0)
        spdlog::info("archiver of '{}': compacted {} file(s): {} superseded record(s) dropped, {} B -> {} B", topic_, compacted,
                     dropped, before, after);
    running_.store(false, std::memory_order_release);  // SYNC: pairs with the acquire in maybe_start
}

}  // namespace shmbus::daemon
