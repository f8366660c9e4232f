// A topic segment in a memfd with no daemon: lets unit and in-process stress tests drive the real
// Publisher and Subscriber code, and set ring state directly.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "publish/publisher_core.h"
#include "read/subscriber_core.h"
#include "supervisor/group_admin.h"
#include "supervisor/registration.h"
#include "core/cursor.h"
#include "groups/group.h"
#include "core/segment.h"
#include "supervisor/sequences.h"
#include "shmbus/publisher.h"
#include "shmbus/subscriber.h"

namespace shmbus::detail {

struct Access {
    static Publisher publisher(std::unique_ptr<PublisherCore> core) { return Publisher(std::move(core)); }
    static Subscriber subscriber(std::unique_ptr<SubscriberCore> core) { return Subscriber(std::move(core)); }
    static SubscriberCore& core(Subscriber& s) { return *s.core_; }
    static PublisherCore& core(Publisher& p) { return *p.core_; }
    static uint64_t end_position(const Message& m) { return m.end_position_; }
};

class LocalTopic {
public:
    // How the topic's objects are arranged: as shmbusd makes topics now (layout 1.9: a cursor
    // object and owner and group objects), as 1.3 to 1.8 made them (the consumer slots and group
    // blocks in the cursor object), or as 1.2 and older did (one object).
    enum class Arrangement : uint8_t { owner_objects, cursor_object, single_object };
    explicit LocalTopic(TopicConfig config, std::string name = "local", Arrangement arrangement = Arrangement::owner_objects) {
        fd_ = memfd_create(name.c_str(), MFD_CLOEXEC);
        if (arrangement != Arrangement::single_object) cursor_fd_ = memfd_create((name + "@cursors").c_str(), MFD_CLOEXEC);
        const Geometry g = compute_geometry(with_defaults(config));
        if (arrangement == Arrangement::owner_objects)
            for (uint32_t i = 0; i < g.owner_objects + g.max_groups; ++i)
                companions_.push_back(memfd_create((name + "@" + std::to_string(i)).c_str(), MFD_CLOEXEC));
        auto seg = Segment::format(fd_, name, with_defaults(config), 42, {}, cursor_fd_, Segment::Pages::reserve, 0, companions_);
        ok_ = seg.has_value();
        if (!ok_) error_ = seg.error();
        else segment_ = std::move(seg.value());
    }
    ~LocalTopic() {
        if (fd_ >= 0) close(fd_);
        if (cursor_fd_ >= 0) close(cursor_fd_);
        for (int fd : companions_) close(fd);
    }
    [[nodiscard]] bool ok() const { return ok_; }
    [[nodiscard]] const Error& error() const { return error_; }
    [[nodiscard]] const Segment& segment() const { return segment_; }
    [[nodiscard]] int fd() const { return fd_; }
    [[nodiscard]] int cursor_fd() const { return cursor_fd_; }
    // The owner objects' then the group objects' descriptors (read-write).
    [[nodiscard]] const std::vector<int>& companions() const { return companions_; }
    // A fresh mapping of every object, all writable (an in-process stand-in for every role).
    [[nodiscard]] Result<Segment> attach() const { return Segment::attach(fd_, cursor_fd_, Segment::Populate::yes, companions_); }

    // Records its claims in producer slot `slot`, as one registered by the daemon would.
    [[nodiscard]] Publisher publisher(PublisherOptions options = {}, uint32_t slot = 0) const {
        auto seg = attach();
        seg->producer_slot(slot).state.store(uint32_t(layout::ProducerState::active));
        std::optional<uint32_t> entry;
        if (!options.producer.empty()) entry = hold_sequence_entry(*seg, options.producer, slot).value();
        auto core = std::make_unique<PublisherCore>(nullptr, std::move(seg.value()), slot, std::move(options));
        if (entry) core->hold_name(core->seg.sequence_entry(*entry));
        return Access::publisher(std::move(core));
    }

    // Emulates the daemon's subscribe: reserve a slot, place the cursor, build the subscriber.
    [[nodiscard]] Result<Subscriber> subscriber(SubscribeOptions options = {}) const {
        auto seg = attach();
        if (!seg) return seg.error();
        auto slot = reserve_consumer_slot(*seg);
        if (!slot) return make_error(Errc::no_free_slot, "no slot");
        const bool durable = !options.durable_name.empty();
        auto start = attach_new_cursor(*seg, *slot, durable ? layout::SlotKind::durable : layout::SlotKind::ephemeral,
                                       options.durable_name, Registration{{getpid(), 0}}, options.from, options.from_id);
        if (!start) return start.error();
        auto core = std::make_unique<SubscriberCore>(nullptr, std::move(seg.value()), *slot, durable, std::move(options));
        core->begin(start->position, start->id, false);
        return Access::subscriber(std::move(core));
    }

    // Emulates the daemon's join_group: the group made on first use (from the earliest message),
    // a member slot attached with `token`, the subscriber delivering through the group.
    [[nodiscard]] Result<Subscriber> member(const std::string& group, SubscribeOptions options, uint64_t token,
                                            GroupMember::DeadLetter dead_letter = {}) const {
        auto seg = attach();
        if (!seg) return seg.error();
        auto place = find_group(*seg, group);
        if (!place) {
            auto made = create_group(*seg, group, settings_record(options.group_settings), StartFrom::earliest, 0,
                                     Registration{{getpid(), 0}});
            if (!made) return made.error();
            place = *made;
        }
        auto slot = reserve_consumer_slot(*seg);
        if (!slot) return make_error(Errc::no_free_slot, "no slot");
        seg->consumer_slot(*slot).reserved0 = place->slot;
        auto start = attach_new_cursor(*seg, *slot, layout::SlotKind::member, group, Registration{{getpid(), 0}, token},
                                       StartFrom::latest, 0);
        if (!start) return start.error();
        auto core = std::make_unique<SubscriberCore>(nullptr, std::move(seg.value()), *slot, false, std::move(options));
        core->group = std::make_unique<GroupMember>(core->seg, *slot, uint32_t(token), place->slot,
                                                    core->seg.group_block(place->block), std::move(dead_letter));
        return Access::subscriber(std::move(core));
    }

private:
    int fd_ = -1;
    int cursor_fd_ = -1;
    std::vector<int> companions_;
    bool ok_ = false;
    Error error_;
    Segment segment_;
};

}  // namespace shmbus::detail
