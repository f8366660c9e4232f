// A compacted topic's archive, the archiver's side (docs/archive.md, "Compacted topics"): the
// table of each key's latest record (archive/key_table.h), kept as the archiver appends, and the
// compaction of closed files, on a thread of its own so that archiving never waits for it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "archive/archive.h"
#include "archive/key_table.h"
#include "shmbus/result.h"
#include "shmbus/subscriber.h"

namespace shmbus::daemon {

class Compaction {
public:
    // `archive_dir`: the topic's archive directory (not owned; it outlives this).
    Compaction(std::string topic, int archive_dir, uint32_t max_keys) noexcept
        : topic_(std::move(topic)), dir_(archive_dir), table_(max_keys) {}
    ~Compaction();  // waits for a pass in progress to finish its file
    Compaction(const Compaction&) = delete;
    Compaction& operator=(const Compaction&) = delete;

    // Reads the whole archive once: the table, and the records in each file. Removes what a
    // compaction that was killed left behind.
    [[nodiscard]] Status load();
    // A message the archiver appended to the file that begins at `file_first_id`.
    void appended(const Message& m, uint64_t file_first_id);
    // Starts a pass over the files before `current_file` (the one being written, never compacted)
    // if enough of their records are no key's latest any more and no pass runs.
    void maybe_start(uint64_t current_file, bool sync);

    // How long a tombstone is kept in the archive: a reader that saw its key's value has had this
    // long to see it deleted.
    static constexpr uint64_t kTombstoneKeepNs = 24ull * 3600 * 1'000'000'000;

private:
    void run_pass(uint64_t current_file, bool sync);
    [[nodiscard]] bool keep(const detail::archive::StoredRecord& r, uint64_t tombstones_before_ns,
                            std::vector<std::string>& dropped_tombstones);

    const std::string topic_;
    const int dir_;
    std::mutex mutex_;  // guards the table and the counts: the archiver appends while a pass reads
    detail::archive::KeyTable table_;
    std::map<uint64_t, uint64_t> records_;  // records in each file, by its first id
    uint64_t total_records_ = 0;            // their sum
    uint64_t left_dead_ = 0;                // dead_records() when the last pass ended
    // Records in the archive that are no key's latest (every key's latest record is in it).
    [[nodiscard]] uint64_t dead_records() const noexcept {
        const uint64_t latest = table_.live_keys() + table_.tombstones();
        return total_records_ > latest ? total_records_ - latest : 0;
    }
    std::thread pass_;
    std::atomic<bool> running_{false};
};

}  // namespace shmbus::daemon
