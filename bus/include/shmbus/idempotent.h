// Idempotent consumers: a message's effects are applied once, however often it is delivered.
//
// At-least-once delivery repeats a message when a consumer dies between its work and its ack.
// An IdempotentConsumer records each message it applied in the same database transaction as the
// application's own writes, and acks only after that transaction committed; a message delivered
// again finds its record and is acked without running the work a second time.
//
//   shmbus::sqlite::Database db = ...;                  // shmbus/sqlite/exactly_once.h
//   shmbus::sqlite::SqliteStore store = ...;
//   shmbus::IdempotentConsumer consumer(store, "inventory");
//   sub->receive([&](const shmbus::Message& m) {
//       (void)consumer.handle(*sub, m, [&]() -> shmbus::Status { return reserve_stock(db, m); });
//   });
//
// The store is an interface (ProcessedStore), so any database with transactions can hold the
// records: the SQLite one ships in the shmbus_sqlite library.
#pragma once

#include <string>
#include <string_view>

#include "shmbus/function_ref.h"
#include "shmbus/result.h"
#include "shmbus/subscriber.h"

namespace shmbus {

// What identifies a message across redeliveries: a named producer's name and sequence when the
// message carries them (the same however many times, or after whatever restart, it was
// published), else its id on the topic.
struct MessageKey {
    std::string topic;
    std::string key;  // "p/<producer>/<sequence>" or "i/<id>"
    [[nodiscard]] static MessageKey of(std::string_view topic, const Message& m);
};

// A database transaction that holds the application's writes and the record of the messages it
// applied. Used from one thread at a time.
class ProcessedStore {
public:
    virtual ~ProcessedStore() = default;
    [[nodiscard]] virtual Status begin() noexcept = 0;
    // Inside the transaction: records that `consumer` applied `key`. false (and nothing written) if
    // it was recorded already, by this transaction's predecessors.
    [[nodiscard]] virtual Result<bool> record(std::string_view consumer, const MessageKey& key) noexcept = 0;
    [[nodiscard]] virtual Status commit() noexcept = 0;
    virtual void rollback() noexcept = 0;
};

enum class Processed : uint8_t {
    applied,    // the work ran and committed together with the message's record
    duplicate,  // recorded before: the work did not run again
    failed,     // the work returned an error: rolled back, nothing recorded (last_error() says why)
};
[[nodiscard]] const char* to_string(Processed p) noexcept;

class IdempotentConsumer {
public:
    // `consumer`: whose records these are (a subscription or group name): two consumers of one
    // topic each apply every message once.
    IdempotentConsumer(ProcessedStore& store, std::string consumer) noexcept;

    // Runs `work` (the application's writes, through the store's own connection) and records the
    // message in one transaction. An error from the store itself (locked, full disk) is returned
    // as an error: nothing was committed.
    [[nodiscard]] Result<Processed> process(std::string_view topic, const Message& m, FunctionRef<Status()> work) noexcept;

    // process(), then settles the message on `sub`, which delivered it: acked when applied or a
    // duplicate; when the work failed, a group member nacks it (the error is the dead letter's
    // reason on its last attempt) and any other subscriber leaves it unacked. A store error leaves
    // it unacked too. Only after the commit is it acked: a crash in between delivers it again,
    // and then it is a duplicate.
    [[nodiscard]] Result<Processed> handle(Subscriber& sub, const Message& m, FunctionRef<Status()> work) noexcept;

    [[nodiscard]] const Error& last_error() const noexcept { return last_error_; }
    [[nodiscard]] const std::string& consumer() const noexcept { return consumer_; }

private:
    ProcessedStore& store_;
    std::string consumer_;
    Error last_error_;
    uint64_t crash_after_commit_ = 0;  // fault injection (SHMBUS_CRASH_POINT=after_store_commit:N)
    uint64_t commits_ = 0;
};

}  // namespace shmbus
