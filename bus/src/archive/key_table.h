// The latest record of each key of a compacted topic (docs/archive.md, "Compacted topics"), as
// records are applied in id order. The archiver keeps one to know what compaction may drop; a
// subscriber starting from the latest message per key builds one over the archive to know what to
// deliver. Both apply the same rule to the same sequence, so they agree on which keys are kept:
//   - a record with a key makes it that key's latest (an empty payload: a tombstone, the key deleted);
//   - past max_keys live keys, the key whose latest record is the oldest is dropped (evicted);
//   - a record without a key belongs to no key.
// Compaction keeps exactly the records that are some key's latest, so applying the compacted
// sequence gives the table that applying the original one gave.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace shmbus::detail::archive {

class KeyTable {
public:
    explicit KeyTable(uint32_t max_keys) noexcept : max_keys_(max_keys == 0 ? 1 : max_keys) {}

    // Applies the record `id` (ids must rise) of `key`; throws std::bad_alloc only.
    void apply(uint64_t id, std::string_view key, bool tombstone, uint64_t timestamp_ns);
    // Whether record `id` of `key` is its key's latest (a tombstone included).
    [[nodiscard]] bool is_latest(uint64_t id, std::string_view key) const noexcept;
    // Whether the key's latest record is a tombstone older than `before_ns` (compaction drops it:
    // a reader that saw the key's earlier value has had that long to see it deleted).
    [[nodiscard]] bool stale_tombstone(std::string_view key, uint64_t before_ns) const noexcept;
    // Forgets a tombstone compaction dropped; the key is then as if never seen.
    void forget(std::string_view key) noexcept;
    // The latest record of each live key, by id (oldest first).
    [[nodiscard]] std::vector<uint64_t> live_ids() const;
    // Every key's latest record id, tombstones included, in no order.
    template <class F>
    void for_each_latest(F&& f) const {
        for (const auto& [key, e] : keys_) f(e.id);
    }

    [[nodiscard]] std::size_t live_keys() const noexcept { return live_by_id_.size(); }
    [[nodiscard]] std::size_t tombstones() const noexcept { return keys_.size() - live_by_id_.size(); }
    [[nodiscard]] uint64_t evicted() const noexcept { return evicted_; }
    // Records no longer any key's latest since the table began (superseded, deleted or evicted).
    [[nodiscard]] uint64_t superseded() const noexcept { return superseded_; }

private:
    struct Entry {
        uint64_t id = 0;
        uint64_t timestamp_ns = 0;
        bool tombstone = false;
    };
    // Looked up by string_view, without making a string per record.
    struct KeyHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view k) const noexcept { return std::hash<std::string_view>{}(k); }
    };
    uint32_t max_keys_;
    std::unordered_map<std::string, Entry, KeyHash, std::equal_to<>> keys_;
    std::map<uint64_t, std::string_view> live_by_id_;  // the eviction order; views of keys_'s keys (nodes never move)
    uint64_t evicted_ = 0;
    uint64_t superseded_ = 0;
};

}  // namespace shmbus::detail::archive
