#include "topic_settings_toml.h"

#include "shmbus/names.h"
#include "toml_values.h"

namespace shmbus::daemon {

TopicConfig parse_topic_settings(const std::string& source, const toml::table& t, TopicConfig base, const std::string& where,
                                 std::optional<ArchiveSettings>* archive) {
    ArchiveSettings a;
    bool archived = false, archive_refused = false, archive_keys = false, max_keys_given = false;
    for (auto&& [k, v] : t) {
        const std::string key(k.str());
        const bool archive_key = key == "archive" || key == "retain" || key == "retain_time" || key == "fsync" ||
                                 key == "archive_file_size" || key == "compact" || key == "max_keys";
        if (archive_key && archive == nullptr)
            fail(source, v.source(), "'" + key + "' belongs in a [topics.NAME] table, not in " + where);
        if (key == "archive") {
            const auto* b = v.as_boolean();
            if (b == nullptr) fail(source, v.source(), "'archive' must be true or false");
            archived = b->get();
            archive_refused = !archived;
        } else if (key == "retain") {
            a.retain_bytes = size_value(source, v, key);
            archive_keys = true;
        } else if (key == "retain_time") {
            a.retain_time = duration_value(source, v, key);
            archive_keys = true;
        } else if (key == "fsync") {
            if (!parse_fsync(string_value(source, v, key), a.fsync)) fail(source, v.source(), "'fsync' must be never, interval or always");
            archive_keys = true;
        } else if (key == "archive_file_size") {
            a.file_bytes = size_value(source, v, key);
            if (a.file_bytes < kMinArchiveFileBytes) fail(source, v.source(), "'archive_file_size' must be at least 4K");
            archive_keys = true;
        } else if (key == "compact") {
            const auto* b = v.as_boolean();
            if (b == nullptr) fail(source, v.source(), "'compact' must be true or false");
            a.compact = b->get();
        } else if (key == "max_keys") {
            const auto* i = v.as_integer();
            if (i == nullptr || i->get() <= 0 || i->get() > int64_t(UINT32_MAX))
                fail(source, v.source(), "'max_keys' must be a positive whole number");
            a.max_keys = uint32_t(i->get());
            max_keys_given = true;
        } else if (key == "capacity") {
            base.capacity = size_value(source, v, key);
        } else if (key == "max_message") {
            const uint64_t m = size_value(source, v, key);
            if (m > UINT32_MAX) fail(source, v.source(), "'max_message' is too large");
            base.max_message = uint32_t(m);
        } else if (key == "on_full") {
            const std::string& text = string_value(source, v, key);
            if (text == "block") base.on_full = OnFull::block;
            else if (text == "fail") base.on_full = OnFull::fail;
            else if (text == "overwrite") base.on_full = OnFull::overwrite;
            else if (text == "archive") base.on_full = OnFull::archive;
            else fail(source, v.source(), "'on_full' must be block, fail, overwrite or archive");
        } else if (key == "unblock_timeout") {
            base.unblock_timeout = duration_value(source, v, key);
        } else if (key == "expire_detached") {
            base.expire_detached = duration_value(source, v, key);
        } else if (key == "single_producer") {
            const auto* b = v.as_boolean();
            if (b == nullptr) fail(source, v.source(), "'single_producer' must be true or false");
            base.single_producer = b->get();
        } else if (key == "timestamps") {
            const auto* b = v.as_boolean();
            if (b == nullptr) fail(source, v.source(), "'timestamps' must be true or false");
            base.timestamps = b->get();
        } else if (key == "ttl") {
            base.ttl = duration_value(source, v, key);
        } else if (key == "max_publishers" || key == "max_subscribers") {
            const auto* i = v.as_integer();
            if (i == nullptr || i->get() <= 0 || i->get() > int64_t(UINT32_MAX)) fail(source, v.source(), "'" + key + "' must be a positive whole number");
            (key == "max_publishers" ? base.max_producers : base.max_consumers) = uint32_t(i->get());
        } else {
            fail(source, v.source(), "unknown key '" + key + "' in " + where +
                                         " (known: capacity, max_message, on_full, unblock_timeout, expire_detached, "
                                         "max_publishers, max_subscribers, single_producer, timestamps, ttl, archive, retain, retain_time, fsync, "
                                         "archive_file_size, compact, max_keys)");
        }
    }
    if (auto st = validate_config(with_defaults(base)); !st) fail(source, t.source(), where + ": " + st.error().message);
    // A compacted topic is archived: its archive keeps the latest message of each key.
    if (a.compact && archive_refused) fail(source, t.source(), where + ": compact = true needs the archive (archive = false)");
    archived = archived || a.compact;
    if (archived && !base.timestamps)
        fail(source, t.source(), where + ": an archive is searched by time, so a topic with timestamps = false cannot be archived");
    if (archive_keys && !archived && base.on_full != OnFull::archive)
        fail(source, t.source(), where + ": retain, retain_time, fsync and archive_file_size need archive = true");
    if (max_keys_given && !a.compact) fail(source, t.source(), where + ": max_keys needs compact = true");
    if (retention_on_compacted(a))
        fail(source, t.source(), where + ": a compacted topic keeps every live key: retain and retain_time do not apply to it");
    if (archive != nullptr && (archived || base.on_full == OnFull::archive)) *archive = a;
    return base;
}

namespace {

// A duration as the schema writes it: exact, in nanoseconds ("off" for none).
std::string duration_text(std::chrono::nanoseconds d) { return d.count() == 0 ? "off" : std::to_string(d.count()) + "ns"; }

}  // namespace

toml::table topic_settings_table(const TopicConfig& c, const std::optional<ArchiveSettings>& archive) {
    toml::table t{{"capacity", int64_t(c.capacity)},
                  {"max_message", int64_t(c.max_message)},
                  {"on_full", std::string(to_string(c.on_full))},
                  {"max_publishers", int64_t(c.max_producers)},
                  {"max_subscribers", int64_t(c.max_consumers)},
                  {"unblock_timeout", duration_text(c.unblock_timeout)},
                  {"expire_detached", duration_text(c.expire_detached)},
                  {"single_producer", c.single_producer},
                  {"timestamps", c.timestamps},
                  {"ttl", duration_text(c.ttl)}};
    if (archive) {
        if (c.on_full != OnFull::archive) t.insert("archive", true);
        if (archive->retain_bytes != 0) t.insert("retain", int64_t(archive->retain_bytes));  // 0: no limit by size
        t.insert("retain_time", duration_text(archive->retain_time));
        t.insert("fsync", std::string(to_string(archive->fsync)));
        t.insert("archive_file_size", int64_t(archive->file_bytes));
        if (archive->compact) {
            t.insert("compact", true);
            t.insert("max_keys", int64_t(kept_keys(*archive)));
        }
    }
    return t;
}

}  // namespace shmbus::daemon
