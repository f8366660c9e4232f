// Archive requests: enable or change an archive, open it for reading.
#include "handlers/handlers.h"
#include "handlers/support.h"

#include "archives/archives.h"

#include <unistd.h>

#include <algorithm>

#include "control/control.h"
#include "shmbus/names.h"

namespace shmbus::daemon {

bool RequestHandlers::on_set_archive(Conn& c, uint32_t id, const protocol::SetArchive& req) {
    const std::string name(field_name(req.topic));
    auto administered = topic_to_administer(c, name);
    if (!administered) return reply_error(c, id, administered.error());
    ArchiveSettings s;
    s.retain_bytes = req.settings.retain_bytes;
    s.retain_time = std::chrono::nanoseconds(int64_t(std::min<uint64_t>(req.settings.retain_ns, INT64_MAX)));
    s.file_bytes = req.settings.file_bytes;
    if (req.settings.fsync > uint32_t(ArchiveFsync::always))
        return reply_error(c, id, make_error(Errc::invalid_argument, "unknown fsync policy"));
    s.fsync = ArchiveFsync(req.settings.fsync);
    s.compact = req.settings.max_keys != 0;
    s.max_keys = req.settings.max_keys;
    if (auto st = archives_.enable(**administered, s); !st) return reply_error(c, id, st.error());
    return reply(c, protocol::Type::ok, id, nullptr, 0);
}

bool RequestHandlers::on_open_archive(Conn& c, uint32_t id, const protocol::TopicName& req) {
    const std::string name(field_name(req.topic));
    if (auto st = validate_topic_name(name); !st) return reply_error(c, id, st.error());
    if (auto e = refused_unless(c, name, Operation::subscribe, false)) return reply_error(c, id, *e);
    if (registry_.find(name) == nullptr) return reply_error(c, id, make_error(Errc::topic_not_found, "no topic named '" + name + "'"));
    auto settings = archives_.settings(name);
    auto fd = archives_.open_dir(name);
    if (!fd || !settings) return reply_error(c, id, fd ? make_error(Errc::invalid_argument, "topic '" + name + "' is not archived") : fd.error());
    protocol::ArchiveOk ok{};
    ok.settings = {settings->retain_bytes, uint64_t(settings->retain_time.count()), settings->file_bytes,
                   uint32_t(settings->fsync), settings->compact ? kept_keys(*settings) : 0};
    detail::PassedFds fds;
    fds.segment = *fd;
    const bool sent = reply(c, protocol::Type::archive_ok, id, &ok, sizeof ok, fds);
    ::close(*fd);
    return sent;
}

}  // namespace shmbus::daemon
