// `shmbus bridge`: opens what it carries, connects, and runs one forwarding loop per mapping
// (outbound.cpp, inbound.cpp) until SIGTERM or SIGINT.
#include "bridge/bridge.h"

#include <csignal>
#include <iostream>
#include <thread>
#include <vector>

#include "bridge/link.h"
#include "shmbus/names.h"
#include "shmbus/publisher.h"
#include "shmbus/subscriber.h"

namespace cli {

using namespace bridge;

bool bridge_available() noexcept { return true; }

int run_bridge(shmbus::Client& client, const BridgeSettings& s) {
    if (s.out.empty() && s.in.empty()) {
        std::cerr << "shmbus: bridge needs at least one --out or --in\n";
        return 2;
    }
    const std::string durable = "bridge-" + safe_name(s.name, true);
    if (auto st = shmbus::validate_subscription_name(durable); !st) {
        std::cerr << "shmbus: bridge name: " << st.error().message << "\n";
        return 2;
    }
    const std::string bus = hex_id(client.bus_id());
    // Everything local first: a topic that cannot be opened is an error before NATS is involved.
    std::vector<shmbus::Subscriber> outs;
    for (const auto& [topic, subject] : s.out) {
        shmbus::SubscribeOptions o;
        o.durable_name = durable;
        o.from = shmbus::StartFrom::earliest;  // a new bridge forwards what the ring still holds
        o.auto_ack = false;
        auto sub = client.subscribe(topic, o);
        if (!sub) {
            std::cerr << "shmbus: bridge: " << sub.error().message << "\n";
            return 1;
        }
        outs.push_back(std::move(sub.value()));
    }
    std::vector<shmbus::Publisher> ins;
    std::vector<std::string> consumers;
    for (const auto& [subject, topic] : s.in) {
        shmbus::PublisherOptions o;
        o.producer = "bridge." + safe_name(s.name + "." + subject, true);
        o.block_timeout = 1s;
        auto pub = client.publisher(topic, o);
        if (!pub) {
            std::cerr << "shmbus: bridge: " << pub.error().message << "\n";
            return 1;
        }
        ins.push_back(std::move(pub.value()));
        consumers.push_back(safe_name(s.name + "-" + subject, false));
    }

    BridgeMetrics metrics;
    g_bridge_name = s.name;
    if (!s.metrics.empty()) {
        const std::string address = s.metrics.find(':') == std::string::npos ? "127.0.0.1:" + s.metrics : s.metrics;
        try {
            metrics.exposer = std::make_unique<prometheus::Exposer>(address, 1);
            metrics.exposer->RegisterCollectable(metrics.registry);
        } catch (const std::exception& e) {
            std::cerr << "shmbus: bridge: cannot serve metrics on " << address << ": " << e.what() << "\n";
            return 1;
        }
        g_metrics = &metrics;
        show_connected();
    }
    TrackedConnection nc;
    if (natsStatus st = nc.open(s); st != NATS_OK) {
        std::cerr << "shmbus: bridge: cannot connect to " << s.nats_url << ": " << nats_error(st) << "\n";
        return 1;
    }
    if (!s.stream.empty() && !ensure_stream(nc.get(), s)) return 1;
    std::signal(SIGTERM, [](int) { g_stop.store(true); });
    std::signal(SIGINT, [](int) { g_stop.store(true); });
    log_line("bus " + bus + " <-> " + s.nats_url + ": " + std::to_string(s.out.size()) + " out, " + std::to_string(s.in.size()) + " in");
    nc.close();  // it checked the credentials and the stream: each mapping has its own (Link)
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < s.out.size(); ++i)
        threads.emplace_back(forward_out, std::ref(outs[i]), std::cref(s), s.out[i].first, s.out[i].second, bus, s.window);
    for (std::size_t i = 0; i < s.in.size(); ++i)
        threads.emplace_back(forward_in, std::ref(ins[i]), std::cref(s), s.in[i].first, consumers[i], s.in[i].second, bus);
    for (auto& t : threads) t.join();
    g_metrics = nullptr;
    return 0;
}

}  // namespace cli
