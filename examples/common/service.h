// What the exactly-once examples share: command-line settings, a client that waits for shmbusd,
// an SQLite database per service, and the loop of a service that consumes a topic, applies each
// message exactly once to its database (IdempotentConsumer) and relays what it wrote to its
// outbox. Header-only: each example is one program with one role per subcommand.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "shmbus/idempotent.h"
#include "shmbus/shmbus.h"
#include "shmbus/sqlite/exactly_once.h"

namespace examples {

// `prog ROLE [--dir BUS] [--data DIR] [--count N] [--name NAME]`; the bus directory defaults to
// $SHMBUS_DIR (the library's own default when unset), the data directory to the current one.
struct Args {
    std::string role;
    std::string bus_dir;
    std::string data_dir = ".";
    uint64_t count = 0;
    std::string name;
};

inline Args parse_args(int argc, char** argv) {
    Args a;
    if (argc > 1) a.role = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string_view flag = argv[i];
        if (flag == "--dir") a.bus_dir = argv[i + 1];
        else if (flag == "--data") a.data_dir = argv[i + 1];
        else if (flag == "--count") a.count = std::strtoull(argv[i + 1], nullptr, 10);
        else if (flag == "--name") a.name = argv[i + 1];
        else std::fprintf(stderr, "ignoring unknown option %s\n", argv[i]);
    }
    return a;
}

// SIGTERM and SIGINT end a service's loop after the message in hand.
inline std::atomic<bool>& stopping() {
    static std::atomic<bool> flag{false};
    return flag;
}
inline void stop_on_signals() {
    std::signal(SIGTERM, [](int) { stopping().store(true); });
    std::signal(SIGINT, [](int) { stopping().store(true); });
}

inline void die(std::string_view who, const shmbus::Error& e) {
    std::fprintf(stderr, "%.*s: %s\n", int(who.size()), who.data(), e.message.c_str());
    std::exit(1);
}

// Waits up to 30 s for shmbusd (it may be restarting).
inline shmbus::Client connect(const std::string& who, const Args& a) {
    shmbus::ClientOptions o;
    o.dir = a.bus_dir;
    o.name = who;
    o.connect_wait = std::chrono::seconds(30);
    o.timeout = std::chrono::seconds(30);
    auto c = shmbus::Client::connect(o);
    if (!c) die(who, c.error());
    return std::move(c.value());
}

inline shmbus::sqlite::Database open_db(const std::string& who, const Args& a, const std::string& schema) {
    auto db = shmbus::sqlite::Database::open(a.data_dir + "/" + who + ".db");
    if (!db) die(who, db.error());
    if (auto st = db->exec(schema); !st) die(who, st.error());
    return std::move(db.value());
}

// One integer from a query (0 when it returns no row).
inline int64_t query_int(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    int64_t v = 0;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

// A statement with one text parameter (the payload a message carried, say), run in the caller's
// transaction.
inline shmbus::Status exec_with(shmbus::sqlite::Database& db, const char* sql, std::string_view text) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db.handle(), sql, -1, &s, nullptr) != SQLITE_OK) return db.error(sql);
    sqlite3_bind_text(s, 1, text.data(), int(text.size()), SQLITE_TRANSIENT);
    const int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) return db.error(sql);
    return shmbus::ok_status();
}

// The integer after `key=` in a "k=v k=v" payload.
inline int64_t field(std::string_view text, std::string_view key) {
    const std::string pattern = std::string(key) + "=";
    for (std::size_t at = text.find(pattern); at != std::string_view::npos; at = text.find(pattern, at + 1))
        if (at == 0 || text[at - 1] == ' ') return std::strtoll(std::string(text.substr(at + pattern.size())).c_str(), nullptr, 10);
    return -1;
}

