// shmbusd's topic registry: the segments of one bus directory, by topic name. Creates, adopts
// and removes POSIX shared-memory objects named by bus_files.h.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <thread>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/control.h"
#include "core/segment.h"
#include "core/slots.h"
#include "topic_supervisor.h"
#include "shmbus/result.h"
#include "shmbus/topic.h"

namespace shmbus::daemon {

// What a client does with a topic, which decides the access of the descriptors it is handed:
//   publish:   segment read-write, cursor object read-only (it reads the cursors that gate it);
//   subscribe: segment read-only, cursor object read-write (it writes its own cursor);
//   observe:   both read-only (statistics, `topic info`).
enum class Role : uint8_t { publish, subscribe, observe };
[[nodiscard]] const char* role_name(Role role) noexcept;

// Descriptors opened for one reply, closed when it has gone.
struct HandedFds {
    HandedFds() = default;
    HandedFds(HandedFds&& o) noexcept : fds(std::exchange(o.fds, {})) {}
    HandedFds& operator=(HandedFds&&) = delete;
    HandedFds(const HandedFds&) = delete;
    ~HandedFds() { fds.close_all(); }
    detail::PassedFds fds;
};

// Who writes a topic's owner objects (layout 1.9, layout/owner_object.h): a uid (its ephemeral
// and durable subscriptions), a consumer group (by its block), or the topic's archiver. Spelled as
// in the objects' names: "u1001", "g2", "a".
[[nodiscard]] std::string user_principal(uid_t uid);
[[nodiscard]] std::string group_principal(uint32_t block);
inline constexpr std::string_view kArchiverPrincipal = "a";

// What a subscriber's descriptors let it write: the owner objects of `principal` and, for a
// member, its group's object. Publishers and observers write none of them.
struct Writer {
    std::string principal;           // empty: none
    std::optional<uint32_t> group;   // a group block whose object it writes
};

// A topic as shmbusd holds it: the shared-memory objects (segment and cursor object), their
// read-write descriptors, the names of its owner and group objects (1.9; shmbusd keeps no
// descriptor for those and opens them by name when it hands them out), and the supervisor of its
// segment. A segment of an older shmbusd has no cursor object (cursor_fd -1), or no owner objects.
struct TopicEntry {
    TopicEntry(std::string shm, int descriptor, int cursor_descriptor, TopicSupervisor sup)
        : shm_name(std::move(shm)), fd(descriptor), cursor_fd(cursor_descriptor), supervisor(std::move(sup)) {}
    TopicEntry(const TopicEntry&) = delete;
    TopicEntry& operator=(const TopicEntry&) = delete;
    ~TopicEntry();

    [[nodiscard]] const std::string& name() const noexcept { return supervisor.name(); }
    [[nodiscard]] const detail::Segment& segment() const noexcept { return supervisor.segment(); }
    // Descriptors for a client of `role`: fresh read-only ones (reopened through /proc/self/fd,
    // or opened by name, so the kernel will refuse a write mapping) where the role must not write.
    // A subscriber writes the cursor object's head and, of the owner and group objects, only
    // those of `writer`.
    [[nodiscard]] Result<HandedFds> hand_out(Role role, const Writer& writer = {}) const noexcept;

    // The owner objects of `principal` (a topic without owner objects: every slot).
    [[nodiscard]] detail::OwnerMask scope_of(std::string_view principal) const noexcept;
    // The same, with room for one more slot: an unassigned owner object is given to the principal
    // (renamed with its name) when its own are full. Error: none left.
    [[nodiscard]] Result<detail::OwnerMask> scope_with_room(const std::string& principal) noexcept;

    std::string shm_name;
    int fd = -1;
    int cursor_fd = -1;
    // A reply inbox (shmbus/names.h, is_inbox_name): the connection that made it, which alone may
    // read it and whose closing removes it; 0 for a topic.
    uint64_t inbox_session = 0;
    std::vector<std::string> owner_names;  // 1.9: /dev/shm names of the owner objects, by index
    std::vector<std::string> owner_of;     // their principals ("" while unassigned)
    std::vector<std::string> group_names;  // /dev/shm names of the group objects, by block
    TopicSupervisor supervisor;
};

// The topics a descriptor limit allows: two descriptors per topic (segment and cursor object),
// and the rest kept for clients, watched owners and shmbusd's own (64, plus an eighth of the limit).
inline constexpr uint64_t kDescriptorsPerTopic = 2;
[[nodiscard]] constexpr std::size_t topic_limit(uint64_t descriptor_limit) noexcept {
    const uint64_t reserved = 64 + descriptor_limit / 8;
    return descriptor_limit > reserved ? std::size_t((descriptor_limit - reserved) / kDescriptorsPerTopic) : 0;
}

// Topics at least this large have their pages reserved on a worker thread: tmpfs zeroes every
// page it reserves (about 80 ms per GiB), and shmbusd must not stop serving everyone else meanwhile.
inline constexpr uint64_t kReserveInBackgroundBytes = 64ull << 20;

class Registry {
public:
    // `max_topics`: each topic holds one descriptor for as long as it exists, so a bus may have
    // only as many as a restarted shmbusd could open again (see topic_limit()).
    Registry(uint64_t bus_id, std::string bus_dir, std::size_t max_topics = SIZE_MAX)
        : bus_id_(bus_id), bus_dir_(std::move(bus_dir)), max_topics_(max_topics) {}
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;
    // Waits for reservations still running (a worker cannot be cancelled inside posix_fallocate)
    // and removes their objects: a topic never finished is not left behind.
    ~Registry();

