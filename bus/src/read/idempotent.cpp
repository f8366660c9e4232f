#include "shmbus/idempotent.h"

#include "core/crash_point.h"

namespace shmbus {

MessageKey MessageKey::of(std::string_view topic, const Message& m) {
    if (!m.producer.empty())
        return {std::string(topic), "p/" + std::string(m.producer) + "/" + std::to_string(m.sequence)};
    return {std::string(topic), "i/" + std::to_string(m.id)};
}

const char* to_string(Processed p) noexcept {
    switch (p) {
        case Processed::applied: return "applied";
        case Processed::duplicate: return "duplicate";
        case Processed::failed: return "failed";
    }
    return "unknown";
}

IdempotentConsumer::IdempotentConsumer(ProcessedStore& store, std::string consumer) noexcept
    : store_(store), consumer_(std::move(consumer)),
      crash_after_commit_(detail::CrashPoint::passes_before("after_store_commit")) {}

Result<Processed> IdempotentConsumer::process(std::string_view topic, const Message& m, FunctionRef<Status()> work) noexcept {
    if (auto st = store_.begin(); !st) return st.error();
    auto fresh = store_.record(consumer_, MessageKey::of(topic, m));
    if (!fresh) {
        store_.rollback();
        return fresh.error();
    }
    if (!*fresh) {
        store_.rollback();
        return Processed::duplicate;
    }
    if (auto st = work(); !st) {
        store_.rollback();
        last_error_ = st.error();
        return Processed::failed;
    }
    if (auto st = store_.commit(); !st) {
        store_.rollback();
        return st.error();
    }
    if (crash_after_commit_ != 0 && ++commits_ == crash_after_commit_) raise(SIGKILL);  // committed, not acked
    return Processed::applied;
}

Result<Processed> IdempotentConsumer::handle(Subscriber& sub, const Message& m, FunctionRef<Status()> work) noexcept {
    auto outcome = process(sub.topic(), m, work);
    if (!outcome) return outcome;
    if (*outcome == Processed::failed) {
        if (sub.in_group()) (void)sub.nack(m, last_error_.message);
        return outcome;
    }
    (void)sub.ack(m);  // stale (past a group's visibility timeout): whoever has it now finds the record
    return outcome;
}

}  // namespace shmbus
