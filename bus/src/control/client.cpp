#include "shmbus/client.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "archive/archive.h"
#include "publish/publisher_core.h"
#include "read/subscriber_core.h"
#include "groups/outlets.h"
#include "core/futex.h"
#include "core/gc.h"
#include "control/stats.h"
#include "shmbus/names.h"

namespace shmbus {

using detail::ControlChannel;
using detail::copy_name;
using ControlReply = detail::Reply;
using detail::Segment;

std::string default_bus_dir() {
    if (const char* d = std::getenv("SHMBUS_DIR"); d != nullptr && *d != '\0') return d;
    if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && *x != '\0') return std::string(x) + "/shmbus";
    if (geteuid() == 0) return "/run/shmbus";
    return "/tmp/shmbus-" + std::to_string(geteuid());
}

namespace {

protocol::WireConfig to_wire(const TopicConfig& c) {
    const TopicConfig d = with_defaults(c);
    return {d.capacity,
            d.max_message,
            uint32_t(d.on_full),
            d.max_producers,
            d.max_consumers,
            uint64_t(std::max<int64_t>(0, d.unblock_timeout.count())),
            uint64_t(std::max<int64_t>(0, d.expire_detached.count())),
            uint64_t(std::max<int64_t>(0, d.ttl.count()))};
}

// A configuration nobody touched lets shmbusd apply the bus's configured defaults; what WireConfig
// has no field for travels as a flag.
uint32_t default_config_flag(const TopicConfig& c) {
    return (c == TopicConfig{} ? uint32_t(protocol::kDefaultConfig) : 0u) | (c.single_producer ? uint32_t(protocol::kSingleProducer) : 0u) |
           (c.timestamps ? 0u : uint32_t(protocol::kUntimed));
}

template <class T>
Result<T> body_as(const ControlReply& r, protocol::Type expected) {
    if (r.type != expected || r.body.size() < sizeof(T))
        return make_error(Errc::protocol_error, "unexpected reply from shmbusd");
    T t{};
    std::memcpy(&t, r.body.data(), sizeof t);
    return t;
}

// Maps the segment and cursor object a reply carries, with the access their descriptors give,
// and closes the descriptors: the mappings keep the memory alive.
Result<Segment> map_reply_segment(ControlReply& r, Segment::Populate populate) {
    if (r.fds.segment < 0) return make_error(Errc::protocol_error, "shmbusd sent no segment descriptor");
    auto seg = Segment::attach(r.fds.segment, r.fds.cursors, populate, r.fds.companion_fds());
    r.fds.close_all();
    return seg;
}

struct ReplyFdGuard {
    ControlReply& r;
    ~ReplyFdGuard() { r.fds.close_all(); }
};

// The archive directory of `topic` (a descriptor the caller closes) and its settings.
Result<std::pair<int, ArchiveSettings>> open_archive(detail::ControlChannel& channel, std::string_view topic) noexcept {
    protocol::TopicName req{};
    copy_name(req.topic, topic);
    auto reply = channel.request(protocol::Type::open_archive, &req, sizeof req);
    if (!reply) return reply.error();
    ReplyFdGuard guard{reply.value()};
    auto ok = body_as<protocol::ArchiveOk>(*reply, protocol::Type::archive_ok);
    if (!ok) return ok.error();
    if (reply->fds.segment < 0) return make_error(Errc::protocol_error, "shmbusd sent no archive directory");
    ArchiveSettings s;
    s.retain_bytes = ok->settings.retain_bytes;
    s.retain_time = std::chrono::nanoseconds(int64_t(std::min<uint64_t>(ok->settings.retain_ns, INT64_MAX)));
    s.file_bytes = ok->settings.file_bytes;
    s.fsync = ok->settings.fsync <= uint32_t(ArchiveFsync::always) ? ArchiveFsync(ok->settings.fsync) : ArchiveFsync::never;
    s.compact = ok->settings.max_keys != 0;
    s.max_keys = ok->settings.max_keys;
    return std::pair{std::exchange(reply->fds.segment, -1), s};
}

// Runs `read` over the archive directory of `topic` and closes it.
template <class T, class Read>
Result<T> read_archive_dir(ControlChannel& channel, std::string_view topic, Read read) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    auto archive = open_archive(channel, topic);
    if (!archive) return archive.error();
    Result<T> out = make_error(Errc::io_error, "out of memory");
    try {
        out = read(archive->first, archive->second);
    } catch (...) {  // std::bad_alloc: the library never throws across its API
    }
    ::close(archive->first);
    return out;
}

}  // namespace


