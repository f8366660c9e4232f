#include "metrics.h"
#include "shmbus/names.h"
#include "shmbus/pattern.h"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <limits>
#include <map>
#include <mutex>
#include <vector>

#include "control/stats.h"
#include "shmbus/statistics.h"

namespace shmbus::daemon {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// The families of one refresh, by name, in the order they were first added.
class FamilyBuilder {
public:
    void add(const std::string& name, const std::string& help, StatKind kind, std::vector<prometheus::ClientMetric::Label> labels,
             double value) {
        auto [it, fresh] = index_.try_emplace(name, families_.size());
        if (fresh) families_.push_back({name, help, kind == StatKind::counter ? MetricType::Counter : MetricType::Gauge, {}});
        MetricFamily& f = families_[it->second];
        ClientMetric m;
        m.label = std::move(labels);
        if (f.type == MetricType::Counter) m.counter.value = value;
        else m.gauge.value = value;
        f.metric.push_back(std::move(m));
    }
    // A histogram from power-of-two nanosecond buckets (bucket i: [2^i, 2^(i+1)) ns), in seconds.
    void add_histogram(const std::string& name, const std::string& help, std::vector<ClientMetric::Label> labels,
                       const std::vector<uint64_t>& buckets, uint64_t sum_ns) {
        auto [it, fresh] = index_.try_emplace(name, families_.size());
        if (fresh) families_.push_back({name, help, MetricType::Histogram, {}});
        ClientMetric m;
        m.label = std::move(labels);
        uint64_t cumulative = 0;
        for (std::size_t i = 0; i < buckets.size(); ++i) {
            cumulative += buckets[i];
            m.histogram.bucket.push_back({cumulative, double(uint64_t(2) << i) / 1e9});
        }
        m.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum = double(sum_ns) / 1e9;
        families_[it->second].metric.push_back(std::move(m));
    }
    std::vector<MetricFamily> take() { return std::move(families_); }

private:
    std::vector<MetricFamily> families_;
    std::map<std::string, std::size_t> index_;
};

template <class Stats>
void add_table(FamilyBuilder& out, std::span<const Statistic<Stats>> table, const Stats& stats,
               const std::vector<ClientMetric::Label>& labels) {
    for (const auto& s : table) out.add(s.metric, s.help, s.kind, labels, double(s.get(stats)));
}

}  // namespace

// What a scrape sees: the families of the latest refresh.
class MetricsSnapshot : public prometheus::Collectable {
public:
    std::vector<MetricFamily> Collect() const override {
        std::lock_guard lock(mutex_);
        return families_;
    }
    void replace(std::vector<MetricFamily> families) {
        std::lock_guard lock(mutex_);
        families_ = std::move(families);
    }

private:
    mutable std::mutex mutex_;
    std::vector<MetricFamily> families_;
};

struct Metrics::Impl {
    std::unique_ptr<prometheus::Exposer> exposer;
    std::shared_ptr<MetricsSnapshot> snapshot = std::make_shared<MetricsSnapshot>();
};

Result<std::unique_ptr<Metrics>> Metrics::start(const std::string& address) noexcept {
    std::unique_ptr<Metrics> m(new (std::nothrow) Metrics());
    if (!m) return make_error(Errc::io_error, "out of memory");
    m->address_ = address.find(':') == std::string::npos ? "127.0.0.1:" + address : address;
    try {
        m->impl_ = std::make_unique<Impl>();
        m->impl_->exposer = std::make_unique<prometheus::Exposer>(m->address_, 1);
        m->impl_->exposer->RegisterCollectable(m->impl_->snapshot);
    } catch (const std::exception& e) {
        return make_error(Errc::invalid_argument, "cannot serve metrics on " + m->address_ + ": " + e.what());
    }
    return m;
}

Metrics::~Metrics() = default;

void Metrics::refresh(Registry& registry, std::size_t clients, uint64_t started_ns, const std::vector<std::string>& patterns) noexcept {
    try {
        FamilyBuilder out;
        std::size_t inboxes = 0;
        registry.for_each([&](TopicEntry& t) { inboxes += is_inbox_name(t.name()) ? 1 : 0; });
        out.add("shmbus_topics", "Topics on the bus.", StatKind::gauge, {}, double(registry.size() - inboxes));
        out.add("shmbus_inboxes", "Reply inboxes of requesters connected now.", StatKind::gauge, {}, double(inboxes));
        out.add("shmbus_pattern_subscriptions", "Pattern subscriptions clients hold now ('sensors.*').", StatKind::gauge, {},
                double(patterns.size()));
        out.add("shmbus_clients", "Client connections open to shmbusd.", StatKind::gauge, {}, double(clients));
        out.add("shmbus_start_time_seconds", "When this shmbusd started, in seconds since the epoch.", StatKind::gauge, {},
                double(started_ns) / 1e9);
        registry.for_each([&](TopicEntry& t) {
            if (is_inbox_name(t.name())) return;  // one per requester: counted above, never a label
            const TopicStats stats = detail::collect_stats(t.segment());
            const std::vector<ClientMetric::Label> topic{{"topic", t.name()}};
            add_table(out, topic_statistics(), stats, topic);
            add_table(out, recovery_statistics(), stats, topic);
            add_table(out, request_statistics(), stats, topic);
            const auto covering = std::count_if(patterns.begin(), patterns.end(), [&](const std::string& p) { return topic_matches(p, t.name()); });
            out.add("shmbus_topic_pattern_subscriptions", "Pattern subscriptions that cover the topic now.", StatKind::gauge, topic,
                    double(covering));
            out.add("shmbus_ring_capacity_bytes", "Bytes of the topic's ring.", StatKind::gauge, topic, double(stats.config.capacity));
            for (const auto& s : stats.subscriptions) {
                const std::vector<ClientMetric::Label> labels{
                    {"topic", t.name()}, {"subscription", s.durable ? s.name : "ephemeral-" + std::to_string(s.slot)},
                    {"kind", s.durable ? "durable" : "ephemeral"}};
                add_table(out, subscription_statistics(), s, labels);
                out.add("shmbus_subscription_attached", "1 while the subscription's owner runs, 0 for a detached durable one.",
                        StatKind::gauge, labels, s.attached ? 1 : 0);
                if (!s.processing_buckets.empty())
                    out.add_histogram("shmbus_subscription_processing_seconds",
                                      "Time from a message's delivery to the ack that covers it (durable subscriptions, sampled).",
                                      labels, s.processing_buckets, s.processing_sum_ns);
                if (s.lag_bytes)
                    out.add("shmbus_subscription_lag_bytes", "Bytes published past a durable subscription's ack cursor.",
                            StatKind::gauge, labels, double(*s.lag_bytes));
            }
            for (const auto& g : stats.groups) {
                const std::vector<ClientMetric::Label> labels{{"topic", t.name()}, {"group", g.name}};
                add_table(out, group_statistics(), g, labels);
                out.add("shmbus_group_oldest_unsettled_seconds",
                        "Since the first delivery of the group's oldest unsettled message (0 when none is unsettled).",
                        StatKind::gauge, labels, g.oldest_unsettled_age ? double(g.oldest_unsettled_age->count()) / 1e9 : 0.0);
            }
        });
        impl_->snapshot->replace(out.take());
    } catch (const std::exception&) {
        // Out of memory while building: the previous snapshot stays.
    }
}

}  // namespace shmbus::daemon
