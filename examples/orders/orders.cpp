// Order processing, exactly once: a shop places orders; inventory, payment and shipping are work
// queues (consumer groups), each with its own SQLite database. Every service applies a message
// and writes its outgoing message to its outbox in one transaction, acks after the commit, and
// relays the outbox as an idempotent producer. The payment provider is flaky: some orders need
// retries (with backoff), some are declined for good and end in the dead-letter topic.
//
//   orders shop      --count N [--dir BUS] [--data DIR]   place orders 1..N (again: only missing ones)
//   orders inventory | payment | shipping [--dir BUS] [--data DIR]   run a service until SIGTERM
//   orders check     --count N [--dir BUS] [--data DIR]   0: every order reserved, charged and shipped
//                    exactly once, or dead-lettered with its reason; 1: not yet; 2: something twice
//
// examples/orders/run.sh runs it all on a fresh bus.
#include <set>

#include "../common/service.h"

namespace {

using examples::Args;
using shmbus::Status;

constexpr const char* kServiceSchema =
    "CREATE TABLE IF NOT EXISTS effects (order_id INTEGER NOT NULL, amount INTEGER NOT NULL)";

// The payment provider: order numbers ending in 3 time out twice before going through; every 25th
// order's card is declined, always.
Status charge_card(int64_t order, uint32_t attempt) {
    if (order % 25 == 0) return shmbus::make_error(shmbus::Errc::invalid_argument, "card declined");
    if (order % 10 == 3 && attempt <= 2) return shmbus::make_error(shmbus::Errc::timed_out, "gateway timeout");
    return shmbus::ok_status();
}

int64_t amount_of(int64_t order) { return 1000 + order * 7 % 5000; }

std::string order_text(int64_t order) {
    return "order=" + std::to_string(order) + " amount=" + std::to_string(amount_of(order));
}

// One stage: record the effect (a reservation, a charge, a shipment) and pass the order on.
examples::Work stage(const char* next_topic, bool pays) {
    return [next_topic, pays](shmbus::sqlite::Database& db, shmbus::sqlite::Outbox& outbox, const shmbus::Message& m) -> Status {
        const int64_t order = examples::field(m.text(), "order");
        if (order <= 0) return shmbus::make_error(shmbus::Errc::invalid_argument, "not an order: " + std::string(m.text()));
        if (pays)
            if (auto st = charge_card(order, m.attempt); !st) return st;
        if (auto st = db.exec("INSERT INTO effects VALUES (" + std::to_string(order) + ", " + std::to_string(amount_of(order)) + ")"); !st)
            return st;
        if (next_topic == nullptr) return shmbus::ok_status();
        return outbox.add(next_topic, order_text(order));
    };
}

int shop(const Args& a) {
    auto client = examples::connect("shop", a);
    auto db = examples::open_db("shop", a, "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, amount INTEGER)");
    auto outbox = shmbus::sqlite::Outbox::attach(db);
    if (!outbox) examples::die("shop", outbox.error());
    for (uint64_t order = 1; order <= a.count; ++order) {
        // The order and its message commit together: an order that exists is always announced.
        if (auto st = db.exec("BEGIN IMMEDIATE"); !st) examples::die("shop", st.error());
        if (auto st = db.exec("INSERT OR IGNORE INTO orders VALUES (" + std::to_string(order) + ", " +
                              std::to_string(amount_of(int64_t(order))) + ")");
            !st)
            examples::die("shop", st.error());
        const bool placed = sqlite3_changes(db.handle()) == 1;
        if (placed)
            if (auto st = outbox->add("orders.placed", order_text(int64_t(order))); !st) examples::die("shop", st.error());
        if (auto st = db.exec("COMMIT"); !st) examples::die("shop", st.error());
    }
    shmbus::sqlite::OutboxRelay relay(db, client, "shop");
    for (;;) {
        auto sent = relay.relay();
        if (!sent) examples::die("shop", sent.error());
        if (*sent == 0) return 0;
    }
}

shmbus::GroupSettings payment_settings() {
    shmbus::GroupSettings s;
    s.max_deliveries = 4;  // then orders.reserved.dlq, with the provider's reason
    s.backoff_initial = std::chrono::milliseconds(5);
    s.backoff_max = std::chrono::milliseconds(50);
    s.visibility = std::chrono::seconds(5);
    return s;
}

shmbus::GroupSettings stage_settings() {
    shmbus::GroupSettings s;
    s.visibility = std::chrono::seconds(5);  // a member killed mid-order: its orders go to another after this
    return s;
}

// Rows per order in a service's database: done = orders with a row, twice = orders with more.
struct Tally {
    int64_t done = 0, twice = 0;
};
Tally tally(const Args& a, const std::string& service) {
    auto db = shmbus::sqlite::Database::open(a.data_dir + "/" + service + ".db");
    if (!db) return {};
    const char* exists = "SELECT count(*) FROM sqlite_master WHERE name = 'effects'";
    if (examples::query_int(db->handle(), exists) == 0) return {};
    return {examples::query_int(db->handle(), "SELECT count(DISTINCT order_id) FROM effects"),
            examples::query_int(db->handle(), "SELECT count(*) FROM (SELECT order_id FROM effects GROUP BY order_id HAVING count(*) > 1)")};
}

int check(const Args& a) {
    auto client = examples::connect("check", a);
    const auto n = int64_t(a.count);
    const int64_t declined = n / 25;
    std::set<int64_t> dead;
    bool reasons_ok = true;
    examples::read_topic(client, "orders.reserved.dlq", [&](const shmbus::Message& m) {
        dead.insert(examples::field(m.text(), "order"));
        reasons_ok = reasons_ok && m.headers.get(shmbus::kDeadLetterReason).value_or("") == "card declined";
    });
    int worst = 0;
    auto note = [&](int v) { worst = std::max(worst, v); };
    note(examples::verdict("reserved", n, tally(a, "inventory").done, tally(a, "inventory").twice));
    note(examples::verdict("charged", n - declined, tally(a, "payment").done, tally(a, "payment").twice));
    note(examples::verdict("shipped", n - declined, tally(a, "shipping").done, tally(a, "shipping").twice));
    std::printf("dead-lettered: %zu of %lld (card declined)\n", dead.size(), (long long)declined);
    for (int64_t order : dead)
        if (order % 25 != 0 || !reasons_ok) return 2;  // only declined cards may end there, with that reason
    if (int64_t(dead.size()) < declined) note(1);
    return worst;
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = examples::parse_args(argc, argv);
    const std::string schema = kServiceSchema;
    if (a.role == "shop") return shop(a);
    if (a.role == "inventory") return examples::run_service({"inventory", "orders.placed", true, stage_settings()}, a, schema, stage("orders.reserved", false));
    if (a.role == "payment") return examples::run_service({"payment", "orders.reserved", true, payment_settings()}, a, schema, stage("orders.charged", true));
    if (a.role == "shipping") return examples::run_service({"shipping", "orders.charged", true, stage_settings()}, a, schema, stage(nullptr, false));
    if (a.role == "check") return check(a);
    std::fprintf(stderr, "usage: orders shop|inventory|payment|shipping|check [--count N] [--dir BUS] [--data DIR]\n");
    return 64;
}
