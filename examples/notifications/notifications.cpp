// Notifications, paced: every event goes to an email sender and an SMS sender, each a consumer
// group with a rate limit (the providers allow only so many calls a second). The providers fail
// now and then; a failed send is retried after a backoff, and each notification is sent exactly
// once per channel (recorded in the sender's SQLite database with the send itself).
//
//   notifications events --count N [--dir BUS] [--data DIR]   publish events 1..N (again: only missing ones)
//   notifications email | sms [--dir BUS] [--data DIR]          run a sender until SIGTERM
//   notifications check --count N [--dir BUS] [--data DIR]    0: each sent once per channel; 1: not yet; 2: twice
//
// examples/notifications/run.sh runs it all on a fresh bus.
#include "../common/service.h"

namespace {

using examples::Args;

// A provider that fails one call in seven, by the notification and attempt (so a retry may pass).
shmbus::Status provider_call(const std::string& channel, int64_t event, uint32_t attempt) {
    const uint64_t h = std::hash<std::string>{}(channel + "/" + std::to_string(event) + "/" + std::to_string(attempt));
    if (h % 7 == 0) return shmbus::make_error(shmbus::Errc::timed_out, channel + " provider: 503 service unavailable");
    return shmbus::ok_status();
}

int sender(const Args& a, const std::string& channel, double per_second) {
    shmbus::GroupSettings s;
    s.rate = {per_second, 20};           // the provider's quota, shared by every member of the group
    s.max_deliveries = 0;                // a transient failure: retry until it goes through
    s.backoff_initial = std::chrono::milliseconds(2);
    s.backoff_max = std::chrono::milliseconds(40);
    s.visibility = std::chrono::seconds(5);
    return examples::run_service({channel, "notifications", true, s}, a,
                                 "CREATE TABLE IF NOT EXISTS sent (event INTEGER NOT NULL, text TEXT NOT NULL)",
                                 [channel](shmbus::sqlite::Database& db, shmbus::sqlite::Outbox&, const shmbus::Message& m) -> shmbus::Status {
                                     const int64_t event = examples::field(m.text(), "event");
                                     if (auto st = provider_call(channel, event, m.attempt); !st) return st;
                                     return examples::exec_with(db, ("INSERT INTO sent VALUES (" + std::to_string(event) + ", ?1)").c_str(), m.text());
                                 });
}

int check(const Args& a) {
    int worst = 0;
    for (const char* channel : {"email", "sms"}) {
        auto db = shmbus::sqlite::Database::open(a.data_dir + "/" + channel + ".db");
        int64_t done = 0, twice = 0;
        if (db && examples::query_int(db->handle(), "SELECT count(*) FROM sqlite_master WHERE name = 'sent'") != 0) {
            done = examples::query_int(db->handle(), "SELECT count(DISTINCT event) FROM sent");
            twice = examples::query_int(db->handle(), "SELECT count(*) FROM (SELECT event FROM sent GROUP BY event HAVING count(*) > 1)");
        }
        worst = std::max(worst, examples::verdict(channel, int64_t(a.count), done, twice));
    }
    return worst;
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = examples::parse_args(argc, argv);
    if (a.role == "events")
        return examples::run_source("events", "notifications", a, [](uint64_t i) {
            return "event=" + std::to_string(i) + " user=u" + std::to_string(i % 97) + " text=your order shipped";
        });
    if (a.role == "email") return sender(a, "email", 2000);
    if (a.role == "sms") return sender(a, "sms", 500);
    if (a.role == "check") return check(a);
    std::fprintf(stderr, "usage: notifications events|email|sms|check [--count N] [--dir BUS] [--data DIR]\n");
    return 64;
}
