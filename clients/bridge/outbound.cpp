// The bridge outbound: a local topic read through a durable subscription and published to a
// JetStream subject asynchronously, a sliding window at a time.
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

#include "bridge/link.h"
#include "shmbus/headers.h"
#include "shmbus/subscriber.h"

namespace cli::bridge {
namespace {

// A message read from the topic and not yet settled: sent (maybe again) until JetStream
// acknowledged it. The ring's copy stays too (the cursor still holds it); this one is what a retry
// sends, without seeking.
struct InFlight {
    shmbus::Message handle;  // what the cursor is acked with once this and everything before it are done
    std::string payload;
    std::vector<std::pair<std::string, std::string>> headers;
    bool forward = true;     // false: it came from another bus and is not sent back out
    bool acked = false;      // JetStream acknowledged it (or it needs no sending)
};

// The sliding window of one mapping, shared with the library's acknowledgment handler.
struct OutState {
    std::mutex mutex;
    std::condition_variable acked;  // an acknowledgment or a failure came
    std::deque<InFlight> window;    // in id order
    uint64_t failures = 0;
    uint64_t duplicates = 0;        // acknowledged as already stored (sent again)
};

// The message id at the end of a Nats-Msg-Id "<bus>-<topic>-<id>".
uint64_t id_of(natsMsg* msg) {
    const char* text = nullptr;
    if (natsMsgHeader_Get(msg, kMsgIdHeader, &text) != NATS_OK || text == nullptr) return UINT64_MAX;
    const char* dash = std::strrchr(text, '-');
    return dash == nullptr ? UINT64_MAX : std::strtoull(dash + 1, nullptr, 10);
}

void on_publish_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto& state = *static_cast<OutState*>(closure);
    const uint64_t id = id_of(msg);
    {
        std::lock_guard lock(state.mutex);
        if (pa != nullptr && pae == nullptr) {
            if (pa->Duplicate) ++state.duplicates;
            auto it = std::lower_bound(state.window.begin(), state.window.end(), id,
                                       [](const InFlight& f, uint64_t v) { return f.handle.id < v; });
            if (it != state.window.end() && it->handle.id == id) it->acked = true;
        } else {
            ++state.failures;
        }
    }
    state.acked.notify_one();
    natsMsg_Destroy(msg);
}

// The NATS message for `f`: its payload, its headers, its origin and its id for JetStream's
// duplicate window.
Msg to_nats(const std::string& subject, const std::string& topic, const std::string& bus, const InFlight& f) {
    natsMsg* raw = nullptr;
    if (natsMsg_Create(&raw, subject.c_str(), nullptr, f.payload.data(), int(f.payload.size())) != NATS_OK) return nullptr;
    Msg msg(raw);
    bool has_origin = false;
    for (const auto& [k, v] : f.headers) {
        (void)natsMsgHeader_Add(raw, k.c_str(), v.c_str());
        has_origin = has_origin || k == kOriginHeader;
    }
    if (!has_origin) (void)natsMsgHeader_Set(raw, kOriginHeader, bus.c_str());
    (void)natsMsgHeader_Set(raw, kMsgIdHeader, (bus + "-" + topic + "-" + std::to_string(f.handle.id)).c_str());
    return msg;
}

// Forwards `topic` to `subject` until stopped, keeping up to `window` messages in flight all the
// time (a sliding window): the cursor is acked up to the longest acknowledged prefix, so it never
// passes a message JetStream has not stored. After a failure nothing more goes out; once what is in
// flight has settled, everything unacknowledged is sent again, in order, over a new connection (the
// library's own reconnection would send what it still held for the old server ahead of it).
// JetStream drops the repeats by Nats-Msg-Id, and one connection stores publishes in the order sent,
// so what a failure left stored is a prefix and the stream's order holds.
class Outbound {
public:
    Outbound(shmbus::Subscriber& sub, const BridgeSettings& settings, std::string topic, std::string subject, std::string bus,
             uint32_t window)
        : sub_(sub), topic_(std::move(topic)), subject_(std::move(subject)), bus_(std::move(bus)), window_(window),
          link_{settings, &jo_, {}, nullptr}, counters_(counters_for("out", topic_, subject_)) {
        jsOptions_Init(&jo_);
        jo_.PublishAsync.MaxPending = window;
        jo_.PublishAsync.AckHandler = on_publish_ack;
        jo_.PublishAsync.AckHandlerClosure = &state_;
        jsPubOptions_Init(&po_);
        po_.MaxWait = kPublishWaitMs;
    }