Result<Client> Client::connect(ClientOptions options) noexcept {
    const char* env_dir = std::getenv("SHMBUS_DIR");
    const bool named_dir = !options.dir.empty() || (env_dir != nullptr && *env_dir != '\0');
    if (options.dir.empty()) options.dir = default_bus_dir();
    auto ch = ControlChannel::connect(options.dir, options.name, options.timeout, options.connect_wait,
                                      options.reconnect_in_background, named_dir);
    if (!ch) return ch.error();
    return Client(std::move(ch.value()));
}

const std::string& Client::dir() const noexcept { return channel_->dir(); }
uint64_t Client::reconnects() const noexcept { return channel_->reconnects(); }
uint64_t Client::bus_id() const noexcept { return channel_->bus_id(); }

Result<std::vector<RemovedItem>> Client::collect_garbage() noexcept {
    auto reply = channel_->request(protocol::Type::gc, nullptr, 0);
    if (!reply) return reply.error();
    auto head = body_as<protocol::GcReport>(*reply, protocol::Type::gc_report);
    if (!head) return head.error();
    if (head->count > protocol::kGcEntriesPerReply ||
        reply->body.size() != sizeof(protocol::GcReport) + head->count * sizeof(protocol::GcEntry))
        return make_error(Errc::protocol_error, "malformed gc report from shmbusd");
    std::vector<RemovedItem> out;
    for (uint32_t i = 0; i < head->count; ++i) {
        protocol::GcEntry e{};
        std::memcpy(&e, reply->body.data() + sizeof(protocol::GcReport) + i * sizeof e, sizeof e);
        out.push_back({std::string(detail::field_name(e.what)), std::string(detail::field_name(e.why))});
    }
    if (head->total > head->count)
        out.push_back({"(" + std::to_string(head->total - head->count) + " more)", "see the shmbusd log"});
    return out;
}

Result<std::vector<RemovedItem>> collect_garbage_without_daemon() noexcept {
    try {
        return detail::collect_stale(0, 60);  // 0: no bus of ours is exempt; live buses keep theirs anyway
    } catch (const std::exception& e) {
        return make_error(Errc::io_error, std::string("gc: ") + e.what());
    }
}

namespace {

// A registration token: unique per request in practice (splitmix64 of a counter, the pid and
// the clock), never 0.
uint64_t new_token() noexcept {
    static std::atomic<uint64_t> counter{0};
    uint64_t z = counter.fetch_add(1, std::memory_order_relaxed) + (uint64_t(getpid()) << 40) + detail::monotonic_ns();
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z == 0 ? 1 : z;
}

// Sends a request whose reply carries a segment fd; maps the segment and returns it with the body.
// If the connection broke after the request left, it is sent again (up to 3 times): it carries a token, so
// shmbusd answers a repeat with the slot the first one registered (protocol.h).
template <class Ok, class Req>
Result<std::pair<Ok, Segment>> request_segment(ControlChannel& channel, protocol::Type type, const Req& req,
                                               protocol::Type expected, Segment::Populate populate = Segment::Populate::yes) {
    const auto extra = detail::creation_allowance(req.config.capacity);
    auto reply = channel.request(type, &req, sizeof req, extra);
    for (int again = 0; again < 3 && !reply && reply.error().code == Errc::disconnected; ++again)
        reply = channel.request(type, &req, sizeof req, extra);
    if (!reply) return reply.error();
    ReplyFdGuard guard{reply.value()};
    auto ok = body_as<Ok>(*reply, expected);
    if (!ok) return ok.error();
    auto seg = map_reply_segment(*reply, populate);
    if (!seg) return seg.error();
    return std::pair<Ok, Segment>(ok.value(), std::move(seg.value()));
}

}  // namespace

