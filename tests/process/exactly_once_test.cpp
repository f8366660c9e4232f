// Exactly once with SQLite against a real shmbusd: an IdempotentConsumer applies each message once
// however often it is delivered (a consumer that died between its commit and its ack, a group
// redelivery, a republished message), a failed work leaves nothing behind, and the outbox relay
// publishes each row once even when it died between its publish and its delete.
#include <sqlite3.h>

#include "bus_fixture.h"
#include "shmbus/idempotent.h"
#include "shmbus/sqlite/exactly_once.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

class ExactlyOnce : public BusTest {
protected:
    sqlite::Database open_db(const std::string& name) {
        auto db = sqlite::Database::open(path(name));
        EXPECT_TRUE(db) << db.error().message;
        EXPECT_TRUE(db->exec("CREATE TABLE IF NOT EXISTS applied (payload TEXT)"));
        return std::move(db.value());
    }
    static int64_t count(sqlite::Database& db, const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        EXPECT_EQ(sqlite3_prepare_v2(db.handle(), sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
        EXPECT_EQ(sqlite3_step(s), SQLITE_ROW);
        const int64_t n = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        return n;
    }
    static Status insert_applied(sqlite::Database& db, const Message& m) {
        return db.exec("INSERT INTO applied VALUES ('" + std::string(m.text()) + "')");
    }
    static SubscribeOptions durable(const char* name) {
        SubscribeOptions o;
        o.durable_name = name;
        o.from = StartFrom::earliest;
        o.auto_ack = false;
        return o;
    }
};

// A consumer killed after its commit and before its ack gets the messages again: they are duplicates.
TEST_F(ExactlyOnce, ACommitWithoutItsAckIsADuplicateOnRedelivery) {
    auto c = connect();
    auto pub = c->publisher("t");
    for (int i = 0; i < 20; ++i) ASSERT_EQ(pub->publish("m" + std::to_string(i)), PublishStatus::ok);
    auto db = open_db("a.db");
    auto store = sqlite::SqliteStore::attach(db);
    ASSERT_TRUE(store);
    IdempotentConsumer consumer(*store, "d");
    {
        auto sub = c->subscribe("t", durable("d"));
        ASSERT_TRUE(sub);
        int n = 0;
        (void)sub->poll([&](const Message& m) {  // applied, never acked: the process "died" here
            if (n++ < 12) {
                EXPECT_EQ(*consumer.process("t", m, [&] { return insert_applied(db, m); }), Processed::applied);
            }
        }, 12);
    }
    auto sub = c->subscribe("t", durable("d"));
    std::map<Processed, int> outcomes;
    while (sub->poll([&](const Message& m) { ++outcomes[*consumer.handle(*sub, m, [&] { return insert_applied(db, m); })]; }, 64)
               .status == ReceiveStatus::ok) {
    }
    EXPECT_EQ(outcomes[Processed::duplicate], 12);
    EXPECT_EQ(outcomes[Processed::applied], 8);
    EXPECT_EQ(count(db, "SELECT count(*) FROM applied"), 20);
    EXPECT_EQ(count(db, "SELECT count(DISTINCT payload) FROM applied"), 20);
    const auto st = c->topic_stats("t");
    ASSERT_TRUE(st);
    for (const auto& s : st->subscriptions) {
        if (s.name == "d") {
            EXPECT_EQ(s.lag, 0u);  // all acked
        }
    }
}

// A failed work rolls back everything, its record included; a group member nacks it, and the
// next delivery applies it.
TEST_F(ExactlyOnce, AFailedWorkLeavesNothingAndIsDeliveredAgain) {
    auto c = connect();
    auto pub = c->publisher("t");
    ASSERT_EQ(pub->publish("x"), PublishStatus::ok);
    auto db = open_db("b.db");
    auto store = sqlite::SqliteStore::attach(db);
    IdempotentConsumer consumer(*store, "g");
    SubscribeOptions o;
    o.group = "g";
    o.from = StartFrom::earliest;
    o.auto_ack = false;
    o.group_settings.backoff_initial = 1ms;
    auto member = c->subscribe("t", o);
    ASSERT_TRUE(member) << member.error().message;
    std::vector<Processed> seen;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (seen.size() < 2 && std::chrono::steady_clock::now() < deadline) {
        (void)member->receive([&](const Message& m) {
            auto r = consumer.handle(*member, m, [&]() -> Status {
                if (auto st = insert_applied(db, m); !st) return st;
                if (m.attempt == 1) return make_error(Errc::io_error, "provider down");  // after a write: it must roll back
                return ok_status();
            });
            seen.push_back(*r);
        }, 100ms);
    }
    ASSERT_EQ(seen, (std::vector<Processed>{Processed::failed, Processed::applied}));
    EXPECT_EQ(consumer.last_error().message, "provider down");
    EXPECT_EQ(count(db, "SELECT count(*) FROM applied"), 1);
    EXPECT_EQ(count(db, "SELECT count(*) FROM shmbus_processed"), 1);
}

// A named producer's message published twice under two ids is one message to the consumer.
TEST_F(ExactlyOnce, TheSameProducerSequenceUnderAnotherIdIsADuplicate) {
    auto c = connect();
    auto db = open_db("c.db");
    auto store = sqlite::SqliteStore::attach(db);
    IdempotentConsumer consumer(*store, "d");
    Message first;
    first.id = 7;
    first.producer = "shop";
    first.sequence = 3;
    Message again = first;
    again.id = 19;  // republished (the topic was made again after a reboot, say)
    EXPECT_EQ(*consumer.process("t", first, [] { return ok_status(); }), Processed::applied);
    EXPECT_EQ(*consumer.process("t", again, [] { return ok_status(); }), Processed::duplicate);
    Message other;
    other.id = 7;  // an anonymous message with the same id: another key
    EXPECT_EQ(*consumer.process("t", other, [] { return ok_status(); }), Processed::applied);
    IdempotentConsumer second(*store, "another-consumer");
    EXPECT_EQ(*second.process("t", first, [] { return ok_status(); }), Processed::applied);
    auto forgotten = store->forget_older_than(0s);
    ASSERT_TRUE(forgotten);
    EXPECT_EQ(*forgotten, 3u);
}

// Business rows and messages commit together; a relay that died after publishing, before deleting
// its rows, publishes them again and the topic keeps one copy of each.
TEST_F(ExactlyOnce, TheOutboxPublishesEachCommittedRowOnce) {
    auto c = connect();
    auto db = open_db("shop.db");
    auto outbox = sqlite::Outbox::attach(db);
    ASSERT_TRUE(outbox);
    for (int i = 1; i <= 5; ++i) {
        ASSERT_TRUE(db.exec("BEGIN IMMEDIATE"));
        ASSERT_TRUE(db.exec("INSERT INTO applied VALUES ('order " + std::to_string(i) + "')"));
        const std::string order = std::to_string(i);
        const Header h[] = {{"order", order}};
        ASSERT_TRUE(outbox->add("orders", "placed " + std::to_string(i), h));
        ASSERT_TRUE(db.exec(i == 3 ? "ROLLBACK" : "COMMIT"));  // order 3 never happened
    }
    EXPECT_EQ(*outbox->pending(), 4u);
    {
        // The relay of an earlier life published rows 1 and 2, then died before deleting them.
        PublisherOptions o;
        o.producer = "shop-outbox";
        auto earlier = c->publisher("orders", o);
        ASSERT_EQ(earlier->publish_sequence(1, "placed 1"), PublishStatus::ok);
        ASSERT_EQ(earlier->publish_sequence(2, "placed 2"), PublishStatus::ok);
    }
    sqlite::OutboxRelay relay(db, *c, "shop-outbox");
    auto sent = relay.relay();
    ASSERT_TRUE(sent) << sent.error().message;
    EXPECT_EQ(*sent, 4u);
    EXPECT_EQ(*outbox->pending(), 0u);
    EXPECT_EQ(*relay.relay(), 0u);
    SubscribeOptions from;
    from.from = StartFrom::earliest;
    auto sub = c->subscribe("orders", from);
    std::vector<std::pair<uint64_t, std::string>> seen;
    std::vector<std::string> order_headers;
    while (sub->poll([&](const Message& m) {
               seen.emplace_back(m.sequence, std::string(m.text()));
               if (auto h = m.headers.get("order")) order_headers.emplace_back(*h);
           }, 64).status == ReceiveStatus::ok) {
    }
    EXPECT_EQ(seen, (std::vector<std::pair<uint64_t, std::string>>{
                        {1, "placed 1"}, {2, "placed 2"}, {3, "placed 4"}, {4, "placed 5"}}));  // the rolled-back row took no id
    EXPECT_EQ(order_headers, (std::vector<std::string>{"4", "5"}));  // rows 1, 2 came from the earlier life
    EXPECT_FALSE(outbox->add("no such topic!", "x"));
}

}  // namespace
}  // namespace shmbus::test
