// shmbusd's Prometheus endpoint (`--metrics ADDR:PORT`), served by prometheus-cpp's exposer on its
// own threads. Those threads never touch the registry: the event loop refreshes a snapshot of
// every figure once a second (and at start), and a scrape reads the latest snapshot under a mutex.
// The names come from the statistics table (shmbus/statistics.h), labelled by topic and
// subscription, plus a few gauges of the supervisor itself.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "registry.h"
#include "shmbus/result.h"

namespace shmbus::daemon {

class MetricsSnapshot;

class Metrics {
public:
    // Listens on `address` ("PORT" means 127.0.0.1:PORT; "HOST:PORT" as given).
    [[nodiscard]] static Result<std::unique_ptr<Metrics>> start(const std::string& address) noexcept;
    ~Metrics();
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    // Rebuilds the snapshot from every topic's segment; called on the event loop.
    // `patterns`: the pattern subscriptions clients hold now (one entry each).
    void refresh(Registry& registry, std::size_t clients, uint64_t started_ns, const std::vector<std::string>& patterns) noexcept;
    [[nodiscard]] const std::string& address() const noexcept { return address_; }

private:
    Metrics() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string address_;
};

}  // namespace shmbus::daemon