// Where a member's dead letters go: the topic `<topic>.dlq`, opened on the first one. A letter
// that cannot be published now (the topic is full) is tried again later by the member.
std::function<Publisher*()> Client::publisher_on_demand(const std::shared_ptr<ControlChannel>& channel, std::string topic,
                                                        TopicConfig create) {
    auto publisher = std::make_shared<std::optional<Publisher>>();
    return [channel, publisher, topic = std::move(topic), create]() -> Publisher* {
        if (!*publisher) {
            PublisherOptions options;
            options.create_config = create;
            auto p = open_publisher(channel, topic, options);
            if (!p) return nullptr;
            publisher->emplace(std::move(p.value()));
        }
        return &**publisher;
    };
}

Result<Publisher> Client::publisher(std::string_view topic, PublisherOptions options) noexcept {
    return open_publisher(channel_, topic, options);
}

Result<Publisher> Client::open_publisher(const std::shared_ptr<ControlChannel>& channel_, std::string_view topic,
                                         PublisherOptions options) noexcept {
    if (auto st = validate_topic_or_inbox_name(topic); !st) return st.error();
    if (!options.producer.empty())
        if (auto st = validate_producer_name(options.producer); !st) return st.error();
    protocol::OpenTopic req{};
    copy_name(req.topic, topic);
    copy_name(req.producer, options.producer);
    req.config = to_wire(options.create_config);
    req.flags = protocol::kCreateIfMissing | protocol::kAsPublisher | default_config_flag(options.create_config);
    req.token = new_token();
    auto r = request_segment<protocol::TopicOk>(*channel_, protocol::Type::open_topic, req, protocol::Type::topic_ok);
    if (!r) return r.error();
    const uint32_t entry = r->first.sequence_entry;
    const bool named = !options.producer.empty();
    if (named && entry >= r->second.sequence_entries())
        return make_error(Errc::protocol_error, "shmbusd's reply names no producer entry in the topic's segment");
    auto core = std::unique_ptr<detail::PublisherCore>(new (std::nothrow) detail::PublisherCore(
        channel_, std::move(r->second), r->first.producer_slot, options));
    if (!core) return make_error(Errc::io_error, "out of memory");
    if (named) core->hold_name(core->seg.sequence_entry(entry));
    return Publisher(std::move(core));
}

Result<Subscriber> Client::join_group(std::string_view topic, SubscribeOptions options) noexcept {
    if (auto st = validate_subscription_name(options.group); !st) return st.error();
    if (!options.durable_name.empty())
        return make_error(Errc::invalid_argument, "a subscription is either durable or in a group, not both");
    if (options.from == StartFrom::latest_per_key)
        return make_error(Errc::invalid_argument, "a group starts within the ring: it cannot start from the latest message per key");
    protocol::JoinGroup req{};
    copy_name(req.topic, topic);
    copy_name(req.group, options.group);
    req.config = to_wire(options.create_config);
    req.from = uint32_t(options.from);
    req.from_id = options.from_id;
    req.flags = default_config_flag(options.create_config) |
                (options.group_settings != GroupSettings{} ? protocol::kGroupSettingsGiven : 0u) |
                detail::group_options_of(options.group_settings) << protocol::kGroupOptionsShift;
    req.token = new_token();
    req.settings = detail::settings_record(options.group_settings);
    auto r = request_segment<protocol::SubscribeOk>(*channel_, protocol::Type::join_group, req, protocol::Type::subscribe_ok);
    if (!r) return r.error();
    const uint32_t member = r->first.slot;
    if (member >= r->second.max_consumers()) return make_error(Errc::protocol_error, "shmbusd sent an invalid slot");
    auto core = std::unique_ptr<detail::SubscriberCore>(
        new (std::nothrow) detail::SubscriberCore(channel_, std::move(r->second), member, false, options));
    if (!core) return make_error(Errc::io_error, "out of memory");
    uint32_t group_slot = 0;
    layout::GroupBlock* block = detail::group_of_member(core->seg, member, group_slot);
    if (block == nullptr) return make_error(Errc::protocol_error, "shmbusd's reply names no group in the topic's segment");
    auto dead_letters = detail::dead_letter_outlet(
        publisher_on_demand(channel_, std::string(topic) + ".dlq", detail::dead_letter_config(core->seg.config())), std::string(topic));
    auto repark = detail::repark_outlet([own = publisher_on_demand(channel_, std::string(topic))]() -> detail::PublisherCore* {
        Publisher* p = own();
        return p != nullptr ? p->core_.get() : nullptr;
    });
    core->group.reset(new (std::nothrow) detail::GroupMember(core->seg, member, uint32_t(req.token), group_slot, *block,
                                                             std::move(dead_letters), std::move(repark)));
    if (!core->group) return make_error(Errc::io_error, "out of memory");
    core->resumed = r->first.resumed != 0;
    return Subscriber(std::move(core));
}