    void run() {
        while (!g_stop.load()) {
            if (!link_.ensure()) return;  // also while idle: its state (and the metrics) follow the server
            if (link_.generation != generation_) {  // a new connection: nothing sent on the old one counts
                generation_ = link_.generation;
                sent_ = 0;
                progress_ = std::chrono::steady_clock::now();
            }
            if (const uint64_t failures = settle_acknowledged(); failures != 0) {
                start_over(failures);
                continue;
            }
            const auto caught_up = fill_window();
            if (!caught_up) return;  // the topic can no longer be read
            const bool published = send_unsent();
            // Out at once when there is no more to send: left to the library's flusher, a lone
            // message waits about a millisecond in its buffer.
            if (published && *caught_up) (void)natsConnection_FlushTimeout(link_.nc.get(), kPublishWaitMs);
            if (!published) wait_for_acknowledgment();
            backoff_ = 100ms;
        }
    }

private:
    // 1. The acknowledged prefix leaves the window and the cursor moves past it. Returns the
    // failures seen since the last start over (acknowledgments that never come count as one).
    uint64_t settle_acknowledged() {
        std::optional<shmbus::Message> done;
        uint64_t carried = 0, failures = 0, duplicates = 0;
        {
            std::lock_guard lock(state_.mutex);
            while (!state_.window.empty() && state_.window.front().acked) {
                done = state_.window.front().handle;
                carried += state_.window.front().forward ? 1 : 0;
                state_.window.pop_front();
                if (sent_ > 0) --sent_;
            }
            failures = state_.failures;
            duplicates = std::exchange(state_.duplicates, 0);
        }
        if (done) {
            (void)sub_.ack(*done);
            counters_.carry(double(carried));
        }
        if (done || sent_ == 0) progress_ = std::chrono::steady_clock::now();
        // Acknowledgments that never come (the server went away with the messages) are failures.
        if (failures == 0 && sent_ != 0 && std::chrono::steady_clock::now() - progress_ > std::chrono::milliseconds(2 * kPublishWaitMs)) {
            std::lock_guard lock(state_.mutex);
            failures = ++state_.failures;
        }
        if (duplicates != 0)
            log_line("'" + topic_ + "' -> '" + subject_ + "': " + std::to_string(duplicates) + " were stored already (sent again)");
        return failures;
    }

    // 2. A failure: let what is in flight settle, then start over on a new connection.
    void start_over(uint64_t failures) {
        jsPubOptions wait;
        jsPubOptions_Init(&wait);
        wait.MaxWait = kPublishWaitMs * 2;
        if (js_PublishAsyncComplete(link_.js.get(), &wait) != NATS_OK) {
            natsMsgList pending{};
            if (js_PublishAsyncGetPendingList(&pending, link_.js.get()) == NATS_OK) natsMsgList_Destroy(&pending);
        }
        uint64_t first = 0;
        {
            std::lock_guard lock(state_.mutex);
            state_.failures = 0;
            first = state_.window.empty() ? 0 : state_.window.front().handle.id;
        }
        log_line("'" + topic_ + "' -> '" + subject_ + "': " + std::to_string(failures) +
                 " not acknowledged; sending everything unacknowledged again from id " + std::to_string(first));
        counters_.retry();
        link_.drop();
        sent_ = 0;
        std::this_thread::sleep_for(backoff_);
        backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, 2000ms);
    }

    // 3. New messages into the window, as far as it has room. Whether the topic had no more
    // (nullopt: it can no longer be read).
    std::optional<bool> fill_window() {
        std::size_t size = 0;
        {
            std::lock_guard lock(state_.mutex);
            size = state_.window.size();
        }
        if (size >= window_) return true;  // full: nothing read, so nothing says more is waiting
        auto read = [&](const shmbus::Message& m) {
            InFlight f;
            f.handle = m;
            // A message that came in from another bus is not sent back out: every bus reads
            // the subject itself.
            if (auto origin = m.headers.get(kOriginHeader); origin && *origin != bus_) f.forward = false;
            if (f.forward) {
                f.payload.assign(m.text());
                for (const shmbus::Header& h : m.headers) f.headers.emplace_back(h.key, h.value);
            }
            f.acked = !f.forward;
            std::lock_guard lock(state_.mutex);
            state_.window.push_back(std::move(f));
        };
        const std::size_t room = window_ - size;
        const auto r = size == 0 ? sub_.receive(read, 100ms, room) : sub_.poll(read, room);
        if (r.status == shmbus::ReceiveStatus::deleted || r.status == shmbus::ReceiveStatus::corrupt) {
            log_line("topic '" + topic_ + "' can no longer be read: " +
                     (r.status == shmbus::ReceiveStatus::deleted ? "deleted" : "corrupt"));
            return std::nullopt;
        }
        return r.status != shmbus::ReceiveStatus::ok || r.count < room;
    }

    // 4. Everything in the window not sent on this connection yet goes out. Whether any did.
    bool send_unsent() {
        bool published = false;
        for (;;) {
            Msg msg;
            {
                std::lock_guard lock(state_.mutex);
                if (sent_ >= state_.window.size() || state_.failures != 0) break;
                const InFlight& f = state_.window[sent_++];
                if (!f.forward || f.acked) continue;
                msg = to_nats(subject_, topic_, bus_, f);
            }
            natsMsg* raw = msg.release();
            if (raw == nullptr || js_PublishMsgAsync(link_.js.get(), &raw, &po_) != NATS_OK) {
                std::lock_guard lock(state_.mutex);
                ++state_.failures;
            }
            natsMsg_Destroy(raw);  // no-op once the library took it
            published = true;
        }
        return published;
    }

    // Nothing to send: wait for an acknowledgment (or new messages next turn).
    void wait_for_acknowledgment() {
        std::unique_lock lock(state_.mutex);
        if (!state_.window.empty() && !state_.window.front().acked && state_.failures == 0) state_.acked.wait_for(lock, 10ms);
    }

    shmbus::Subscriber& sub_;
    const std::string topic_, subject_, bus_;
    const uint32_t window_;
    OutState state_;
    jsOptions jo_{};
    Link link_;
    jsPubOptions po_{};
    const MappingCounters counters_;
    std::chrono::milliseconds backoff_ = 100ms;
    std::size_t sent_ = 0;  // entries at the window's front already sent on this connection
    uint64_t generation_ = 0;
    std::chrono::steady_clock::time_point progress_ = std::chrono::steady_clock::now();  // the acknowledged prefix last moved
};

}  // namespace

void forward_out(shmbus::Subscriber& sub, const BridgeSettings& settings, const std::string& topic, const std::string& subject,
                 const std::string& bus, uint32_t window) {
    Outbound(sub, settings, topic, subject, bus, window).run();
}

}  // namespace cli::bridge
