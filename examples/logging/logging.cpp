// Logging and monitoring: many applications ship log lines to one topic; one aggregator (a durable
// subscription) counts them per application and level into SQLite, exactly once. Its lag is what
// `shmbus topic info logs` and bus-top show for the subscription "aggregator".
//
//   logging app --name NAME --count N [--dir BUS] [--data DIR]   ship N lines as NAME (again: only missing ones)
//   logging aggregator [--dir BUS] [--data DIR]                  count until SIGTERM
//   logging check --count N --name A,B,... [--dir BUS] [--data DIR]   0: every line counted once; 1: not yet; 2: twice
//
// examples/logging/run.sh runs it all on a fresh bus.
#include <sstream>
#include <vector>

#include "../common/service.h"

namespace {

using examples::Args;

const char* level_of(uint64_t line) { return line % 10 == 0 ? "error" : line % 3 == 0 ? "warn" : "info"; }

int aggregator(const Args& a) {
    return examples::run_service(
        {"aggregator", "logs", false}, a,
        "CREATE TABLE IF NOT EXISTS counts (app TEXT NOT NULL, level TEXT NOT NULL, lines INTEGER NOT NULL,"
        " PRIMARY KEY (app, level))",
        [](shmbus::sqlite::Database& db, shmbus::sqlite::Outbox&, const shmbus::Message& m) -> shmbus::Status {
            const std::string level = level_of(uint64_t(examples::field(m.text(), "line")));
            // The key is the producer's name: the stamp says who shipped the line.
            return examples::exec_with(db,
                                       ("INSERT INTO counts VALUES (?1, '" + level + "', 1) ON CONFLICT (app, level) DO UPDATE SET lines = lines + 1").c_str(),
                                       m.producer);
        });
}

int check(const Args& a) {
    std::vector<std::string> apps;
    std::istringstream names(a.name);
    for (std::string n; std::getline(names, n, ',');) apps.push_back(n);
    auto db = shmbus::sqlite::Database::open(a.data_dir + "/aggregator.db");
    const bool has = db && examples::query_int(db->handle(), "SELECT count(*) FROM sqlite_master WHERE name = 'counts'") != 0;
    int worst = 0;
    for (const std::string& app : apps) {
        for (const char* level : {"info", "warn", "error"}) {
            int64_t expected = 0;
            for (uint64_t i = 1; i <= a.count; ++i) expected += std::string(level_of(i)) == level;
            const int64_t got = has ? examples::query_int(db->handle(), "SELECT lines FROM counts WHERE app = '" + app + "' AND level = '" + level + "'") : 0;
            worst = std::max(worst, examples::verdict((app + " " + level).c_str(), expected, std::min(got, expected), got > expected ? got - expected : 0));
        }
    }
    return worst;
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = examples::parse_args(argc, argv);
    if (a.role == "app")
        return examples::run_source(a.name, "logs", a, [&](uint64_t i) {
            return "line=" + std::to_string(i) + " level=" + level_of(i) + " app=" + a.name + " msg=request served";
        });
    if (a.role == "aggregator") return aggregator(a);
    if (a.role == "check") return check(a);
    std::fprintf(stderr, "usage: logging app|aggregator|check [--name NAME] [--count N] [--dir BUS] [--data DIR]\n");
    return 64;
}