Result<Subscriber> Client::subscribe(std::string_view topic, SubscribeOptions options) noexcept {
    if (auto st = validate_topic_or_inbox_name(topic); !st) return st.error();
    if (!options.group.empty()) return join_group(topic, std::move(options));
    const bool durable = !options.durable_name.empty();
    if (durable && !detail::is_archiver_name(options.durable_name))
        if (auto st = validate_subscription_name(options.durable_name); !st) return st.error();
    if (options.from == StartFrom::time && options.from_time_ns == 0)
        return make_error(Errc::invalid_argument, "StartFrom::time needs from_time_ns");
    protocol::Subscribe req{};
    copy_name(req.topic, topic);
    copy_name(req.durable_name, options.durable_name);
    req.config = to_wire(options.create_config);
    // A time is found by the subscriber itself: shmbusd places it at the earliest message.
    // The latest message per key is found by the subscriber in the archive: shmbusd places it at
    // the earliest message, as for a time.
    const bool from_latest_per_key = options.from == StartFrom::latest_per_key;
    req.from = uint32_t(options.from == StartFrom::time || from_latest_per_key ? StartFrom::earliest : options.from);
    req.flags = default_config_flag(options.create_config) | (options.from == StartFrom::time ? uint32_t(protocol::kFromTime) : 0u);
    req.from_id = options.from_id;
    req.token = new_token();
    auto r = request_segment<protocol::SubscribeOk>(*channel_, protocol::Type::subscribe, req, protocol::Type::subscribe_ok);
    static detail::CrashPoint mid_subscribe("mid_subscribe");  // fault injection: attached, reply unseen
    mid_subscribe.pass();
    if (!r) return r.error();
    const protocol::SubscribeOk& ok = r->first;
    if (ok.slot >= r->second.max_consumers()) return make_error(Errc::protocol_error, "shmbusd sent an invalid slot");
    auto core = std::unique_ptr<detail::SubscriberCore>(new (std::nothrow) detail::SubscriberCore(
        channel_, std::move(r->second), ok.slot, durable, std::move(options)));
    if (!core) return make_error(Errc::io_error, "out of memory");
    // An archived topic's subscriber reads the archive where the ring no longer reaches.
    if (core->seg.archived() && !detail::is_archiver_name(core->options.durable_name)) {
        auto archive = open_archive(*channel_, topic);
        if (!archive) return make_error(archive.error().code, "cannot open the archive of '" + std::string(topic) + "': " +
                                                                  archive.error().message);
        core->archive_dir = archive->first;
        if (auto st = detail::archive::check_readable(core->archive_dir); !st)
            return make_error(st.error().code, "cannot read the archive of '" + std::string(topic) + "': " + st.error().message);
        if (archive->second.compact) core->compacted_keys = kept_keys(archive->second);
    }
    if (from_latest_per_key && core->compacted_keys == 0)
        return make_error(Errc::invalid_argument, "topic '" + std::string(topic) +
                                                      "' is not compacted (topic create --compact): it keeps no latest message per key");
    core->begin(ok.position, ok.next_id, ok.resumed != 0);
    return Subscriber(std::move(core));
}

