// ETL, exactly once end to end: extract publishes raw records; transform (a durable subscription,
// so records arrive in order) cleans each one and publishes it as the idempotent producer
// "transform" with the raw record's sequence, so a record transformed again after a crash is a
// duplicate the topic refuses; load applies each clean record to a SQLite warehouse exactly once.
//
//   etl extract   --count N [--dir BUS] [--data DIR]   publish raw records 1..N (again: only missing ones)
//   etl transform | load [--dir BUS] [--data DIR]      run a stage until SIGTERM
//   etl check     --count N [--dir BUS] [--data DIR]   0: every record loaded once, cleaned; 1: not yet; 2: twice
//
// examples/etl/run.sh runs it all on a fresh bus.
#include <cctype>

#include "../common/service.h"

namespace {

using examples::Args;

std::string raw_record(uint64_t i) { return "record=" + std::to_string(i) + " name=  customer-" + std::to_string(i) + "  amount=" + std::to_string(i * 3) + ".50"; }

// Cents instead of a decimal, names trimmed and upper case.
std::string clean(std::string_view raw) {
    const int64_t record = examples::field(raw, "record");
    std::string name(raw.substr(raw.find("name=") + 5));
    name = name.substr(name.find_first_not_of(' '));
    name = name.substr(0, name.find(' '));
    for (char& ch : name) ch = char(std::toupper(static_cast<unsigned char>(ch)));
    const int64_t cents = examples::field(raw, "amount") * 100 + 50;
    return "record=" + std::to_string(record) + " name=" + name + " cents=" + std::to_string(cents);
}

int transform(const Args& a) {
    examples::stop_on_signals();
    auto client = examples::connect("transform", a);
    shmbus::SubscribeOptions o;
    o.durable_name = "transform";
    o.from = shmbus::StartFrom::earliest;
    o.auto_ack = false;
    auto sub = client.subscribe("etl.raw", o);
    if (!sub) examples::die("transform", sub.error());
    shmbus::PublisherOptions po;
    po.producer = "transform";
    auto pub = client.publisher("etl.clean", po);
    if (!pub) examples::die("transform", pub.error());
    while (!examples::stopping().load()) {
        (void)sub->receive([&](const shmbus::Message& m) {
            // Consumed and produced exactly once: the output carries the input's sequence, and a
            // repeat after a crash (published, not yet acked) is refused as a duplicate.
            const auto st = pub->publish_sequence(m.sequence, clean(m.text()));
            if (st == shmbus::PublishStatus::ok || st == shmbus::PublishStatus::duplicate) (void)sub->ack(m);
            else std::fprintf(stderr, "transform: %s\n", shmbus::to_string(st));
        }, std::chrono::milliseconds(100), 64);
    }
    return 0;
}

int load(const Args& a) {
    return examples::run_service({"load", "etl.clean", false}, a,
                                 "CREATE TABLE IF NOT EXISTS customers (record INTEGER NOT NULL, line TEXT NOT NULL)",
                                 [](shmbus::sqlite::Database& db, shmbus::sqlite::Outbox&, const shmbus::Message& m) {
                                     return examples::exec_with(db, ("INSERT INTO customers VALUES (" + std::to_string(examples::field(m.text(), "record")) + ", ?1)").c_str(), m.text());
                                 });
}

int check(const Args& a) {
    auto db = shmbus::sqlite::Database::open(a.data_dir + "/load.db");
    if (!db || examples::query_int(db->handle(), "SELECT count(*) FROM sqlite_master WHERE name = 'customers'") == 0)
        return examples::verdict("loaded", int64_t(a.count), 0, 0);
    // Cleaned as transform cleans: a row whose text differs was not transformed (or transformed wrong).
    int64_t wrong = 0;
    for (uint64_t i = 1; i <= a.count; ++i) {
        const std::string want = clean(raw_record(i));
        wrong += examples::query_int(db->handle(), "SELECT count(*) FROM customers WHERE record = " + std::to_string(i) + " AND line <> '" + want + "'");
    }
    if (wrong != 0) {
        std::printf("loaded: %lld rows not cleaned as expected\n", (long long)wrong);
        return 2;
    }
    return examples::verdict("loaded", int64_t(a.count), examples::query_int(db->handle(), "SELECT count(DISTINCT record) FROM customers"),
                             examples::query_int(db->handle(), "SELECT count(*) FROM (SELECT record FROM customers GROUP BY record HAVING count(*) > 1)"));
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = examples::parse_args(argc, argv);
    if (a.role == "extract") return examples::run_source("extract", "etl.raw", a, raw_record);
    if (a.role == "transform") return transform(a);
    if (a.role == "load") return load(a);
    if (a.role == "check") return check(a);
    std::fprintf(stderr, "usage: etl extract|transform|load|check [--count N] [--dir BUS] [--data DIR]\n");
    return 64;
}
