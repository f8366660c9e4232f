#include "recovery.h"

#include "harness.h"

#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shmbus/shmbus.h"

#ifndef SHMBUSD_PATH
#define SHMBUSD_PATH "shmbusd"
#endif

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double ms_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

// A private shmbusd in a fresh directory, so these benchmarks can kill and restart it.
class PrivateBus {
public:
    PrivateBus() {
        char tmpl[] = "/tmp/shmbus-bench-recovery-XXXXXX";
        dir_ = mkdtemp(tmpl) != nullptr ? tmpl : "";
    }
    ~PrivateBus() {
        if (auto c = connect())  // leave no segment behind
            if (auto names = c->list_topics())
                for (const auto& n : *names) (void)c->delete_topic(n);
        stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    // Starts shmbusd and waits until it answers; false if it does not within 10 s.
    bool start() {
        pid_ = fork();
        if (pid_ == 0) {
            const std::string log = dir_ + "/daemon.log";
            if (std::freopen(log.c_str(), "a", stdout) == nullptr) _exit(126);
            (void)!dup2(STDOUT_FILENO, STDERR_FILENO);
            execl(SHMBUSD_PATH, SHMBUSD_PATH, "--dir", dir_.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        const auto deadline = Clock::now() + 10s;
        while (Clock::now() < deadline) {
            if (connect()) return true;
            std::this_thread::sleep_for(100us);
        }
        return false;
    }
    void stop() {
        if (pid_ <= 0) return;
        kill(pid_, SIGTERM);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    [[nodiscard]] shmbus::Result<shmbus::Client> connect() const {
        shmbus::ClientOptions o;
        o.dir = dir_;
        o.name = "bench-recovery";
        return shmbus::Client::connect(o);
    }
    [[nodiscard]] const std::string& dir() const { return dir_; }
    // The daemon's own figure, from its last "re-adopted N topic(s) in X ms" line.
    [[nodiscard]] double logged_readopt_ms() const {
        std::ifstream in(dir_ + "/daemon.log");
        std::string line;
        double ms = 0;
        while (std::getline(in, line))
            if (auto at = line.find("topic(s) in "); at != std::string::npos) ms = std::atof(line.c_str() + at + 12);
        return ms;
    }

private:
    std::string dir_;
    pid_t pid_ = -1;
};

// Reports the samples (ms) as the iteration times, with their median, 90th percentile and max.
void report_ms(benchmark::State& state, std::vector<double> samples) {
    for (std::size_t i = 0; state.KeepRunning(); ++i)
        state.SetIterationTime(samples.empty() ? 0 : samples[std::min(i, samples.size() - 1)] / 1e3);
    if (samples.empty()) return;
    std::sort(samples.begin(), samples.end());
    state.counters["p50_ms"] = samples[samples.size() / 2];
    state.counters["p90_ms"] = samples[std::min(samples.size() - 1, samples.size() * 9 / 10)];
    state.counters["max_ms"] = samples.back();
}

// A child that registers with shmbusd, does `hold` (claim a message, or subscribe), reports
// that it is ready through a pipe, then waits to be killed.
template <class Hold>
pid_t start_victim(const PrivateBus& bus, Hold hold) {
    int ready[2];
    if (pipe(ready) != 0) return -1;
    const pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        auto client = bus.connect();
        if (!client || !hold(*client)) _exit(2);
        (void)!write(ready[1], "r", 1);
        for (;;) pause();
    }
    close(ready[1]);
    char c = 0;
    const bool ok = read(ready[0], &c, 1) == 1;
    close(ready[0]);
    if (!ok) {
        waitpid(pid, nullptr, 0);
        return -1;
    }
    return pid;
}

// SIGKILL to a publisher holding an uncommitted message → a reader waiting behind it has the
// next message. The daemon sees the death as its control socket closing, seals the claim as a
// skip record and wakes the reader.
void publisher_death_to_readers(benchmark::State& state) {
    PrivateBus bus;
    if (!bus.start()) return fail_run(state, "shmbusd did not start");
    auto client = bus.connect();
    auto pub = client->publisher("t");
    auto sub = client->subscribe("t");
    if (!pub || !sub) return fail_run(state, "cannot open the topic");
    std::vector<double> samples;
    for (int i = 0; i < 20; ++i) {
        auto held = std::make_shared<shmbus::Loan>();
        const pid_t victim = start_victim(bus, [held](shmbus::Client& c) {
            static auto p = c.publisher("t");  // outlives the lambda: the child never returns
            return p && p->loan(64, *held) == shmbus::PublishStatus::ok;
        });
        if (victim < 0) return fail_run(state, "victim did not start");
        if (pub->publish("behind the dead claim") != shmbus::PublishStatus::ok) return fail_run(state, "publish");
        const auto t0 = Clock::now();
        kill(victim, SIGKILL);
        bool got = false;
        while (!got && Clock::now() - t0 < 10s)
            (void)sub->poll([&](const shmbus::Message& m) { got = m.text() == "behind the dead claim"; });
        const auto t1 = Clock::now();
        waitpid(victim, nullptr, 0);
        if (!got) return fail_run(state, "the reader never moved past the dead claim");
        samples.push_back(ms_between(t0, t1));
    }
    report_ms(state, samples);
}

// SIGKILL to a subscriber → its slot is released (as topic info sees it).
void subscriber_death_to_release(benchmark::State& state) {
    PrivateBus bus;
    if (!bus.start()) return fail_run(state, "shmbusd did not start");
    auto client = bus.connect();
    if (!client || !client->create_topic("t", {})) return fail_run(state, "cannot create the topic");
    std::vector<double> samples;
    for (int i = 0; i < 20; ++i) {
        const pid_t victim = start_victim(bus, [](shmbus::Client& c) {
            static auto s = c.subscribe("t");
            return s.has_value();
        });
        if (victim < 0) return fail_run(state, "victim did not start");
        const auto t0 = Clock::now();
        kill(victim, SIGKILL);
        bool released = false;
        while (!released && Clock::now() - t0 < 10s) {
            auto st = client->topic_stats("t");
            released = st && st->subscriptions.empty();
        }
        const auto t1 = Clock::now();
        waitpid(victim, nullptr, 0);
        if (!released) return fail_run(state, "the slot was never released");
        samples.push_back(ms_between(t0, t1));
    }
    report_ms(state, samples);
}

// A live publisher keeps a claim open on a topic with a 10 ms unblock-timeout → a reader waiting
// behind it has the next message. Expect the timeout plus at most one 5 ms daemon tick.
void stalled_claim_to_readers(benchmark::State& state) {
    PrivateBus bus;
    if (!bus.start()) return fail_run(state, "shmbusd did not start");
    auto client = bus.connect();
    shmbus::TopicConfig config;
    config.unblock_timeout = 10ms;
    if (!client || !client->create_topic("t", config)) return fail_run(state, "cannot create the topic");
    auto stalled = client->publisher("t");
    auto other = client->publisher("t");
    auto sub = client->subscribe("t");
    if (!stalled || !other || !sub) return fail_run(state, "cannot open the topic");
    std::vector<double> samples;
    for (int i = 0; i < 10; ++i) {
        shmbus::Loan loan;
        if (stalled->loan(64, loan) != shmbus::PublishStatus::ok) return fail_run(state, "loan");
        const auto t0 = Clock::now();
        if (other->publish("behind the stalled claim") != shmbus::PublishStatus::ok) return fail_run(state, "publish");
        bool got = false;
        while (!got && Clock::now() - t0 < 10s)
            (void)sub->poll([&](const shmbus::Message& m) { got = m.text() == "behind the stalled claim"; });
        const auto t1 = Clock::now();
        if (!got || loan.commit() != shmbus::PublishStatus::revoked) return fail_run(state, "the claim was not taken back");
        samples.push_back(ms_between(t0, t1));
    }
    report_ms(state, samples);
}

// shmbusd stopped with `topics` topics (one durable subscription each) and started again: time
// until it answers, which includes re-adopting every segment and reconciling every slot.
void restart_readopt(benchmark::State& state, int topics) {
    PrivateBus bus;
    if (!bus.start()) return fail_run(state, "shmbusd did not start");
    {
        auto client = bus.connect();
        shmbus::TopicConfig config;
        config.capacity = 4096;
        config.max_producers = 4;
        config.max_consumers = 4;
        for (int i = 0; i < topics; ++i) {
            const std::string name = "topic" + std::to_string(i);
            shmbus::SubscribeOptions o;
            o.durable_name = "keeper";
            o.create_config = config;
            if (!client->subscribe(name, o)) return fail_run(state, "cannot create the topics");
        }
    }
    std::vector<double> samples, logged;
    for (int i = 0; i < 5; ++i) {
        bus.stop();
        const auto t0 = Clock::now();
        if (!bus.start()) return fail_run(state, "shmbusd did not restart");
        samples.push_back(ms_between(t0, Clock::now()));
        logged.push_back(bus.logged_readopt_ms());
    }
    if (auto client = bus.connect(); !client || client->list_topics()->size() != std::size_t(topics))
        return fail_run(state, "topics were lost across the restart");
    report_ms(state, samples);
    std::sort(logged.begin(), logged.end());
    state.counters["readopt_logged_p50_ms"] = logged[logged.size() / 2];
}

}  // namespace

void register_recovery_benchmarks() {
    auto add = [](const char* name, auto fn, int iterations) {
        benchmark::RegisterBenchmark(name, fn)->Iterations(iterations)->UseManualTime()->Unit(benchmark::kMillisecond);
    };
    add("Recovery/publisher_death_to_readers", publisher_death_to_readers, 20);
    add("Recovery/subscriber_death_to_release", subscriber_death_to_release, 20);
    add("Recovery/stalled_claim_to_readers/10ms", stalled_claim_to_readers, 10);
    add("Recovery/restart_readopt/1000", [](benchmark::State& st) { restart_readopt(st, 1000); }, 5);
}

}  // namespace bench
