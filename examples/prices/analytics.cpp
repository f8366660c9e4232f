// analytics: watches price changes as they happen. An ephemeral subscription: it never slows the
// catalog down, and if it falls a whole ring behind it is told how many events it missed.
//   analytics [--dir DIR] [--count N]
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "price_event.h"
#include "shmbus/shmbus.h"

int main(int argc, char** argv) {
    const prices::Args args = prices::parse_args(argc, argv, "--count", 1 << 30);
    auto client = prices::connect("analytics", args.dir);
    if (!client) return 1;
    auto sub = client->subscribe("prices");  // ephemeral, from the latest message on
    if (!sub) {
        std::fprintf(stderr, "analytics: %s\n", sub.error().message.c_str());
        return 1;
    }
    int seen = 0, ups = 0, downs = 0;
    int64_t moved = 0;
    uint64_t latency_ns = 0;
    while (seen < args.count) {
        const auto r = sub->receive(
            [&](const shmbus::Message& m) {
                prices::PriceChanged e{};
                std::memcpy(&e, m.payload.data(), std::min(sizeof e, m.payload.size()));
                (e.new_cents > e.old_cents ? ups : downs)++;
                moved += e.new_cents - e.old_cents;
                timespec now{};
                clock_gettime(CLOCK_REALTIME, &now);
                latency_ns += uint64_t(now.tv_sec) * 1'000'000'000u + uint64_t(now.tv_nsec) - m.timestamp_ns;
                ++seen;
            },
            std::chrono::seconds(5), std::size_t(args.count - seen));
        if (r.status != shmbus::ReceiveStatus::ok) break;
    }
    std::printf("analytics: %d change(s): %d up, %d down, net %+lld cents, %llu lost, mean age on arrival %.1f us\n", seen,
                ups, downs, (long long)moved, (unsigned long long)sub->lost(),
                seen ? double(latency_ns) / seen / 1000.0 : 0.0);
    return 0;
}
