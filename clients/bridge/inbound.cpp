// The bridge inbound: a JetStream subject delivered into a local topic by a durable pull consumer,
// each message published by an idempotent producer whose sequence is the stream sequence and acked
// to JetStream only once committed here.
#include <cstdlib>
#include <span>
#include <vector>

#include "bridge/link.h"
#include "shmbus/headers.h"
#include "shmbus/names.h"
#include "shmbus/publisher.h"

namespace cli::bridge {
namespace {

// The local headers of a NATS message: its own (those shmbus can carry) and its origin, so that
// this bus never sends it back out.
std::vector<std::pair<std::string, std::string>> from_nats_headers(natsMsg* msg, std::string& origin) {
    std::vector<std::pair<std::string, std::string>> out;
    const char** keys = nullptr;
    int count = 0;
    if (natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK) {
        for (int i = 0; i < count; ++i) {
            const std::string key = keys[i];
            if (key == kMsgIdHeader || !shmbus::validate_header_key(key)) continue;
            const char** values = nullptr;
            int n = 0;
            if (natsMsgHeader_Values(msg, keys[i], &values, &n) != NATS_OK) continue;
            for (int v = 0; v < n; ++v) {
                if (key == kOriginHeader) origin = values[v];
                else out.emplace_back(key, values[v]);
            }
            free(values);
        }
        free(keys);
    }
    if (origin.empty()) origin = "nats";  // published into NATS directly
    out.emplace_back(kOriginHeader, origin);
    return out;
}

// The stream that stores `subject`, or empty.
std::string stream_of(jsCtx* js, const std::string& subject) {
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = subject.c_str();
    jsStreamNamesList* names = nullptr;
    std::string out;
    if (js_StreamNames(&names, js, &o, nullptr) == NATS_OK && names != nullptr && names->Count > 0) out = names->List[0];
    if (names != nullptr) jsStreamNamesList_Destroy(names);
    return out;
}

// Where the durable consumer must start so that nothing committed here comes twice and nothing
// fetched by a predecessor and never published here is stepped over: one past the higher of this
// topic's last sequence from the bridge's producer and the consumer's own ack floor (the latter
// matters when the topic is new, after a reboot). A consumer left with a predecessor's unacked
// messages would deliver new ones before them, out of order, so it is made again at that point.
uint64_t restart_consumer(jsCtx* js, const std::string& stream, const std::string& durable, uint64_t committed) {
    uint64_t floor = 0;
    jsConsumerInfo* ci = nullptr;
    if (js_GetConsumerInfo(&ci, js, stream.c_str(), durable.c_str(), nullptr, nullptr) == NATS_OK) {
        floor = ci->AckFloor.Stream;
        jsConsumerInfo_Destroy(ci);
        (void)js_DeleteConsumer(js, stream.c_str(), durable.c_str(), nullptr, nullptr);
    }
    return std::max(floor, committed) + 1;
}

// Delivers `subject` into `topic` until stopped: a batch fetched at a time and processed in order,
// each message acked to JetStream once committed here (or found committed already).
class Inbound {
public:
    Inbound(shmbus::Publisher& pub, const BridgeSettings& settings, std::string subject, std::string durable, std::string topic,
            std::string bus)
        : pub_(pub), subject_(std::move(subject)), durable_(std::move(durable)), topic_(std::move(topic)), bus_(std::move(bus)),
          link_{settings, nullptr, {}, nullptr}, counters_(counters_for("in", topic_, subject_)) {}