Status Client::set_archive(std::string_view topic, const ArchiveSettings& settings) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    if (settings.file_bytes < kMinArchiveFileBytes)
        return make_error(Errc::invalid_argument, "archive files must be at least " + std::to_string(kMinArchiveFileBytes) + " bytes");
    protocol::SetArchive req{};
    copy_name(req.topic, topic);
    if (retention_on_compacted(settings)) return make_error(Errc::invalid_argument, kRetentionOnCompacted);
    req.settings = {settings.retain_bytes, uint64_t(std::max<int64_t>(0, settings.retain_time.count())), settings.file_bytes,
                    uint32_t(settings.fsync), settings.compact ? kept_keys(settings) : 0};
    auto reply = channel_->request(protocol::Type::set_archive, &req, sizeof req);
    if (!reply) return reply.error();
    return ok_status();
}

Result<ArchiveSettings> Client::archive_settings(std::string_view topic) noexcept {
    return read_archive_dir<ArchiveSettings>(*channel_, topic, [](int, const ArchiveSettings& settings) -> Result<ArchiveSettings> {
        return settings;
    });
}

Result<ArchiveInfo> Client::archive_info(std::string_view topic) noexcept {
    return read_archive_dir<ArchiveInfo>(*channel_, topic, [&](int dir, const ArchiveSettings& settings) {
        auto info = detail::archive::describe(dir, std::string(topic));
        if (info) info->settings = settings;
        return info;
    });
}

Result<ArchiveVerifyReport> Client::verify_archive(std::string_view topic) noexcept {
    return read_archive_dir<ArchiveVerifyReport>(*channel_, topic, [&](int dir, const ArchiveSettings&) {
        return detail::archive::verify(dir, std::string(topic));
    });
}

Status Client::create_topic(std::string_view topic, const TopicConfig& config) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    if (auto st = validate_config(with_defaults(config)); !st) return st.error();
    protocol::OpenTopic req{};
    copy_name(req.topic, topic);
    req.config = to_wire(config);
    req.flags = protocol::kCreateIfMissing | protocol::kExclusive | default_config_flag(config);
    auto reply = channel_->request(protocol::Type::open_topic, &req, sizeof req, detail::creation_allowance(req.config.capacity));
    if (!reply) return reply.error();
    ReplyFdGuard guard{reply.value()};
    return ok_status();
}

Status Client::delete_topic(std::string_view topic, bool force) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    protocol::DeleteTopic req{};
    copy_name(req.topic, topic);
    req.flags = force ? uint32_t(protocol::kForce) : 0u;
    auto reply = channel_->request(protocol::Type::delete_topic, &req, sizeof req);
    if (!reply) return reply.error();
    return ok_status();
}

Status Client::set_topic(std::string_view topic, const LiveSettings& settings) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    protocol::SetTopic req{};
    copy_name(req.topic, topic);
    if (settings.on_full) req.which |= protocol::kSetOnFull, req.on_full = uint32_t(*settings.on_full);
    if (settings.unblock_timeout)
        req.which |= protocol::kSetUnblockTimeout, req.unblock_timeout_ns = uint64_t(std::max<int64_t>(0, settings.unblock_timeout->count()));
    if (settings.expire_detached)
        req.which |= protocol::kSetExpireDetached, req.expire_detached_ns = uint64_t(std::max<int64_t>(0, settings.expire_detached->count()));
    if (req.which == 0) return make_error(Errc::invalid_argument, "nothing to change: name a setting");
    auto reply = channel_->request(protocol::Type::set_topic, &req, sizeof req);
    if (!reply) return reply.error();
    return ok_status();
}