    [[nodiscard]] TopicEntry* find(const std::string& name) noexcept;
    // Creates a topic. From reserve_in_background() on, one of kReserveInBackgroundBytes or more
    // is created in two steps: the first call starts reserving its pages on a worker thread and
    // answers nullptr (not created yet; reservation_done_fd() becomes readable when it may be
    // asked again); a call once the reservation is over finishes it (or reports why it failed).
    // The settings of the first call are the ones the topic gets. `first_id`: the id its first
    // message gets (an archived topic made again continues its archive's ids).
    [[nodiscard]] Result<TopicEntry*> create(const std::string& name, const TopicConfig& config, uint64_t first_id = 0) noexcept;
    // Called for every topic this registry creates, once it exists (not for adopted ones).
    void on_created(std::function<void(TopicEntry&)> hook) { on_created_ = std::move(hook); }
    // Large topics from now on are reserved on worker threads. False if the eventfd cannot be made.
    [[nodiscard]] bool reserve_in_background() noexcept;
    // Readable (an eventfd; read it to clear) whenever a background reservation has ended.
    [[nodiscard]] int reservation_done_fd() const noexcept { return done_fd_; }
    // Finishes every reservation that has ended and that no request finished (its client left):
    // the topic is created all the same, as a request that timed out may still take effect.
    struct Finished {
        std::string topic;
        std::optional<Error> error;
    };
    [[nodiscard]] std::vector<Finished> finish_ended_reservations() noexcept;
    [[nodiscard]] Status remove(const std::string& name) noexcept;
    [[nodiscard]] std::vector<std::string> names() const;
    [[nodiscard]] std::size_t size() const noexcept { return topics_.size(); }

    struct AdoptReport {
        std::vector<std::string> adopted;
        std::vector<std::string> removed;  // "name: why"
        std::vector<std::string> ignored;  // not made by shmbusd, or not removable: "name: why"
        std::optional<Error> stopped;      // out of descriptors or memory: adoption ended here, nothing removed
    };
    // Re-adopts every valid segment of this bus found in /dev/shm; unlinks those proven damaged.
    // Stops at the first resource error (EMFILE, ENFILE, ENOMEM), which `stopped` then names.
    AdoptReport adopt_existing();
    [[nodiscard]] std::string shm_name_for(const std::string& topic) const;

    template <class F>
    void for_each(F&& f) {
        for (auto& [name, entry] : topics_) f(*entry);
    }

private:
    // A large topic whose objects exist, empty, while a worker reserves their pages.
    struct Pending {
        TopicConfig config;  // with defaults applied
        uint64_t first_id = 0;
        std::string shm;
        int fd = -1, cursor_fd = -1;
        std::thread worker;
        std::atomic<bool> done{false};  // set (release) by the worker once `result` is written
        Status result = ok_status();
    };
    [[nodiscard]] static Result<int> create_object(const std::string& name, const std::string& shm) noexcept;
    // The two objects of a new topic, created empty: {segment fd, cursor fd}.
    [[nodiscard]] Result<std::pair<int, int>> create_objects(const std::string& name, const std::string& shm) noexcept;
    [[nodiscard]] Result<TopicEntry*> finish(const std::string& name, const TopicConfig& c, const std::string& shm, int fd,
                                            int cursor_fd, detail::Segment::Pages pages, uint64_t first_id) noexcept;
    // The owner and group objects of a new topic (layout 1.9), created empty: their descriptors
    // (owners, then groups) and names. Removes what it made on failure.
    struct NewCompanions {
        std::vector<int> fds;
        std::vector<std::string> owner_names, group_names;
    };
    [[nodiscard]] static Result<NewCompanions> create_companions(const std::string& name, const std::string& shm,
                                                                 const detail::Geometry& g) noexcept;
    // Adopts the owner and group objects `header` names from the /dev/shm listing `files`.
    struct FoundCompanions {
        std::vector<int> fds;
        std::vector<std::string> owner_names, owner_of, group_names;
        std::string missing;  // why they are not all there (proven: the names are absent)
        int error = 0;        // errno of one that is there and cannot be opened
    };
    [[nodiscard]] static FoundCompanions find_companions(const std::string& file, const layout::SegmentHeader& header,
                                                         const std::vector<std::string>& files);
    [[nodiscard]] Result<TopicEntry*> start_reservation(const std::string& name, const TopicConfig& c, uint64_t first_id) noexcept;
    [[nodiscard]] Result<TopicEntry*> finish_reservation(const std::string& name) noexcept;
    static void discard(const std::string& shm, int fd, int cursor_fd) noexcept;
    void adopt(const std::string& file, const std::string& topic, const std::vector<std::string>& files, AdoptReport& report);

    uint64_t bus_id_;
    std::string bus_dir_;  // recorded in each segment, so `gc` can tell when its bus is gone
    std::size_t max_topics_;
    std::map<std::string, std::unique_ptr<TopicEntry>> topics_;
    std::map<std::string, std::unique_ptr<Pending>> pending_;
    int done_fd_ = -1;  // eventfd: -1 until reserve_in_background()
    std::function<void(TopicEntry&)> on_created_;
};

}  // namespace shmbus::daemon
