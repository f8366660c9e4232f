// basket: keeps shopping carts priced. A durable subscription ("basket"): if this service is
// down while prices change, it catches up on restart from its last ack. Started with
// `--from latest-per-key` it is a basket that starts late: an ephemeral subscription that begins
// with the current price of every product (the latest message of each key of the compacted topic).
//   basket [--dir DIR] [--count N] [--from latest-per-key]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "price_event.h"
#include "shmbus/shmbus.h"

int main(int argc, char** argv) {
    const prices::Args args = prices::parse_args(argc, argv, "--count", 1 << 30);
    auto client = prices::connect("basket", args.dir);
    if (!client) return 1;
    shmbus::SubscribeOptions so;
    const bool late = args.from == "latest-per-key";
    if (late) {
        so.from = shmbus::StartFrom::latest_per_key;  // each product's current price, then changes as they come
    } else {
        so.durable_name = "basket";
        so.from = shmbus::StartFrom::earliest;  // first start only; later starts resume after the last ack
    }
    auto sub = client->subscribe("prices", so);
    if (!sub) {
        std::fprintf(stderr, "basket: %s\n", sub.error().message.c_str());
        return 1;
    }
    if (late) std::printf("basket:    started late: the current price of every product first\n");
    else
        std::printf("basket:    %s durable subscription, next message id %llu\n", sub->resumed() ? "resumed" : "new",
                    (unsigned long long)sub->next_id());
    const std::map<std::string, std::vector<std::string>> carts = {{"alice", {"apple", "coffee"}},
                                                                   {"bob", {"bread", "milk", "apple"}}};
    std::map<std::string, int64_t> price;
    int seen = 0;
    while (seen < args.count) {
        const auto r = sub->receive(
            [&](const shmbus::Message& m) {
                prices::PriceChanged e{};
                std::memcpy(&e, m.payload.data(), std::min(sizeof e, m.payload.size()));
                price[std::string(e.product())] = e.new_cents;
                for (const auto& [cart, items] : carts) {
                    for (const auto& item : items) {
                        if (item != e.product()) continue;
                        int64_t total = 0;
                        for (const auto& i : items) total += price.count(i) ? price[i] : 0;
                        std::printf("basket:    id %-3llu %-6s in %s's cart -> known total %lld cents\n",
                                    (unsigned long long)m.id, item.c_str(), cart.c_str(), (long long)total);
                    }
                }
                ++seen;
            },
            std::chrono::seconds(5), std::size_t(args.count - seen));
        if (r.status != shmbus::ReceiveStatus::ok) break;  // acked automatically after the handler
    }
    std::printf("basket:    processed %d price change(s)\n", seen);
    return 0;
}
