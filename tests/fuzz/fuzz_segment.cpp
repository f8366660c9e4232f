// Fuzz target: a topic segment that someone scribbled on. The input is a list of patches
//   [region u8][offset u16 LE][length u8][bytes...]
// (region 0: page 0, 1: producer region, 2: consumer region, 3: the ring) applied to a segment
// that holds a few messages, a durable cursor and an open claim. Then everything that reads
// shared memory runs over it: attach, new subscriptions, polling, publishing, shmbusd's recovery
// of every producer slot and its supervisor's tick. Nothing may crash or read out of bounds
// (run under ASan); what they report is theirs to decide.
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "local_topic.h"
#include "supervisor/recovery.h"
#include "topic_supervisor.h"

namespace {

using namespace shmbus;
using namespace shmbus::detail;

TopicConfig small_topic() {
    TopicConfig c;
    c.capacity = 4096;
    c.max_producers = 4;
    c.max_consumers = 4;
    c.unblock_timeout = std::chrono::milliseconds(10);
    c.expire_detached = std::chrono::seconds(1);
    return c;
}

// Publishes a few messages and leaves a durable cursor behind them (open claims come from the
// patches: the corpus has some).
void seed_state(const LocalTopic& t) {
    auto pub = t.publisher({}, 0);
    auto durable = t.subscriber([] {
        SubscribeOptions o;
        o.durable_name = "d";
        o.from = StartFrom::earliest;
        return o;
    }());
    for (int i = 0; i < 5; ++i) (void)pub.publish("message " + std::to_string(i));
    if (durable) (void)durable->poll([](const Message&) {}, 2);
}

// A patch: region byte (header, producer region, cursor object or one of the owner and group
// objects, ring), 16-bit offset into the region, length byte, bytes.
void apply_patches(const LocalTopic& t, const uint8_t* data, size_t size) {
    // Copied before patching: the patches may rewrite the header itself.
    const layout::SegmentHeader& live = t.segment().header();
    const uint64_t producer_offset = live.producer_offset, ring_offset = live.ring_offset, segment_size = live.segment_size;
    struct Object {
        uint8_t* base;
        uint64_t size;
    };
    std::vector<Object> objects;  // the cursor object, then the companions
    auto map = [&](int fd) {
        struct stat st{};
        if (fstat(fd, &st) != 0) return;
        void* m = mmap(nullptr, uint64_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) objects.push_back({static_cast<uint8_t*>(m), uint64_t(st.st_size)});
    };
    map(t.cursor_fd());
    for (int fd : t.companions()) map(fd);
    auto* base = static_cast<uint8_t*>(mmap(nullptr, segment_size, PROT_READ | PROT_WRITE, MAP_SHARED, t.fd(), 0));
    if (base == MAP_FAILED || objects.empty()) return;
    for (size_t i = 0; i + 4 <= size;) {
        uint8_t* target = base;
        uint64_t start = 0, end = producer_offset;
        switch (data[i] % 4) {
            case 1: start = producer_offset, end = ring_offset; break;
            case 2: {
                const Object& o = objects[(data[i] / 4) % objects.size()];
                target = o.base, start = 0, end = o.size;
                break;
            }
            case 3: start = ring_offset, end = segment_size; break;
            default: break;
        }
        const uint64_t offset = start + (uint64_t(data[i + 1]) | uint64_t(data[i + 2]) << 8);
        size_t length = data[i + 3];
        i += 4;
        length = std::min(length, size - i);
        if (offset < end && length <= end - offset) std::memcpy(target + offset, data + i, length);
        i += length;
    }
    munmap(base, segment_size);
    for (const Object& o : objects) munmap(o.base, o.size);
}

void exercise(const LocalTopic& t) {
    auto seg = t.attach();
    if (!seg) return;  // refused: that is a fine answer to a scribbled header
    for (const StartFrom from : {StartFrom::earliest, StartFrom::latest, StartFrom::id}) {
        SubscribeOptions o;
        o.from = from;
        o.from_id = 2;
        if (auto sub = t.subscriber(o)) (void)sub->poll([](const Message& m) { (void)m.text(); }, 64);
    }
    SubscribeOptions durable;
    durable.durable_name = "e";
    if (auto sub = t.subscriber(durable)) (void)sub->poll([](const Message&) {}, 64);
    PublisherOptions quick;
    quick.block_timeout = std::chrono::nanoseconds(0);
    auto pub = t.publisher(quick, 0);
    for (int i = 0; i < 3; ++i) (void)pub.publish("after the scribbling");
    for (uint32_t i = 0; i < seg->max_producers(); ++i) {
        (void)seal_abandoned_claim(*seg, i, {i});
        settle_take_back(*seg, i);
        (void)take_back_stalled_claim(*seg, i, seg->producer_slot(i).claim_start.load() | 1);
    }
    auto again = t.attach();
    if (!again) return;
    shmbus::daemon::TopicSupervisor sup("f", std::move(again.value()));
    (void)sup.reconcile([](const Process&) { return false; });
    sup.tick(1'000'000'000, 1'000'000'000);
    sup.tick(2'000'000'000, UINT64_MAX / 2);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool quiet = [] {
        spdlog::set_level(spdlog::level::off);  // the supervisor logs every repair it makes
        return true;
    }();
    (void)quiet;
    LocalTopic t(small_topic(), "fuzz");
    if (!t.ok()) return 0;
    seed_state(t);
    apply_patches(t, data, size);
    exercise(t);
    return 0;
}
