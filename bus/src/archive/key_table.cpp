#include "archive/key_table.h"

namespace shmbus::detail::archive {

void KeyTable::apply(uint64_t id, std::string_view key, bool tombstone, uint64_t timestamp_ns) {
    auto it = keys_.find(key);
    const bool added = it == keys_.end();
    if (added) it = keys_.emplace(std::string(key), Entry{}).first;
    Entry& e = it->second;
    if (!added) {
        ++superseded_;
        if (!e.tombstone) live_by_id_.erase(e.id);
    }
    e = Entry{id, timestamp_ns, tombstone};
    if (!tombstone) live_by_id_.emplace(id, std::string_view(it->first));
    if (live_by_id_.size() <= max_keys_) return;
    // One key too many: the one updated longest ago goes, and with it its record.
    const auto oldest = live_by_id_.begin();
    keys_.erase(keys_.find(oldest->second));
    live_by_id_.erase(oldest);
    ++evicted_;
    ++superseded_;
}

bool KeyTable::is_latest(uint64_t id, std::string_view key) const noexcept {
    const auto it = keys_.find(key);
    return it != keys_.end() && it->second.id == id;
}

bool KeyTable::stale_tombstone(std::string_view key, uint64_t before_ns) const noexcept {
    const auto it = keys_.find(key);
    return it != keys_.end() && it->second.tombstone && it->second.timestamp_ns < before_ns;
}

void KeyTable::forget(std::string_view key) noexcept {
    const auto it = keys_.find(key);
    if (it != keys_.end() && it->second.tombstone) keys_.erase(it);
}

std::vector<uint64_t> KeyTable::live_ids() const {
    std::vector<uint64_t> ids;
    ids.reserve(live_by_id_.size());
    for (const auto& [id, key] : live_by_id_) ids.push_back(id);
    return ids;
}

}  // namespace shmbus::detail::archive
