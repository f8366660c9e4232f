// The control protocol between clients and shmbusd (docs/protocol.md). One frame per
// SOCK_SEQPACKET message: a FrameHeader then a fixed-size body whose size is checked exactly
// against the type, so a short, long or unknown frame is rejected before any field is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shmbus/layout/consumer_region.h"
#include "shmbus/layout/group_region.h"
#include "shmbus/layout/record.h"
#include "shmbus/layout/segment_header.h"
#include "shmbus/subscriber.h"

namespace shmbus::protocol {

inline constexpr uint32_t kFrameMagic = 0x53425553;  // "SUBS"
// 2: recovery fields in WireConfig, gc. 3: segments of layout 1.2 (longer producer slots), which a
// client of protocol 2 would misread: it is refused at hello instead. 4: layout 1.3, replies carry
// two descriptors (segment and cursor object), and a protocol-3 client would neither map the
// cursor object nor find the space-waiter count where 1.3 keeps it. 5: layout 1.5 (records with
// headers, longer group entries) and JoinGroup's longer settings. 6: layout 1.6 (records with a
// producer stamp, which a protocol-5 client would take for payload) and named producers in
// OpenTopic / TopicOk. 7: layout 1.7 (on-full `archive`, where a protocol-6 subscriber would take
// itself for a gating reader and read without checking for overrun), archive requests. 8: layout
// 1.8 and kSingleProducer (a protocol-7 shmbusd would make such a topic for any number of publishers).
// 9: layout 1.9 (owner and group objects, passed after the segment and cursor object: a
// protocol-8 client would keep two descriptors and take the 1.9 segment for a corrupt one).
// 10: layout 1.11 (meta blocks). 11: compacted archives (WireArchive::max_keys, which a protocol-10
// shmbusd would ignore: a topic asked to be compacted would silently not be).
inline constexpr uint16_t kProtocolVersion = 12;
inline constexpr std::size_t kMaxFrame = 64 * 1024;
inline constexpr std::size_t kNameField = layout::kMaxTopicName + 1;
inline constexpr std::size_t kSubNameField = layout::kMaxSubscriptionName + 1;
inline constexpr uint32_t kNoSlot = 0xFFFFFFFFu;
inline constexpr std::size_t kProducerNameField = layout::kMaxProducerName + 1;

enum class Type : uint16_t {
    hello = 1,          hello_ok = 2,
    open_topic = 3,     topic_ok = 4,        // reply carries the topic's descriptors (SCM_RIGHTS)
    delete_topic = 5,   ok = 6,              // body: DeleteTopic
    list_topics = 7,    topic_list = 8,
    subscribe = 9,      subscribe_ok = 10,   // reply carries the topic's descriptors (SCM_RIGHTS)
    unsubscribe = 11,
    delete_subscription = 12,
    gc = 13,            gc_report = 14,      // remove stale state; the reply lists what went
    close_producer = 15,                     // body: Unsubscribe (topic, producer slot)
    bus_info = 16,      bus_info_ok = 17,    // the supervisor itself (bus-top's header)
    set_topic = 18,                          // body: SetTopic; reply ok
    join_group = 19,                         // body: JoinGroup; reply subscribe_ok (+ descriptors), or ok
                                             // with kCreateGroupOnly
    delete_group = 20,                       // body: SubscriptionName (topic, group); reply ok
    set_archive = 21,                        // body: SetArchive; reply ok (the topic is archived from now on)
    open_archive = 22,  archive_ok = 23,     // body: TopicName; reply ArchiveOk + the archive directory (read-only)
    watch_pattern = 24,                      // body: PatternWatch; reply ok (a pattern subscription began or ended)
    list_patterns = 25, pattern_list = 26,   // body: ListTopics (offset); reply PatternList + PatternEntry[count]
    error = 100,
};

struct FrameHeader {
    uint32_t magic;       // kFrameMagic
    uint16_t version;     // kProtocolVersion
    uint16_t type;        // Type
    uint32_t length;      // whole frame, header included
    uint32_t request_id;  // echoed in the reply
};
static_assert(sizeof(FrameHeader) == 16);

struct Hello {
    uint32_t protocol_version;
    int32_t pid;
    char client_name[32];
};
struct HelloOk {
    uint32_t protocol_version;
    int32_t daemon_pid;
    uint64_t bus_id;
};

enum OpenFlags : uint32_t {
    kCreateIfMissing = 1,  // create with `config` when absent
    kExclusive = 2,        // fail with topic_exists when present
    kAsPublisher = 4,      // register a producer slot for the caller
    kDefaultConfig = 8,    // `config` was left as constructed: apply the bus's configured defaults
    kSingleProducer = 16,  // with kCreateIfMissing: a topic made now takes one publisher at a time (1.8)
    kUntimed = 32,         // with kCreateIfMissing: a topic made now carries no timestamps (1.10)
    kFromTime = 64,        // subscribe: the subscriber starts from a time, refused on an untimed topic (1.10)
};

struct WireConfig {
    uint64_t capacity;
    uint32_t max_message;
    uint32_t on_full;
    uint32_t max_producers;
    uint32_t max_consumers;
    uint64_t unblock_timeout_ns;  // 0: off
    uint64_t expire_detached_ns;  // 0: never
    uint64_t ttl_ns;              // the topic's default time to live; 0: none (protocol 10)
};

// `token`: random per request, kept in the slot the request registers. If the connection breaks
// before the reply, the client repeats the request with the same token and gets the same slot
// instead of a second one (shmbusd may have died after registering it).
struct OpenTopic {
    char topic[kNameField];
    WireConfig config;
    uint32_t flags;  // OpenFlags
    uint32_t reserved;
    uint64_t token;
    char producer[kProducerNameField];  // with kAsPublisher: the publisher's producer name; empty: anonymous
};
struct TopicOk {
    uint64_t segment_size;
    uint32_t producer_slot;   // kNoSlot unless kAsPublisher
    uint32_t created;         // 1 if this request created the topic
    uint32_t sequence_entry;  // the named producer's SequenceEntry; kNoSlot for an anonymous one
    uint32_t reserved;
};

enum DeleteFlags : uint32_t {
    kForce = 1,  // delete even while live clients hold the topic
};
struct DeleteTopic {
    char topic[kNameField];
    uint32_t flags;  // DeleteFlags
    uint32_t reserved;
};

struct ListTopics {
    uint32_t offset;  // first name to return
    uint32_t reserved;
};
inline constexpr uint32_t kNamesPerList = 256;
struct TopicList {
    uint32_t total;
    uint32_t count;  // names that follow, each kNameField bytes
};

// Subscribe::from carries a StartFrom as its number; anything else is refused.
static_assert(uint32_t(StartFrom::earliest) == 0 && uint32_t(StartFrom::latest) == 1 && uint32_t(StartFrom::id) == 2,
              "StartFrom values are part of the wire format");
[[nodiscard]] constexpr bool start_from_wire(uint32_t from, StartFrom& out) noexcept {
    if (from > uint32_t(StartFrom::id)) return false;
    out = StartFrom(from);
    return true;
}

struct Subscribe {
    char topic[kNameField];
    char durable_name[kSubNameField];  // empty: ephemeral
    WireConfig config;                  // used if the topic must be created
    uint32_t from;                      // StartFrom
    uint32_t flags;                     // OpenFlags: only kDefaultConfig has a meaning here
    uint64_t from_id;
    uint64_t token;                     // as in OpenTopic
};
// A consumer group's settings on the wire: as the group's block records them.
using WireGroupSettings = layout::GroupSettingsRecord;
inline constexpr uint32_t kGroupSettingsGiven = 1u << 8;  // JoinGroup: the client chose settings; an existing
                                                          // group with others refuses it
inline constexpr uint32_t kCreateGroupOnly = 1u << 9;     // JoinGroup: create the group (or find it with the
                                                          // same settings) and join nobody: reply ok
// JoinGroup: GroupBlock::options (layout/group_region.h) travel in the flags' top byte (protocol 10).
inline constexpr unsigned kGroupOptionsShift = 24;
struct JoinGroup {
    char topic[kNameField];
    char group[kSubNameField];
    WireConfig config;           // used if the topic must be created
    uint32_t from;               // StartFrom, for a new group
    uint32_t flags;              // kDefaultConfig, kGroupSettingsGiven
    uint64_t from_id;
    uint64_t token;              // as in OpenTopic
    WireGroupSettings settings;  // for a new group; compared with an existing one's if given
};

struct SubscribeOk {
    uint64_t segment_size;
    uint32_t slot;
    uint32_t resumed;       // 1: reattached to an existing durable cursor
    uint64_t position;      // where reading starts
    uint64_t next_id;       // id of the first message at `position`
};

struct Unsubscribe {
    char topic[kNameField];
    uint32_t slot;
    uint32_t reserved;
};

struct SubscriptionName {  // delete_subscription
    char topic[kNameField];
    char name[kSubNameField];
};

// The body of a request that carries none (gc): the frame holds the header alone.
struct NoBody {};

// gc has no body. Its reply: a GcReport then `count` GcEntry records.
struct GcReport {
    uint32_t total;  // items removed (may exceed count)
    uint32_t count;  // entries that follow
};
struct GcEntry {
    char what[160];  // "segment /dev/shm/..." or "socket /path"
    char why[96];
};
inline constexpr uint32_t kGcEntriesPerReply = 240;
static_assert(sizeof(GcReport) + kGcEntriesPerReply * sizeof(GcEntry) <= kMaxFrame - sizeof(FrameHeader));

// `topic set`: the settings a live topic may change. Fields not named in `which` are ignored.
enum SetFields : uint32_t { kSetOnFull = 1, kSetUnblockTimeout = 2, kSetExpireDetached = 4 };
struct SetTopic {
    char topic[kNameField];
    uint32_t which;               // SetFields
    uint32_t on_full;             // OnFull: block or fail
    uint64_t unblock_timeout_ns;  // 0: off
    uint64_t expire_detached_ns;  // 0: never
};
static_assert(sizeof(SetTopic) == 64 + 24);

// An archived topic's settings on the wire (shmbus::ArchiveSettings).
struct WireArchive {
    uint64_t retain_bytes;  // 0: no size limit
    uint64_t retain_ns;     // 0: no age limit
    uint64_t file_bytes;    // a file is closed past this size
    uint32_t fsync;         // ArchiveFsync
    uint32_t max_keys;      // a compacted archive: the keys it keeps (never 0); 0: not compacted
};
struct SetArchive {
    char topic[kNameField];
    WireArchive settings;
};
struct TopicName {
    char topic[kNameField];
};
// open_archive's reply; the frame carries the archive directory as its first descriptor.
struct ArchiveOk {
    WireArchive settings;
};
static_assert(sizeof(WireArchive) == 32 && sizeof(SetArchive) == 96 && sizeof(TopicName) == 64);

// A pattern subscription says it began (stop 0) or ended (stop 1), so that shmbusd can show it.
struct PatternWatch {
    char pattern[kNameField];
    uint32_t stop;
    uint32_t reserved;
};
struct PatternList {
    uint32_t total;  // pattern subscriptions the caller may see
    uint32_t count;  // entries in this reply, from the request's offset
};
struct PatternEntry {
    char pattern[kNameField];
    int32_t pid;
    uint32_t uid;
};
inline constexpr uint32_t kPatternsPerList = 800;
static_assert(sizeof(PatternWatch) == 72 && sizeof(PatternEntry) == 72);
static_assert(sizeof(PatternList) + kPatternsPerList * sizeof(PatternEntry) <= kMaxFrame - sizeof(FrameHeader));

struct BusInfoOk {
    int32_t daemon_pid;
    uint32_t clients;      // connections open now, this one included
    uint64_t started_ns;   // CLOCK_REALTIME when this shmbusd started
    uint32_t topics;       // topics the caller may see
    uint32_t pattern_subscriptions;  // protocol 12: those the caller may see (was reserved)
    char version[32];      // shmbusd's version, NUL terminated
};
static_assert(sizeof(BusInfoOk) == 56);

struct ErrorReply {
    uint32_t code;  // shmbus::Errc
    char message[220];
};

template <class T>
constexpr bool kWireSafe = std::is_standard_layout_v<T> && std::is_trivially_copyable_v<T>;
static_assert(kWireSafe<Hello> && kWireSafe<OpenTopic> && kWireSafe<Subscribe> &&
              kWireSafe<SubscribeOk> && kWireSafe<ErrorReply> && kWireSafe<TopicList>);
static_assert(sizeof(WireConfig) == 48);
static_assert(sizeof(OpenTopic) == 64 + 48 + 8 + 8 + 48);
static_assert(sizeof(TopicOk) == 24);
static_assert(sizeof(Subscribe) == 64 + 48 + 48 + 16 + 8);
static_assert(sizeof(ErrorReply) == 224);

}  // namespace shmbus::protocol
