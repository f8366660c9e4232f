// shmbusd's Prometheus endpoint: read directly, and scraped by a real Prometheus server (Debian's
// `prometheus`, started on loopback in the test's directory) whose HTTP API answers a query.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "bus_fixture.h"
#include "net.h"

namespace shmbus::test {
namespace {

using namespace std::chrono_literals;

class Metrics : public BusTest {
protected:
    void SetUp() override {
        make_dir();
        port = free_port();
        start_daemon({"--metrics", std::to_string(port)});
        ASSERT_EQ(cli({"sub", "prices", "--durable", "audit", "--count", "0"}).code, 0);
        ASSERT_EQ(cli({"pub", "prices", "a", "b", "c"}).code, 0);
    }
    int port = 0;
};

TEST_F(Metrics, TheEndpointServesEveryTopicAndSubscription) {
    std::string text;
    ASSERT_TRUE(eventually([&] {
        text = http_get(port, "/metrics");
        return text.find("shmbus_messages_published_total{topic=\"prices\"} 3") != std::string::npos;
    }, 5s)) << text;
    EXPECT_NE(text.find("# TYPE shmbus_messages_published_total counter"), std::string::npos);
    EXPECT_NE(text.find("shmbus_subscription_lag_messages{topic=\"prices\",subscription=\"audit\",kind=\"durable\"} 3"),
              std::string::npos) << text;
    EXPECT_NE(text.find("shmbus_subscription_attached{topic=\"prices\",subscription=\"audit\",kind=\"durable\"} 0"),
              std::string::npos) << text;
    EXPECT_NE(text.find("shmbus_recovery_dead_claims_sealed_total{topic=\"prices\"} 0"), std::string::npos) << text;
    EXPECT_NE(text.find("shmbus_topics 1"), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE shmbus_subscription_processing_seconds histogram"), std::string::npos) << text;
    EXPECT_NE(text.find("shmbus_subscription_processing_seconds_count{topic=\"prices\",subscription=\"audit\",kind=\"durable\"}"),
              std::string::npos) << text;
    EXPECT_NE(read_file(path("daemon.log")).find("metrics on http://127.0.0.1:" + std::to_string(port) + "/metrics"),
              std::string::npos);
}

TEST_F(Metrics, GroupsHaveTheirFigures) {
    ASSERT_EQ(cli({"group", "create", "prices", "workers", "--from", "earliest"}).code, 0);
    ASSERT_EQ(cli({"sub", "prices", "--group", "workers", "--count", "2"}).code, 0);
    std::string text;
    ASSERT_TRUE(eventually([&] {
        text = http_get(port, "/metrics");
        return text.find("shmbus_group_acked_total{topic=\"prices\",group=\"workers\"} 2") != std::string::npos;
    }, 5s)) << text;
    EXPECT_NE(text.find("shmbus_group_lag_messages{topic=\"prices\",group=\"workers\"} 1"), std::string::npos) << text;
    EXPECT_NE(text.find("shmbus_group_members{topic=\"prices\",group=\"workers\"} 0"), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE shmbus_group_dead_lettered_total counter"), std::string::npos) << text;
    EXPECT_NE(text.find("shmbus_group_oldest_unsettled_seconds{topic=\"prices\",group=\"workers\"} 0"), std::string::npos) << text;
}

// A service topic's requests and the pattern subscriptions covering a topic; inboxes are counted,
// never a topic label.
TEST_F(Metrics, RequestsAndPatternSubscriptionsHaveTheirFigures) {
    auto c = connect();
    ASSERT_TRUE(c);
    auto watching = c->subscribe_pattern("pri*.>");
    ASSERT_FALSE(watching);  // a malformed pattern
    auto pattern = c->subscribe_pattern("*");
    ASSERT_TRUE(pattern) << pattern.error().message;
    EXPECT_EQ(cli({"request", "prices", "x", "--timeout", "1s"}).code, 1);  // nobody serves it: no responder
    std::string text;
    ASSERT_TRUE(eventually([&] {
        text = http_get(port, "/metrics");
        return text.find("shmbus_requests_no_responder_total{topic=\"prices\"} 1") != std::string::npos;
    }, 5s)) << text;
    EXPECT_NE(text.find("shmbus_requests_total{topic=\"prices\"} 0"), std::string::npos) << text;
    EXPECT_NE(text.find("shmbus_responders{topic=\"prices\"} 0"), std::string::npos) << text;
    EXPECT_NE(text.find("shmbus_pattern_subscriptions 1"), std::string::npos) << text;
    EXPECT_NE(text.find("shmbus_topic_pattern_subscriptions{topic=\"prices\"} 1"), std::string::npos) << text;
    EXPECT_NE(text.find("shmbus_inboxes "), std::string::npos) << text;
    EXPECT_EQ(text.find("_inbox."), std::string::npos) << text;
}

TEST_F(Metrics, APortInUseStopsTheStart) {
    const auto r = run({SHMBUSD_PATH, "--dir", path("second"), "--metrics", std::to_string(port)}, "", 10s);
    EXPECT_EQ(r.code, 2);
    EXPECT_NE((r.out + r.err).find("cannot serve metrics on 127.0.0.1:" + std::to_string(port)), std::string::npos)
        << r.out << r.err;
}

TEST_F(Metrics, APrometheusServerScrapesShmbusd) {
    if (access("/usr/bin/prometheus", X_OK) != 0) GTEST_SKIP() << "needs Debian's prometheus";
    const int web = free_port();
    {
        std::ofstream f(path("prometheus.yml"));
        f << "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: shmbus\n    static_configs:\n"
             "      - targets: ['127.0.0.1:" << port << "']\n";
    }
    const pid_t prom = spawn({"/usr/bin/prometheus", "--config.file=" + path("prometheus.yml"), "--storage.tsdb.path=" + path("tsdb"),
                              "--web.listen-address=127.0.0.1:" + std::to_string(web)},
                             {path("prometheus.log"), path("prometheus.log")});
    const std::string query = "/api/v1/query?query=shmbus_messages_published_total%7Btopic%3D%22prices%22%7D";
    std::string answer;
    const bool answered = eventually([&] {
        answer = http_get(web, query);
        return answer.find("\"result\":[{") != std::string::npos;
    }, 30s);
    kill(prom, SIGTERM);
    EXPECT_EQ(wait_exit(prom, 20s), 0);
    ASSERT_TRUE(answered) << answer << read_file(path("prometheus.log"));
    const auto j = nlohmann::json::parse(answer);
    EXPECT_EQ(j["status"], "success");
    const auto& sample = j["data"]["result"][0];
    EXPECT_EQ(sample["metric"]["topic"], "prices");
    EXPECT_EQ(sample["metric"]["job"], "shmbus");
    EXPECT_EQ(sample["value"][1], "3");
}

}  // namespace
}  // namespace shmbus::test
