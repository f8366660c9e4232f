#include "shmbus/sqlite/exactly_once.h"

#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

namespace shmbus::sqlite {
namespace {

// One prepared statement, finalized when it goes.
class Statement {
public:
    Statement(sqlite3* db, std::string_view sql) noexcept {
        if (sqlite3_prepare_v2(db, sql.data(), int(sql.size()), &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
    }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    ~Statement() { sqlite3_finalize(stmt_); }
    [[nodiscard]] bool ok() const noexcept { return stmt_ != nullptr; }
    void bind(int i, std::string_view text) noexcept { sqlite3_bind_text(stmt_, i, text.data(), int(text.size()), SQLITE_TRANSIENT); }
    void bind(int i, std::span<const std::byte> blob) noexcept {
        sqlite3_bind_blob(stmt_, i, blob.data(), int(blob.size()), SQLITE_TRANSIENT);
    }
    void bind(int i, int64_t v) noexcept { sqlite3_bind_int64(stmt_, i, v); }
    [[nodiscard]] int step() noexcept { return sqlite3_step(stmt_); }
    [[nodiscard]] int64_t integer(int col) noexcept { return sqlite3_column_int64(stmt_, col); }
    [[nodiscard]] std::string text(int col) {
        const auto* p = sqlite3_column_text(stmt_, col);
        return p ? std::string(reinterpret_cast<const char*>(p), std::size_t(sqlite3_column_bytes(stmt_, col))) : std::string();
    }
    [[nodiscard]] std::vector<std::byte> blob(int col) {
        const auto* p = static_cast<const std::byte*>(sqlite3_column_blob(stmt_, col));
        return p ? std::vector<std::byte>(p, p + sqlite3_column_bytes(stmt_, col)) : std::vector<std::byte>();
    }

private:
    sqlite3_stmt* stmt_ = nullptr;
};

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The headers an outbox row keeps, as the block encode_headers() writes (length prefix first).
std::vector<Header> decode_headers(std::span<const std::byte> block) {
    std::vector<Header> out;
    if (block.size() < 4) return out;
    for (const Header& h : Headers(block.subspan(4))) out.push_back(h);
    return out;
}

}  // namespace

// ---- Database ----

Result<Database> Database::open(const std::string& path) noexcept {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
    Database out(db);
    if (rc != SQLITE_OK) return out.error("opening " + path);
    sqlite3_busy_timeout(db, 30'000);
    if (auto st = out.exec("PRAGMA journal_mode=WAL"); !st) return st.error();
    if (auto st = out.exec("PRAGMA synchronous=FULL"); !st) return st.error();
    return out;
}

Database::Database(Database&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
Database& Database::operator=(Database&& other) noexcept {
    if (this != &other) {
        sqlite3_close_v2(db_);
        db_ = std::exchange(other.db_, nullptr);
    }
    return *this;
}
Database::~Database() { sqlite3_close_v2(db_); }

Status Database::exec(std::string_view sql) noexcept {
    const std::string text(sql);
    if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) return error(text);
    return ok_status();
}

Error Database::error(std::string_view doing) const {
    const int code = db_ != nullptr ? sqlite3_errcode(db_) : SQLITE_NOMEM;
    const Errc errc = code == SQLITE_BUSY || code == SQLITE_LOCKED ? Errc::busy
                      : code == SQLITE_FULL                         ? Errc::no_space
                      : code == SQLITE_PERM || code == SQLITE_READONLY || code == SQLITE_CANTOPEN ? Errc::permission_denied
                                                                                                  : Errc::io_error;
    return make_error(errc, "sqlite: " + std::string(doing) + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory"));
}

// ---- SqliteStore ----

Result<SqliteStore> SqliteStore::attach(Database& db) noexcept {
    if (auto st = db.exec("CREATE TABLE IF NOT EXISTS shmbus_processed ("
                          " consumer TEXT NOT NULL, topic TEXT NOT NULL, message TEXT NOT NULL,"
                          " applied_ns INTEGER NOT NULL, PRIMARY KEY (consumer, topic, message)) WITHOUT ROWID");
        !st)
        return st.error();
    return SqliteStore(db);
}

Status SqliteStore::begin() noexcept {
    // IMMEDIATE: takes the write lock now, so the transaction never fails to upgrade halfway.
    if (auto st = db_->exec("BEGIN IMMEDIATE"); !st) return st;
    open_ = true;
    return ok_status();
}

Result<bool> SqliteStore::record(std::string_view consumer, const MessageKey& key) noexcept {
    Statement s(db_->handle(), "INSERT OR IGNORE INTO shmbus_processed VALUES (?1, ?2, ?3, ?4)");
    if (!s.ok()) return db_->error("recording a message");
    s.bind(1, consumer);
    s.bind(2, key.topic);
    s.bind(3, key.key);
    s.bind(4, now_ns());
    if (s.step() != SQLITE_DONE) return db_->error("recording a message");
    return sqlite3_changes(db_->handle()) == 1;
}

Status SqliteStore::commit() noexcept {
    if (auto st = db_->exec("COMMIT"); !st) return st;
    open_ = false;
    return ok_status();
}

void SqliteStore::rollback() noexcept {
    if (!std::exchange(open_, false)) return;
    if (sqlite3_get_autocommit(db_->handle()) == 0) (void)db_->exec("ROLLBACK");
}

Result<uint64_t> SqliteStore::forget_older_than(std::chrono::seconds age) noexcept {
    Statement s(db_->handle(), "DELETE FROM shmbus_processed WHERE applied_ns < ?1");
    if (!s.ok()) return db_->error("forgetting old records");
    s.bind(1, now_ns() - std::chrono::duration_cast<std::chrono::nanoseconds>(age).count());
    if (s.step() != SQLITE_DONE) return db_->error("forgetting old records");
    return uint64_t(sqlite3_changes(db_->handle()));
}

// ---- Outbox ----

Result<Outbox> Outbox::attach(Database& db) noexcept {
    // AUTOINCREMENT: a row id is never given out twice, even after the rows before it were
    // relayed and deleted, so it can serve as the producer's sequence.
    if (auto st = db.exec("CREATE TABLE IF NOT EXISTS shmbus_outbox ("
                          " id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,"
                          " headers BLOB, added_ns INTEGER NOT NULL)");
        !st)
        return st.error();
    return Outbox(db);
}

Status Outbox::add(std::string_view topic, std::span<const std::byte> payload, std::span<const Header> headers) noexcept {
    if (auto st = validate_topic_name(topic); !st) return st;
    if (auto st = validate_headers(headers); !st) return st;
    std::vector<std::byte> block(encoded_headers_size(headers));
    if (!block.empty()) encode_headers(headers, block.data());
    Statement s(db_->handle(), "INSERT INTO shmbus_outbox (topic, payload, headers, added_ns) VALUES (?1, ?2, ?3, ?4)");
    if (!s.ok()) return db_->error("adding to the outbox");
    s.bind(1, topic);
    s.bind(2, payload);
    s.bind(3, std::span<const std::byte>(block));
    s.bind(4, now_ns());
    if (s.step() != SQLITE_DONE) return db_->error("adding to the outbox");
    return ok_status();
}

Status Outbox::add(std::string_view topic, std::string_view payload, std::span<const Header> headers) noexcept {
    return add(topic, std::as_bytes(std::span<const char>(payload.data(), payload.size())), headers);
}

Result<uint64_t> Outbox::pending() noexcept {
    Statement s(db_->handle(), "SELECT count(*) FROM shmbus_outbox");
    if (!s.ok() || s.step() != SQLITE_ROW) return db_->error("counting the outbox");
    return uint64_t(s.integer(0));
}

// ---- OutboxRelay ----

OutboxRelay::OutboxRelay(Database& db, Client& client, std::string producer) noexcept
    : db_(db), client_(client), producer_(std::move(producer)) {}

Result<Publisher*> OutboxRelay::publisher_for(const std::string& topic) noexcept {
    if (auto it = publishers_.find(topic); it != publishers_.end()) return &it->second;
    PublisherOptions o;
    o.producer = producer_;
    o.block_timeout = std::chrono::seconds(0);  // a full topic stops the relay; it tries again later
    auto p = client_.publisher(topic, o);
    if (!p) return p.error();
    return &publishers_.emplace(topic, std::move(p.value())).first->second;
}

Result<uint64_t> OutboxRelay::relay(uint64_t max) noexcept {
    struct Row {
        int64_t id;
        std::string topic;
        std::vector<std::byte> payload, headers;
    };
    std::vector<Row> rows;
    {
        Statement s(db_.handle(), "SELECT id, topic, payload, headers FROM shmbus_outbox ORDER BY id LIMIT ?1");
        if (!s.ok()) return db_.error("reading the outbox");
        s.bind(1, int64_t(max));
        int rc = 0;
        while ((rc = s.step()) == SQLITE_ROW) rows.push_back({s.integer(0), s.text(1), s.blob(2), s.blob(3)});
        if (rc != SQLITE_DONE) return db_.error("reading the outbox");
    }
    uint64_t sent = 0;
    for (const Row& row : rows) {
        auto pub = publisher_for(row.topic);
        if (!pub) return sent != 0 ? Result<uint64_t>(sent) : Result<uint64_t>(pub.error());
        const std::vector<Header> headers = decode_headers(row.headers);
        const PublishStatus st = (*pub)->publish_sequence(uint64_t(row.id), row.payload, headers);
        if (st != PublishStatus::ok && st != PublishStatus::duplicate) {
            if (sent != 0) return sent;
            return make_error(st == PublishStatus::too_large ? Errc::message_too_large : Errc::busy,
                              "outbox row " + std::to_string(row.id) + " for '" + row.topic + "' not published: " + to_string(st));
        }
        // Published (now or by an earlier relay that died before this delete): the row goes.
        Statement del(db_.handle(), "DELETE FROM shmbus_outbox WHERE id = ?1");
        if (!del.ok()) return db_.error("deleting a relayed row");
        del.bind(1, row.id);
        if (del.step() != SQLITE_DONE) return db_.error("deleting a relayed row");
        ++sent;
    }
    return sent;
}

}  // namespace shmbus::sqlite