Status Client::delete_subscription(std::string_view topic, std::string_view name) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    if (auto st = validate_subscription_name(name); !st) return st.error();
    protocol::SubscriptionName req{};
    copy_name(req.topic, topic);
    copy_name(req.name, name);
    auto reply = channel_->request(protocol::Type::delete_subscription, &req, sizeof req);
    if (!reply) return reply.error();
    return ok_status();
}

Status Client::create_group(std::string_view topic, std::string_view group, const GroupSettings& settings, StartFrom from,
                            uint64_t from_id) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    if (auto st = validate_subscription_name(group); !st) return st.error();
    protocol::JoinGroup req{};
    copy_name(req.topic, topic);
    copy_name(req.group, group);
    req.config = to_wire(TopicConfig{});
    req.from = uint32_t(from);
    req.from_id = from_id;
    req.flags = protocol::kDefaultConfig | protocol::kGroupSettingsGiven | protocol::kCreateGroupOnly |
                detail::group_options_of(settings) << protocol::kGroupOptionsShift;
    req.settings = detail::settings_record(settings);
    auto reply = channel_->request(protocol::Type::join_group, &req, sizeof req);
    if (!reply) return reply.error();
    return ok_status();
}

Status Client::delete_group(std::string_view topic, std::string_view group) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    if (auto st = validate_subscription_name(group); !st) return st.error();
    protocol::SubscriptionName req{};
    copy_name(req.topic, topic);
    copy_name(req.name, group);
    auto reply = channel_->request(protocol::Type::delete_group, &req, sizeof req);
    if (!reply) return reply.error();
    return ok_status();
}

Result<BusInfo> Client::bus_info() noexcept {
    auto reply = channel_->request(protocol::Type::bus_info, nullptr, 0);
    if (!reply) return reply.error();
    if (reply->body.size() != sizeof(protocol::BusInfoOk)) return make_error(Errc::protocol_error, "malformed bus info from shmbusd");
    auto ok = body_as<protocol::BusInfoOk>(*reply, protocol::Type::bus_info_ok);
    if (!ok) return ok.error();
    BusInfo info;
    info.daemon_pid = ok->daemon_pid;
    info.version = std::string(detail::field_name(ok->version));
    info.started = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(detail::duration_from_ns(ok->started_ns)));
    info.clients = ok->clients;
    info.topics = ok->topics;
    info.pattern_subscriptions = ok->pattern_subscriptions;
    return info;
}

Result<std::vector<std::string>> Client::list_topics() noexcept {
    std::vector<std::string> names;
    for (;;) {
        protocol::ListTopics req{uint32_t(names.size()), 0};
        auto reply = channel_->request(protocol::Type::list_topics, &req, sizeof req);
        if (!reply) return reply.error();
        auto head = body_as<protocol::TopicList>(*reply, protocol::Type::topic_list);
        if (!head) return head.error();
        if (reply->body.size() != sizeof(protocol::TopicList) + std::size_t(head->count) * protocol::kNameField)
            return make_error(Errc::protocol_error, "malformed topic list from shmbusd");
        const char* p = reinterpret_cast<const char*>(reply->body.data() + sizeof(protocol::TopicList));
        for (uint32_t i = 0; i < head->count; ++i, p += protocol::kNameField)
            names.emplace_back(p, strnlen(p, protocol::kNameField));
        if (head->count == 0 || names.size() >= head->total) return names;
    }
}

Result<TopicStats> Client::topic_stats(std::string_view topic) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st.error();
    protocol::OpenTopic req{};
    copy_name(req.topic, topic);
    auto r = request_segment<protocol::TopicOk>(*channel_, protocol::Type::open_topic, req, protocol::Type::topic_ok,
                                                Segment::Populate::no);  // a few fields are read, never the ring
    if (!r) return r.error();
    return detail::collect_stats(r->second);
}

}  // namespace shmbus
