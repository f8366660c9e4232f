// A test peer process: publishes or receives checked messages through a real shmbusd.
//   peer pub DIR TOPIC COUNT PRODUCER [--size N] [--timeout-ms T] [--pace-us N] [--log FILE]
//            [--stop-on-failure 1] (the first publish that is not ok ends the run)
//            [--pace-every N] (--pace-us sleeps after every Nth message only)
//            [--stall-after N --stall-ms M] [--hold-us N] [--named NAME] [--reuse-space 1]
//   peer sub DIR TOPIC [--count N | --until-id ID | --until-seq PRODUCER:SEQ] [--durable NAME] [--from earliest|latest]
//            [--log FILE] [--ready FILE] [--slow-us N] [--stall-limit-ms N (exit 5 when exceeded)]
//   peer member DIR TOPIC --group NAME [--log FILE] [--nack-every N] [--ordered-by-key --order-log FILE]
//            joins a consumer group (unlimited deliveries, 1..5 ms backoff, 2 s visibility) and
//            checks each message; it logs "id" (flushed) before acking it, and nacks the first
//            delivery of every id divisible by N instead. Runs until killed. --ordered-by-key joins
//            an ordered group and takes any payload; --order-log appends, for each message handled
//            and before it is settled, "id attempt start_ns end_ns ack|nack key" (CLOCK_MONOTONIC).
//   topic options for both: [--capacity C] [--on-full P] [--unblock-timeout D] [--expire-detached D]
//   both: [--wait-for-daemon] (retry the first connection for 30 s: the daemon may be restarting)
// Payload: producer, seq, checksum, then filler. `sub` checks every message (checksum, per-producer
// order, increasing ids) and prints one summary line:
//   received=N lost=L bad=B last_id=X
// With --log, `sub` appends "attach ID" (where it starts), then each message as "id producer seq",
// flushes, acks, then appends "ack ID" (the next unacked id); `pub` appends "id seq" once each
// publish returned ok.
// --named NAME publishes as the idempotent producer NAME, message seq as sequence seq + 1: run again
// after a crash, it publishes only what is missing (a duplicate counts as outcome "duplicate").
// --stall-after N makes `pub` loan its Nth message and hold it --stall-ms before committing;
// it prints "stalled_commit=STATUS".
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "shmbus/shmbus.h"
#include "test_payload.h"

