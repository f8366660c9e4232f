// catalog: the owner of prices. Publishes a PriceChanged event on topic `prices` for every
// change, keyed by product, written straight into the ring with loan()/commit() (zero copy).
// The key lets a compacted topic keep each product's current price for services that start late.
//   catalog [--dir DIR] [--changes N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "price_event.h"
#include "shmbus/shmbus.h"

int main(int argc, char** argv) {
    const prices::Args args = prices::parse_args(argc, argv, "--changes", 12);
    auto client = prices::connect("catalog", args.dir);
    if (!client) return 1;
    auto pub = client->publisher("prices");
    if (!pub) {
        std::fprintf(stderr, "catalog: %s\n", pub.error().message.c_str());
        return 1;
    }
    std::map<std::string, int64_t> price = {{"apple", 120}, {"bread", 250}, {"coffee", 899}, {"milk", 109}};
    for (int i = 0; i < args.count; ++i) {
        auto it = std::next(price.begin(), i % int(price.size()));
        const int64_t old_cents = it->second;
        it->second += (i % 3 == 0 ? -7 : 11);
        shmbus::Loan loan;
        shmbus::MessageOptions keyed;
        keyed.key = it->first;
        if (const auto st = pub->loan(sizeof(prices::PriceChanged), loan, keyed); st != shmbus::PublishStatus::ok) {
            std::fprintf(stderr, "catalog: publish failed: %s\n", shmbus::to_string(st));
            return 1;
        }
        auto* event = new (loan.data().data()) prices::PriceChanged{};
        std::strncpy(event->sku, it->first.c_str(), sizeof event->sku - 1);
        event->old_cents = old_cents;
        event->new_cents = it->second;
        event->catalog_version = uint64_t(i + 1);
        loan.commit();
        std::printf("catalog:   %-7s %4lld -> %4lld cents (message id %llu)\n", it->first.c_str(), (long long)old_cents,
                    (long long)it->second, (unsigned long long)loan.id());
    }
    return 0;
}