    void run() {
        while (!g_stop.load()) {
            if (!link_.ensure()) return;
            if (!sub_ && !subscribe()) continue;
            natsMsgList list{};
            jsErrCode jerr{};
            const natsStatus st = natsSubscription_Fetch(&list, sub_.get(), kFetchBatch, kFetchWaitMs, &jerr);
            if (st == NATS_TIMEOUT) continue;
            if (st != NATS_OK) {  // the server went away: a new connection, and the consumer made again
                sub_.reset();
                link_.drop();
                std::this_thread::sleep_for(100ms);
                continue;
            }
            bool readable = true;
            for (int i = 0; i < list.Count && readable && !g_stop.load(); ++i) readable = deliver(list.Msgs[i]);
            natsMsgList_Destroy(&list);
            if (!readable) return;
        }
    }

private:
    // The durable pull consumer, made again where this topic's committed sequence says.
    bool subscribe() {
        jsCtx* js = link_.js.get();
        const std::string stream = stream_of(js, subject_);
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Config.AckPolicy = js_AckExplicit;
        so.Config.DeliverPolicy = js_DeliverAll;
        if (!stream.empty()) {
            so.Config.DeliverPolicy = js_DeliverByStartSequence;
            so.Config.OptStartSeq = restart_consumer(js, stream, durable_, pub_.last_sequence());
        }
        // What a bridge killed mid-batch had fetched comes again after this (the default is 30 s).
        so.Config.AckWait = kAckWaitNs;
        // One batch in hand at a time, processed in order: the producer's sequence check relies
        // on stream order (a lower sequence after a higher one reads as a duplicate).
        so.Config.MaxAckPending = kFetchBatch;
        natsSubscription* raw = nullptr;
        jsErrCode jerr{};
        const natsStatus st = js_PullSubscribe(&raw, js, subject_.c_str(), durable_.c_str(), nullptr, &so, &jerr);
        sub_.reset(raw);
        if (st != NATS_OK) {
            sub_.reset();
            log_line("cannot consume '" + subject_ + "' yet: " + nats_error(st));
            std::this_thread::sleep_for(backoff_);
            backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, 2000ms);
            return false;
        }
        backoff_ = 100ms;
        return true;
    }

    // One fetched message published here and acked there. False once the topic can no longer be
    // published to (deleted, corrupt).
    bool deliver(natsMsg* msg) {
        jsMsgMetaData* meta = nullptr;
        if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) return true;
        const uint64_t sequence = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
        std::string origin;
        const auto pairs = from_nats_headers(msg, origin);
        if (origin == bus_) {  // ours, sent out by this bus: already here
            (void)natsMsg_Ack(msg, nullptr);
            return true;
        }
        std::vector<shmbus::Header> headers;
        for (const auto& [k, v] : pairs) headers.push_back({k, v});
        const auto payload = std::as_bytes(std::span<const char>(natsMsg_GetData(msg), std::size_t(natsMsg_GetDataLength(msg))));
        // The stream sequence as the producer's: a message delivered again after a crash
        // between the local commit and the JetStream ack is a duplicate here. In order: one
        // that cannot be published now (a full topic) is tried again, never stepped over.
        shmbus::PublishStatus ps = pub_.publish_sequence(sequence, payload, headers);
        for (auto wait = 100ms; ps != shmbus::PublishStatus::ok && ps != shmbus::PublishStatus::duplicate && !g_stop.load();
             wait = std::min<std::chrono::milliseconds>(wait * 2, 2000ms)) {
            log_line("'" + subject_ + "' -> '" + topic_ + "': stream message " + std::to_string(sequence) +
                     " not published yet: " + shmbus::to_string(ps));
            if (ps == shmbus::PublishStatus::deleted || ps == shmbus::PublishStatus::corrupt) return false;
            counters_.retry();
            std::this_thread::sleep_for(wait);
            ps = pub_.publish_sequence(sequence, payload, headers);
        }
        if (ps == shmbus::PublishStatus::ok || ps == shmbus::PublishStatus::duplicate) {
            (void)natsMsg_Ack(msg, nullptr);
            if (ps == shmbus::PublishStatus::ok) counters_.carry(1);
        }
        return true;
    }

    shmbus::Publisher& pub_;
    const std::string subject_, durable_, topic_, bus_;
    Link link_;
    const MappingCounters counters_;
    Subscription sub_;
    std::chrono::milliseconds backoff_ = 100ms;
};

}  // namespace

void forward_in(shmbus::Publisher& pub, const BridgeSettings& settings, const std::string& subject, const std::string& durable,
                const std::string& topic, const std::string& bus) {
    Inbound(pub, settings, subject, durable, topic, bus).run();
}

}  // namespace cli::bridge