// A service: consumes `topic` (a group member, or a durable subscriber when `group` is false),
// applies each message with `work` in one transaction with its record, and relays its outbox
// (what `work` added to it) as the named producer `who`. Runs until SIGTERM.
struct ServiceSpec {
    std::string who;
    std::string topic;
    bool group = true;
    shmbus::GroupSettings settings{};
    shmbus::RateLimit rate{};  // a durable subscriber's own limit (a group's is in its settings)
};
using Work = std::function<shmbus::Status(shmbus::sqlite::Database&, shmbus::sqlite::Outbox&, const shmbus::Message&)>;

inline int run_service(const ServiceSpec& spec, const Args& a, const std::string& schema, const Work& work) {
    stop_on_signals();
    auto client = connect(spec.who, a);
    auto db = open_db(spec.who, a, schema);
    auto store = shmbus::sqlite::SqliteStore::attach(db);
    if (!store) die(spec.who, store.error());
    auto outbox = shmbus::sqlite::Outbox::attach(db);
    if (!outbox) die(spec.who, outbox.error());
    shmbus::sqlite::OutboxRelay relay(db, client, spec.who);
    shmbus::IdempotentConsumer consumer(*store, spec.who);
    shmbus::SubscribeOptions o;
    (spec.group ? o.group : o.durable_name) = spec.who;
    o.group_settings = spec.settings;
    o.rate = spec.rate;
    o.from = shmbus::StartFrom::earliest;  // a new group or subscription starts at the topic's start
    o.auto_ack = false;
    auto sub = client.subscribe(spec.topic, o);
    if (!sub) die(spec.who, sub.error());
    (void)relay.relay();  // what an earlier life committed and did not relay
    while (!stopping().load()) {
        const auto r = sub->receive([&](const shmbus::Message& m) {
            auto done = consumer.handle(*sub, m, [&] { return work(db, *outbox, m); });
            if (!done) std::fprintf(stderr, "%s: message %llu: %s\n", spec.who.c_str(), (unsigned long long)m.id, done.error().message.c_str());
        }, std::chrono::milliseconds(100), 16);
        if (r.status == shmbus::ReceiveStatus::corrupt || r.status == shmbus::ReceiveStatus::deleted) return 1;
        if (auto sent = relay.relay(); !sent) std::fprintf(stderr, "%s: relay: %s\n", spec.who.c_str(), sent.error().message.c_str());
    }
    return 0;
}

// Publishes `count` messages as the named producer `who` (message i has sequence i), skipping
// those an earlier run published: run it again after a crash and only the missing ones go.
inline int run_source(const std::string& who, const std::string& topic, const Args& a,
                      const std::function<std::string(uint64_t)>& message) {
    auto client = connect(who, a);
    shmbus::PublisherOptions o;
    o.producer = who;
    auto pub = client.publisher(topic, o);
    if (!pub) die(who, pub.error());
    for (uint64_t i = pub->last_sequence() + 1; i <= a.count; ++i) {
        const auto st = pub->publish_sequence(i, message(i));
        if (st != shmbus::PublishStatus::ok && st != shmbus::PublishStatus::duplicate) {
            std::fprintf(stderr, "%s: publish %llu: %s\n", who.c_str(), (unsigned long long)i, shmbus::to_string(st));
            return 1;
        }
    }
    return 0;
}

// Every message of `topic` from the start, without joining anything durable.
inline void read_topic(shmbus::Client& client, const std::string& topic, const std::function<void(const shmbus::Message&)>& each) {
    shmbus::SubscribeOptions o;
    o.from = shmbus::StartFrom::earliest;
    auto sub = client.subscribe(topic, o);
    if (!sub) return;  // no such topic yet: nothing in it
    while (sub->poll([&](const shmbus::Message& m) { each(m); }, 256).status == shmbus::ReceiveStatus::ok) {
    }
}

// The verdict of a `check` role: 0 all done exactly once, 1 not done yet, 2 something applied twice.
inline int verdict(const char* what, int64_t expected, int64_t done, int64_t duplicated) {
    std::printf("%s: %lld of %lld, %lld applied more than once\n", what, (long long)done, (long long)expected, (long long)duplicated);
    return duplicated != 0 ? 2 : done < expected ? 1 : 0;
}

}  // namespace examples