namespace {

using shmbus::test::checksum_of;
using shmbus::test::Payload;

std::string flag(int argc, char** argv, const char* name, const char* fallback = "") {
    for (int i = 0; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
    return fallback;
}

shmbus::TopicConfig topic_config(int argc, char** argv) {
    shmbus::TopicConfig c;
    if (auto cap = flag(argc, argv, "--capacity"); !cap.empty()) c.capacity = *shmbus::parse_size(cap);
    if (auto p = flag(argc, argv, "--on-full"); !p.empty()) (void)shmbus::parse_on_full(p, c.on_full);
    if (auto d = flag(argc, argv, "--unblock-timeout"); !d.empty()) c.unblock_timeout = *shmbus::parse_duration(d);
    if (auto d = flag(argc, argv, "--expire-detached"); !d.empty()) c.expire_detached = *shmbus::parse_duration(d);
    return c;
}

int run_pub(int argc, char** argv, shmbus::Client& client) {
    const std::string topic = argv[3];
    const uint64_t count = std::strtoull(argv[4], nullptr, 10);
    const uint32_t producer = uint32_t(std::strtoul(argv[5], nullptr, 10));
    const uint32_t size = uint32_t(std::stoul(flag(argc, argv, "--size", "32")));
    shmbus::PublisherOptions po;
    po.create_config = topic_config(argc, argv);
    po.block_timeout = std::chrono::milliseconds(std::stoll(flag(argc, argv, "--timeout-ms", "60000")));
    po.producer = flag(argc, argv, "--named");
    po.reuse_space = flag(argc, argv, "--reuse-space") == "1";
    auto pub = client.publisher(topic, po);
    if (!pub) {
        std::fprintf(stderr, "peer: %s\n", pub.error().message.c_str());
        return 1;
    }
    std::string buf(std::max<std::size_t>(size, sizeof(Payload)), '\0');
    std::map<std::string, uint64_t> outcomes;
    const uint64_t stall_after = std::strtoull(flag(argc, argv, "--stall-after", "0").c_str(), nullptr, 10);
    const auto stall = std::chrono::milliseconds(std::stoll(flag(argc, argv, "--stall-ms", "0")));
    const auto pace = std::chrono::microseconds(std::stoll(flag(argc, argv, "--pace-us", "0")));
    const bool stop_on_failure = flag(argc, argv, "--stop-on-failure") == "1";
    const uint64_t pace_every = std::max<uint64_t>(1, std::strtoull(flag(argc, argv, "--pace-every", "1").c_str(), nullptr, 10));
    FILE* log = nullptr;
    if (auto path = flag(argc, argv, "--log"); !path.empty()) log = std::fopen(path.c_str(), "a");
    // --hold-us: write through a loan and hold it that long before committing, so that a SIGSTOP
    // is likely to land inside a claim.
    const auto hold = std::chrono::microseconds(std::stoll(flag(argc, argv, "--hold-us", "0")));
    uint64_t sequence = 0;  // --named: the sequence of the message being sent
    auto send = [&](const std::string& bytes) {
        if (!po.producer.empty()) return pub->publish_sequence(sequence, bytes);
        if (hold.count() == 0) return pub->publish(bytes);
        shmbus::Loan loan;
        if (const auto st = pub->loan(bytes.size(), loan); st != shmbus::PublishStatus::ok) return st;
        std::memcpy(loan.data().data(), bytes.data(), bytes.size());
        std::this_thread::sleep_for(hold);
        return loan.commit();
    };
    // --batch N: publish_batch() of N messages at a time (each its own checksummed payload).
    if (const uint64_t batch = std::strtoull(flag(argc, argv, "--batch", "0").c_str(), nullptr, 10); batch != 0) {
        std::vector<std::string> store(batch, buf);
        std::vector<std::span<const std::byte>> spans;
        for (uint64_t seq = 0; seq < count;) {
            spans.clear();
            for (uint64_t k = 0; k < batch && seq < count; ++k, ++seq) {
                Payload p{producer, uint32_t(buf.size() - sizeof(Payload)), seq, checksum_of(producer, seq)};
                std::memcpy(store[k].data(), &p, sizeof p);
                spans.push_back(std::as_bytes(std::span<const char>(store[k].data(), store[k].size())));
            }
            const shmbus::BatchResult r = pub->publish_batch(spans);
            outcomes["ok"] += r.published;
            if (r.status != shmbus::PublishStatus::ok) {
                ++outcomes[shmbus::to_string(r.status)];
                break;
            }
        }
        for (auto& [k, v] : outcomes) std::printf("%s=%llu\n", k.c_str(), (unsigned long long)v);
        return outcomes.size() == 1 ? 0 : 4;
    }
    for (uint64_t seq = 0; seq < count; ++seq) {
        Payload p{producer, uint32_t(buf.size() - sizeof(Payload)), seq, checksum_of(producer, seq)};
        sequence = seq + 1;
        std::memcpy(buf.data(), &p, sizeof p);
        if (stall_after != 0 && seq + 1 == stall_after) {  // hold a claimed message, then commit late
            shmbus::Loan loan;
            if (pub->loan(buf.size(), loan) == shmbus::PublishStatus::ok) {
                std::memcpy(loan.data().data(), buf.data(), buf.size());
                std::printf("stalling id=%llu\n", (unsigned long long)loan.id());
                std::fflush(stdout);
                std::this_thread::sleep_for(stall);
                std::printf("stalled_commit=%s\n", shmbus::to_string(loan.commit()));
                std::fflush(stdout);
            }
            continue;  // the stalled message does not count in the outcomes
        }
        auto st = send(buf);
        // Taken back by the supervisor (unblock-timeout): not published, so publish it again.
        while (st == shmbus::PublishStatus::revoked) {
            ++outcomes["revoked_then_retried"];
            st = send(buf);
        }
        ++outcomes[shmbus::to_string(st)];
        if (st != shmbus::PublishStatus::ok && stop_on_failure) break;
        if (log && st == shmbus::PublishStatus::ok) {
            std::fprintf(log, "%llu %llu\n", (unsigned long long)pub->last_id(), (unsigned long long)seq);
            std::fflush(log);
        }
        if (pace.count() > 0 && (seq + 1) % pace_every == 0) std::this_thread::sleep_for(pace);
    }
    if (log) std::fclose(log);
    for (auto& [k, v] : outcomes) std::printf("%s=%llu\n", k.c_str(), (unsigned long long)v);  // before the check below
    if (!po.producer.empty()) outcomes.erase("duplicate");  // a named producer's repeat: already published
    return outcomes.size() <= 1 && (outcomes.empty() || outcomes.count("ok")) ? 0 : 4;
}

// The payload of `m`, if it is whole: long enough, its checksum and filler length right.
std::optional<Payload> whole_payload(const shmbus::Message& m) {
    Payload p{};
    if (m.payload.size() < sizeof p) return std::nullopt;
    std::memcpy(&p, m.payload.data(), sizeof p);
    if (p.checksum != checksum_of(p.producer, p.seq) || m.payload.size() != sizeof p + p.filler) return std::nullopt;
    return p;
}

int run_sub(int argc, char** argv, shmbus::Client& client) {
    const std::string topic = argv[3];
    const std::string count_s = flag(argc, argv, "--count");
    const std::string until_s = flag(argc, argv, "--until-id");
    const uint64_t count = count_s.empty() ? UINT64_MAX : std::strtoull(count_s.c_str(), nullptr, 10);
    const uint64_t until = until_s.empty() ? UINT64_MAX : std::strtoull(until_s.c_str(), nullptr, 10);
    // --until-seq P:S: ends once producer P's message S came (where the count is not known ahead).
    unsigned until_producer = 0;
    unsigned long long until_seq = 0;
    const bool until_message = std::sscanf(flag(argc, argv, "--until-seq").c_str(), "%u:%llu", &until_producer, &until_seq) == 2;
    bool reached = false;
    const long slow_us = std::strtol(flag(argc, argv, "--slow-us", "0").c_str(), nullptr, 10);
    shmbus::SubscribeOptions o;
    o.durable_name = flag(argc, argv, "--durable");
    o.from = flag(argc, argv, "--from", "latest") == "earliest" ? shmbus::StartFrom::earliest : shmbus::StartFrom::latest;
    o.create_config = topic_config(argc, argv);
    o.auto_ack = false;
    if (auto from = flag(argc, argv, "--in-place-from"); !from.empty()) o.in_place_from = uint32_t(std::stoul(from));
    auto sub = client.subscribe(topic, o);
    if (!sub) {
        std::fprintf(stderr, "peer: %s\n", sub.error().message.c_str());
        return 1;
    }
    if (auto ready = flag(argc, argv, "--ready"); !ready.empty()) {
        int fd = open(ready.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd >= 0) close(fd);
    }
    FILE* log = nullptr;
    if (auto path = flag(argc, argv, "--log"); !path.empty()) log = std::fopen(path.c_str(), "a");
    if (log) {
        std::fprintf(log, "attach %llu\n", (unsigned long long)sub->next_id());
        std::fflush(log);
    }
    std::map<uint32_t, uint64_t> next_seq;
    uint64_t received = 0, bad = 0, last_id = 0;
    bool first = true;
    auto check = [&](const shmbus::Message& m) {
        const auto whole = whole_payload(m);
        if (!whole && m.payload.size() < sizeof(Payload)) {
            ++bad;
            return;
        }
        Payload p{};
        std::memcpy(&p, m.payload.data(), sizeof p);
        const uint64_t bad_before = bad;
        if (!whole) ++bad;
        // Per-producer order: each producer's seq follows the last one seen, unless messages were
        // lost just before (ephemeral overrun).
        auto it = next_seq.find(p.producer);
        if (it != next_seq.end() && p.seq != it->second && m.lost_before == 0) ++bad;
        next_seq[p.producer] = p.seq + 1;
        if (until_message && p.producer == until_producer && p.seq == until_seq) reached = true;
        if (!first && m.id <= last_id) ++bad;
        if (log && bad != bad_before) std::fprintf(log, "bad %llu\n", (unsigned long long)m.id);
        last_id = m.id;
        first = false;
        ++received;
        if (log) std::fprintf(log, "%llu %u %llu\n", (unsigned long long)m.id, p.producer, (unsigned long long)p.seq);
        if (slow_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(slow_us));
    };
    // Waiting longer than this for the next message means someone is stuck: exit with status 5.
    const auto idle_limit = std::chrono::milliseconds(std::stoll(flag(argc, argv, "--stall-limit-ms", "30000")));
    auto last_progress = std::chrono::steady_clock::now();
    while (received < count && (first || last_id < until) && !reached) {
        const std::size_t want = std::size_t(std::min<uint64_t>(count - received, 64));
        auto r = sub->receive(check, std::chrono::milliseconds(100), want);
        if (r.status == shmbus::ReceiveStatus::corrupt) {
            std::fprintf(stderr, "peer: corrupt ring\n");
            return 2;
        }
        if (r.count > 0) {
            if (log) std::fflush(log);
            sub->ack_delivered();  // only after the log is flushed
            if (log) {
                std::fprintf(log, "ack %llu\n", (unsigned long long)sub->next_id());
                std::fflush(log);
            }
            last_progress = std::chrono::steady_clock::now();
        } else if (std::chrono::steady_clock::now() - last_progress > idle_limit) {
            std::fprintf(stderr, "peer: no message for %lld ms (last id %llu)\n", (long long)idle_limit.count(),
                         (unsigned long long)last_id);
            if (log) std::fclose(log);
            return 5;
        }
    }
    if (log) std::fclose(log);
    std::printf("received=%llu lost=%llu bad=%llu last_id=%llu\n", (unsigned long long)received,
                (unsigned long long)sub->lost(), (unsigned long long)bad, (unsigned long long)last_id);
    return bad == 0 ? 0 : 3;
}

int run_member(int argc, char** argv, shmbus::Client& client) {
    const std::string topic = argv[3];
    const uint64_t nack_every = std::strtoull(flag(argc, argv, "--nack-every", "0").c_str(), nullptr, 10);
    shmbus::SubscribeOptions o;
    o.group = flag(argc, argv, "--group");
    const bool ordered = std::find(argv, argv + argc, std::string("--ordered-by-key")) != argv + argc;
    o.group_settings.ordered_by_key = ordered;
    o.group_settings.max_deliveries = 0;
    o.group_settings.backoff_initial = std::chrono::milliseconds(1);
    o.group_settings.backoff_max = std::chrono::milliseconds(5);
    o.group_settings.visibility = std::chrono::seconds(2);
    o.from = shmbus::StartFrom::earliest;
    o.create_config = topic_config(argc, argv);
    o.auto_ack = false;
    if (auto from = flag(argc, argv, "--in-place-from"); !from.empty()) o.in_place_from = uint32_t(std::stoul(from));
    auto sub = client.subscribe(topic, o);
    if (!sub) {
        std::fprintf(stderr, "peer: %s\n", sub.error().message.c_str());
        return 1;
    }
    FILE* log = nullptr;
    if (auto path = flag(argc, argv, "--log"); !path.empty()) log = std::fopen(path.c_str(), "a");
    uint64_t bad = 0;
    int order_log = -1;
    if (auto path = flag(argc, argv, "--order-log"); !path.empty()) order_log = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    auto now_ns = [] {
        timespec ts{};
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
    };
    auto handle = [&](const shmbus::Message& m) {
        if (ordered) {  // any payload; the order of handling is what is checked
            const uint64_t start = now_ns();
            const bool nack = nack_every != 0 && m.id % nack_every == 0 && m.attempt == 1;
            const std::string line = std::to_string(m.id) + " " + std::to_string(m.attempt) + " " + std::to_string(start) + " " +
                                     std::to_string(now_ns()) + (nack ? " nack " : " ack ") + std::string(m.key) + "\n";
            if (order_log >= 0) (void)!::write(order_log, line.data(), line.size());  // one write: whole lines, before settling
            (void)(nack ? sub->nack(m) : sub->ack(m));
            return;
        }
        if (!whole_payload(m)) {
            ++bad;
            if (log) std::fprintf(log, "bad %llu\n", (unsigned long long)m.id);
        }
        if (nack_every != 0 && m.id % nack_every == 0 && m.attempt == 1) {
            (void)sub->nack(m);
            return;
        }
        if (log) {
            std::fprintf(log, "%llu\n", (unsigned long long)m.id);
            std::fflush(log);  // logged before acked: a kill in between repeats it, never loses it
        }
        (void)sub->ack(m);  // stale: given to another member meanwhile, which logs it too
    };
    for (;;) {
        const auto r = sub->receive(handle, std::chrono::milliseconds(100), 32);
        if (r.status == shmbus::ReceiveStatus::corrupt) {
            std::fprintf(stderr, "peer: corrupt ring\n");
            return 2;
        }
        if (bad != 0) return 3;
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: peer pub|sub DIR TOPIC ...\n");
        return 64;
    }
    shmbus::ClientOptions co;
    co.dir = argv[2];
    co.name = "peer";
    if (std::find(argv, argv + argc, std::string("--wait-for-daemon")) != argv + argc) co.connect_wait = std::chrono::seconds(30);
    auto client = shmbus::Client::connect(co);
    if (!client) {
        std::fprintf(stderr, "peer: %s\n", client.error().message.c_str());
        return 1;
    }
    if (std::strcmp(argv[1], "pub") == 0 && argc >= 6) return run_pub(argc, argv, *client);
    if (std::strcmp(argv[1], "sub") == 0) return run_sub(argc, argv, *client);
    if (std::strcmp(argv[1], "member") == 0) return run_member(argc, argv, *client);
    return 64;
}
