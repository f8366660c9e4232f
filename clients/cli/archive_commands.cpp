#include "cli/archive.h"

#include <cstdio>
#include <iostream>

#include "cli/common.h"

#include <memory>

#include "cli/command.h"

namespace cli {

namespace {

std::string time_or_dash(const std::optional<uint64_t>& ns) { return ns ? shmbus::rfc3339_utc(*ns) : "-"; }
std::string id_or_dash(const std::optional<uint64_t>& id) { return id ? std::to_string(*id) : "-"; }

nlohmann::json optional_json(const std::optional<uint64_t>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

nlohmann::json range_json(const std::optional<uint64_t>& first_id, const std::optional<uint64_t>& last_id,
                          const std::optional<uint64_t>& first_ns, const std::optional<uint64_t>& last_ns) {
    return {{"first_id", optional_json(first_id)},
            {"last_id", optional_json(last_id)},
            {"first_time_ns", optional_json(first_ns)},
            {"last_time_ns", optional_json(last_ns)},
            {"first_time", first_ns ? nlohmann::json(shmbus::rfc3339_utc(*first_ns)) : nlohmann::json(nullptr)},
            {"last_time", last_ns ? nlohmann::json(shmbus::rfc3339_utc(*last_ns)) : nlohmann::json(nullptr)}};
}

}  // namespace

int archive_info(shmbus::Client& client, const std::string& topic, bool json) {
    auto info = client.archive_info(topic);
    if (!info) return fail(info.error());
    const shmbus::ArchiveSettings& s = info->settings;
    if (json) {
        nlohmann::json j = range_json(info->first_id, info->last_id, info->first_time_ns, info->last_time_ns);
        j["topic"] = topic;
        j["bytes"] = info->bytes;
        j["records"] = info->records;
        j["settings"] = {{"retain_bytes", s.retain_bytes},
                         {"retain_ns", s.retain_time.count()},
                         {"fsync", shmbus::to_string(s.fsync)},
                         {"file_bytes", s.file_bytes},
                         {"compact", s.compact},
                         {"max_keys", s.compact ? nlohmann::json(shmbus::kept_keys(s)) : nlohmann::json(nullptr)}};
        nlohmann::json files = nlohmann::json::array();
        for (const auto& f : info->files) {
            nlohmann::json fj = range_json(f.first_id, f.last_id, f.first_time_ns, f.last_time_ns);
            fj["name"] = f.name;
            fj["bytes"] = f.bytes;
            fj["records"] = f.records;
            files.push_back(std::move(fj));
        }
        j["files"] = std::move(files);
        std::cout << json_line(j) << "\n";
        return 0;
    }
    std::printf("archive of '%s': %zu file(s), %llu bytes, %llu records\n", topic.c_str(), info->files.size(),
                (unsigned long long)info->bytes, (unsigned long long)info->records);
    std::printf("  ids %s .. %s, times %s .. %s\n", id_or_dash(info->first_id).c_str(), id_or_dash(info->last_id).c_str(),
                time_or_dash(info->first_time_ns).c_str(), time_or_dash(info->last_time_ns).c_str());
    std::printf("  retain %s, retain-time %s, fsync %s, file size %llu B\n",
                s.retain_bytes == 0 ? "unlimited" : (std::to_string(s.retain_bytes) + " B").c_str(),
                duration_text(s.retain_time, "unlimited").c_str(), shmbus::to_string(s.fsync), (unsigned long long)s.file_bytes);
    if (s.compact) std::printf("  compacted: the latest message of each key, at most %u keys\n", shmbus::kept_keys(s));
    if (!info->files.empty()) std::printf("  %-24s %12s %10s %20s %20s\n", "FILE", "BYTES", "RECORDS", "FIRST ID", "LAST ID");
    for (const auto& f : info->files)
        std::printf("  %-24s %12llu %10llu %20s %20s\n", f.name.c_str(), (unsigned long long)f.bytes, (unsigned long long)f.records,
                    id_or_dash(f.first_id).c_str(), id_or_dash(f.last_id).c_str());
    return 0;
}

int archive_verify(shmbus::Client& client, const std::string& topic) {
    auto report = client.verify_archive(topic);
    if (!report) return fail(report.error());
    std::printf("archive of '%s': %llu file(s), %llu records, %llu bytes checked\n", topic.c_str(),
                (unsigned long long)report->files, (unsigned long long)report->records, (unsigned long long)report->bytes);
    if (report->partial_tail_bytes != 0)
        std::printf("  the newest file ends in %llu bytes of a record being written (not damage)\n",
                    (unsigned long long)report->partial_tail_bytes);
    for (const auto& d : report->damage) std::printf("  damaged: %s\n", d.c_str());
    if (!report->ok()) {
        std::fprintf(stderr, "shmbus: archive of '%s' is damaged (%zu problem(s))\n", topic.c_str(), report->damage.size());
        return kExitError;
    }
    std::printf("  ok: every checksum matches, ids in order\n");
    return 0;
}

void add_archive_commands(CLI::App& app, Commands& out) {
    struct Args {
        std::string topic;
        bool json = false;
    };
    auto a = std::make_shared<Args>();
    auto topic_only = [a] { return check_topic_name(a->topic); };
    auto* archive_cmd = app.add_subcommand("archive", "archived topics: their files on disk");
    archive_cmd->require_subcommand(1);
    auto* info = archive_cmd->add_subcommand("info", "files, bytes, first and last id and time");
    info->add_option("TOPIC", a->topic, "topic")->required();
    info->add_flag("--json", a->json, "JSON output");
    out.push_back({info, topic_only, [a](shmbus::Client& c) { return archive_info(c, a->topic, a->json); }, {}});
    auto* verify = archive_cmd->add_subcommand("verify", "check every record's checksum (exit status 1 if damaged)");
    verify->add_option("TOPIC", a->topic, "topic")->required();
    out.push_back({verify, topic_only, [a](shmbus::Client& c) { return archive_verify(c, a->topic); }, {}});
}

}  // namespace cli
