#include "archives/state_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include "core/errno_error.h"
#include "core/untrusted_files.h"
#include "shmbus/layout/archive_file.h"
#include "shmbus/layout/record.h"
#include "toml_values.h"
#include "topic_settings_toml.h"

namespace shmbus::daemon {

using detail::errno_error;

// The temporary file is opened without following a link (one planted there must not redirect the
// write) and must be a regular file of ours before it is truncated.
Status write_atomically(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    auto opened = detail::open_checked_at(AT_FDCWD, tmp, O_WRONLY | O_CREAT, 0600, true);
    if (!opened) return make_error(opened.error().code, "cannot write " + tmp + ": " + opened.error().message);
    const int fd = *opened;
    if (::ftruncate(fd, 0) != 0) {
        const Error e = errno_error(Errc::io_error, "cannot truncate " + tmp);
        ::close(fd);
        return e;
    }
    const bool ok = ::write(fd, text.data(), text.size()) == ssize_t(text.size()) && ::fdatasync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        errno = ok ? errno : err;
        return errno_error(errno == ENOSPC ? Errc::no_space : Errc::io_error, "cannot write " + path);
    }
    return ok_status();
}

// Whoever could write the directory could have put anything there: hence the checks.
std::optional<toml::table> read_toml(const std::string& path, std::string& why) {
    auto text = detail::read_bounded_file(AT_FDCWD, path, detail::kMaxTomlBytes, true);
    if (!text) {
        why = text.error().message;
        return std::nullopt;
    }
    if (auto shape = detail::toml_shape_error(*text)) {
        why = *shape;
        return std::nullopt;
    }
    try {
        return toml::parse(*text, path);
    } catch (const toml::parse_error& e) {
        why = std::string(e.description());
        return std::nullopt;
    }
}

uint64_t toml_u64(const toml::table& t, std::string_view key, uint64_t fallback) {
    if (auto v = t[key].value<int64_t>(); v && *v >= 0) return uint64_t(*v);
    return fallback;
}

namespace {

// topic.toml as shmbusd wrote it before the schema was shared with the configuration file: a
// [topic] table with its own key names and an [archive] table. Rewritten in the shared schema,
// so that one reader serves both.
void upgrade_old_topic_state(toml::table& doc) {
    auto* old_archive = doc["archive"].as_table();
    auto* topic = doc["topic"].as_table();
    if (old_archive == nullptr || topic == nullptr) return;
    auto rename = [&](const char* from, const char* to) {
        if (auto* n = topic->get(from)) {
            topic->insert_or_assign(to, *n);
            topic->erase(from);
        }
    };
    auto nanoseconds = [&](const char* from, const char* to) {
        const uint64_t ns = toml_u64(*topic, from);
        topic->erase(from);
        topic->insert_or_assign(to, ns == 0 ? std::string("off") : std::to_string(ns) + "ns");
    };
    if (auto b = (*topic)["bus_dir"].value<std::string>()) doc.insert_or_assign("bus_dir", *b);
    topic->erase("bus_dir");
    rename("max_producers", "max_publishers");
    rename("max_consumers", "max_subscribers");
    nanoseconds("unblock_timeout_ns", "unblock_timeout");
    nanoseconds("expire_detached_ns", "expire_detached");
    if ((*topic)["on_full"].value_or(std::string()) != "archive") topic->insert_or_assign("archive", true);
    if (const uint64_t r = toml_u64(*old_archive, "retain_bytes"); r != 0) topic->insert_or_assign("retain", int64_t(r));
    if (const uint64_t ns = toml_u64(*old_archive, "retain_ns"); ns != 0) topic->insert_or_assign("retain_time", std::to_string(ns) + "ns");
    if (const uint64_t f = toml_u64(*old_archive, "file_bytes"); f != 0)
        topic->insert_or_assign("archive_file_size", int64_t(std::max(f, kMinArchiveFileBytes)));
    if (auto f = (*old_archive)["fsync"].value<std::string>()) topic->insert_or_assign("fsync", *f);
    doc.erase("archive");
}

}  // namespace

std::string topic_state_text(const std::string& topic, const std::string& bus_dir, const TopicConfig& c, const ArchiveSettings& a) {
    toml::table doc{{"bus_dir", bus_dir}, {"topic", topic_settings_table(c, a)}};
    std::ostringstream text;
    text << "# shmbusd's record of archived topic '" << topic << "': made again from this after a reboot.\n"
         << "# [topic] has the keys of a [topics.NAME] table of the configuration file.\n"
         << doc << "\n";
    return text.str();
}

Result<TopicState> read_topic_state(const std::string& path) {
    std::string why;
    auto doc = read_toml(path, why);
    if (!doc) return make_error(Errc::io_error, "cannot read " + path + ": " + why);
    upgrade_old_topic_state(*doc);
    const auto* t = (*doc)["topic"].as_table();
    if (t == nullptr) return make_error(Errc::invalid_argument, path + " has no [topic] table");
    TopicState out;
    out.bus_dir = (*doc)["bus_dir"].value_or(std::string());
    std::optional<ArchiveSettings> archive;
    try {
        out.config = parse_topic_settings(path, *t, TopicConfig{}, "[topic]", &archive);
    } catch (const ConfigError& e) {
        return make_error(Errc::invalid_argument, e.message);
    }
    if (!archive) return make_error(Errc::invalid_argument, path + " does not say the topic is archived");
    out.archive = *archive;
    return out;
}

Result<ArchiveSettings> load_archive_settings(const std::string& path) {
    auto state = read_topic_state(path);
    if (!state) return state.error();
    return state->archive;
}

uint32_t load_archive_max_record(const std::string& path) {
    auto state = read_topic_state(path);
    const uint64_t max_message = state ? state->config.max_message : 0;
    if (max_message == 0) return layout::kMaxArchiveRecord;
    const uint64_t longest = max_message + sizeof(layout::RetryInfo) + layout::kMaxProducerStamp;
    return uint32_t(std::min<uint64_t>(longest, layout::kMaxArchiveRecord));
}

}  // namespace shmbus::daemon
