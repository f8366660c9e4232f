// Exactly once with SQLite (the shmbus_sqlite library, shmbus::sqlite in CMake):
//  - SqliteStore: the ProcessedStore of an IdempotentConsumer (shmbus/idempotent.h) in the
//    application's own SQLite database, so the record of a message commits with its effects;
//  - Outbox and OutboxRelay: the producer side. Business rows and outgoing messages are written in
//    one transaction (Outbox::add); a relay publishes them in order as a named (idempotent)
//    producer, the row id being the sequence, and deletes them once published. A relay killed
//    between its publish and its delete publishes the row again, and the topic answers duplicate.
//
//   auto db = shmbus::sqlite::Database::open("shop.db");
//   auto outbox = shmbus::sqlite::Outbox::attach(*db);
//   db->exec("BEGIN IMMEDIATE");
//   db->exec("INSERT INTO orders ...");
//   outbox->add("orders.placed", payload);
//   db->exec("COMMIT");
//   ...
//   shmbus::sqlite::OutboxRelay relay(*db, client, "shop-outbox");
//   relay.relay();   // publishes what is committed and not yet sent
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "shmbus/client.h"
#include "shmbus/headers.h"
#include "shmbus/idempotent.h"
#include "shmbus/names.h"
#include "shmbus/result.h"

namespace shmbus::sqlite {

// One SQLite connection, in WAL mode with synchronous=FULL (a committed transaction survives the
// process and the machine) and a busy timeout, so processes sharing the file wait for each other.
class Database {
public:
    [[nodiscard]] static Result<Database> open(const std::string& path) noexcept;
    Database(Database&& other) noexcept;
    Database& operator=(Database&& other) noexcept;
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;
    ~Database();

    // Runs SQL that returns no rows ("BEGIN IMMEDIATE", "CREATE TABLE ...", "COMMIT").
    [[nodiscard]] Status exec(std::string_view sql) noexcept;
    // The error of the last failed call, as SQLite words it.
    [[nodiscard]] Error error(std::string_view doing) const;
    [[nodiscard]] sqlite3* handle() const noexcept { return db_; }

private:
    explicit Database(sqlite3* db) noexcept : db_(db) {}
    sqlite3* db_ = nullptr;
};

// The records of applied messages, in table shmbus_processed of the application's database.
class SqliteStore final : public ProcessedStore {
public:
    // Creates the table if needed. The store uses `db` (and must not outlive it): the work an
    // IdempotentConsumer runs writes through the same connection, inside the same transaction.
    [[nodiscard]] static Result<SqliteStore> attach(Database& db) noexcept;
    [[nodiscard]] Status begin() noexcept override;
    [[nodiscard]] Result<bool> record(std::string_view consumer, const MessageKey& key) noexcept override;
    [[nodiscard]] Status commit() noexcept override;
    void rollback() noexcept override;
    // Deletes the records of messages applied more than `age` ago (they will not come again once
    // their topic's retention has passed them). Returns how many went.
    [[nodiscard]] Result<uint64_t> forget_older_than(std::chrono::seconds age) noexcept;

private:
    explicit SqliteStore(Database& db) noexcept : db_(&db) {}
    Database* db_;
    bool open_ = false;  // a transaction of ours is open
};

// Outgoing messages, in table shmbus_outbox of the application's database.
class Outbox {
public:
    [[nodiscard]] static Result<Outbox> attach(Database& db) noexcept;
    // Adds a message for `topic`: call it inside the transaction that writes the business rows, so
    // that the message exists exactly when they do.
    [[nodiscard]] Status add(std::string_view topic, std::span<const std::byte> payload,
                             std::span<const Header> headers = {}) noexcept;
    [[nodiscard]] Status add(std::string_view topic, std::string_view payload, std::span<const Header> headers = {}) noexcept;
    // Rows not yet relayed.
    [[nodiscard]] Result<uint64_t> pending() noexcept;

private:
    explicit Outbox(Database& db) noexcept : db_(&db) {}
    Database* db_;
};

// Publishes the outbox, in row order, as the named producer `producer` on each row's topic.
class OutboxRelay {
public:
    OutboxRelay(Database& db, Client& client, std::string producer) noexcept;
    // Publishes up to `max` unsent rows and deletes them; returns how many were published (a row
    // the topic already had counts too: it is deleted without a second copy). Stops at the first
    // row that cannot be published now (a full topic), returning what went before it.
    [[nodiscard]] Result<uint64_t> relay(uint64_t max = 256) noexcept;

private:
    Result<Publisher*> publisher_for(const std::string& topic) noexcept;
    Database& db_;
    Client& client_;
    std::string producer_;
    std::map<std::string, Publisher> publishers_;
};

}  // namespace shmbus::sqlite
