// Subscriptions by pattern through a real shmbusd: a topic created after the subscription is covered
// within the look-for-new-topics period (measured), from its first message; non-matching topics
// never deliver; a durable pattern subscription resumes per topic; the CLI. What a user may not
// read is in access_test.cpp (OtherUser.APatternSubscriptionCoversOnlyTheTopicsItMayRead).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bus_fixture.h"
#include "shmbus/pattern.h"

namespace {

using namespace shmbus;
using namespace shmbus::test;
using namespace std::chrono_literals;
using Pattern = BusTest;

TEST(PatternSyntax, TokensStarAndGreaterThan) {
    EXPECT_TRUE(topic_matches("sensors.*", "sensors.kitchen"));
    EXPECT_FALSE(topic_matches("sensors.*", "sensors.hall.temp"));
    EXPECT_FALSE(topic_matches("sensors.*", "sensors"));
    EXPECT_TRUE(topic_matches("sensors.>", "sensors.hall.temp"));
    EXPECT_TRUE(topic_matches("sensors.>", "sensors.kitchen"));
    EXPECT_FALSE(topic_matches("sensors.>", "sensors"));
    EXPECT_FALSE(topic_matches("sensors.>", "sensorsx.a"));
    EXPECT_TRUE(topic_matches("*.temp", "hall.temp"));
    EXPECT_FALSE(topic_matches("*.temp", "hall.temp.max"));
    EXPECT_TRUE(topic_matches(">", "a"));
    EXPECT_TRUE(topic_matches("a.*.c.>", "a.b.c.d.e"));
    EXPECT_TRUE(validate_topic_pattern("sensors.*.>"));
    EXPECT_TRUE(validate_topic_pattern("*"));
    for (const char* bad : {"sensors", "sen*", "a.>.b", "a..*", ".*", "*.", "a.b>", "a.$.*"})
        EXPECT_FALSE(validate_topic_pattern(bad)) << bad;
}

// Published as "<topic> <n>", so that each message says where it belongs and in which order.
void publish_numbered(Client& c, const std::string& topic, int from, int to) {
    auto pub = c.publisher(topic);
    ASSERT_TRUE(pub) << pub.error().message;
    for (int i = from; i < to; ++i) ASSERT_EQ(pub->publish(topic + " " + std::to_string(i)), PublishStatus::ok);
}

TEST_F(Pattern, ATopicMadeAfterTheSubscriptionIsCoveredFromItsFirstMessageAndOthersNever) {
    auto c = connect();
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->create_topic("sensors.kitchen", {}));
    auto p = c->subscribe_pattern("sensors.>");
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->topics(), std::vector<std::string>{"sensors.kitchen"});

    const auto made = std::chrono::steady_clock::now();
    publish_numbered(*c, "sensors.hall.temp", 0, 100);  // made by its first publisher, after the subscription
    for (const char* other : {"sensors", "sensorsx.a", "other.sensors.a"}) publish_numbered(*c, other, 0, 10);
    publish_numbered(*c, "sensors.kitchen", 0, 50);

    std::map<std::string, int> next;  // per topic, the number the next message must carry
    std::chrono::steady_clock::duration first_from_new{};
    std::string wrong;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while ((next["sensors.hall.temp"] < 100 || next["sensors.kitchen"] < 50) && std::chrono::steady_clock::now() < deadline) {
        (void)p->receive(
            [&](const Message& m) {
                const std::string topic(m.topic);
                const std::string want = topic + " " + std::to_string(next[topic]);
                if (m.text() != want) wrong += "got '" + std::string(m.text()) + "', wanted '" + want + "'; ";
                if (topic == "sensors.hall.temp" && next[topic] == 0) first_from_new = std::chrono::steady_clock::now() - made;
                ++next[topic];
            },
            100ms);
    }
    EXPECT_EQ(next["sensors.hall.temp"], 100);
    EXPECT_EQ(next["sensors.kitchen"], 50);
    EXPECT_EQ(wrong, "");
    for (const char* other : {"sensors", "sensorsx.a", "other.sensors.a"}) EXPECT_EQ(next.count(other), 0u) << other;
    EXPECT_EQ(p->topics(), (std::vector<std::string>{"sensors.hall.temp", "sensors.kitchen"}));
    // The period it looks for new topics with, plus the publishing: well under a second.
    EXPECT_LT(first_from_new, 2s);
    std::printf("a topic made after the pattern subscription: its first message %.1f ms after it was made\n",
                std::chrono::duration<double, std::milli>(first_from_new).count());
}

// A durable pattern subscription is one durable subscription per topic: made again, it resumes
// each topic after its own last ack.
TEST_F(Pattern, ADurablePatternSubscriptionResumesEachTopicAfterItsAck) {
    auto c = connect();
    ASSERT_TRUE(c);
    SubscribeOptions o;
    o.durable_name = "audit";
    o.from = StartFrom::earliest;
    o.auto_ack = false;
    publish_numbered(*c, "jobs.a", 0, 5);
    publish_numbered(*c, "jobs.b", 0, 5);
    std::map<std::string, int> got;
    {
        auto p = c->subscribe_pattern("jobs.*", o);
        ASSERT_TRUE(p) << p.error().message;
        for (int i = 0; i < 20 && got["jobs.a"] + got["jobs.b"] < 10; ++i)
            (void)p->receive(
                [&](const Message& m) {
                    if (++got[std::string(m.topic)] <= 3) {  // the first 3 of each
                        EXPECT_EQ(p->ack(m), AckStatus::ok);
                    }
                },
                50ms);
    }
    EXPECT_EQ(got["jobs.a"], 5);
    EXPECT_EQ(got["jobs.b"], 5);
    publish_numbered(*c, "jobs.a", 5, 7);
    auto again = c->subscribe_pattern("jobs.*", o);
    ASSERT_TRUE(again);
    std::map<std::string, std::vector<std::string>> second;
    for (int i = 0; i < 20; ++i)
        (void)again->receive([&](const Message& m) { second[std::string(m.topic)].push_back(std::string(m.text())); }, 30ms);
    EXPECT_EQ(second["jobs.a"], (std::vector<std::string>{"jobs.a 3", "jobs.a 4", "jobs.a 5", "jobs.a 6"}));
    EXPECT_EQ(second["jobs.b"], (std::vector<std::string>{"jobs.b 3", "jobs.b 4"}));
}

TEST_F(Pattern, TheCliPrintsEachMessagesTopicAndRefusesWhatCannotBe) {
    auto c = connect();
    ASSERT_TRUE(c);
    publish_numbered(*c, "metrics.cpu", 0, 2);
    publish_numbered(*c, "metrics.disk", 0, 2);
    publish_numbered(*c, "logs.app", 0, 2);
    auto r = cli({"sub", "metrics.*", "--from", "earliest", "--count", "4", "--format", "json"});
    ASSERT_EQ(r.code, 0) << r.err;
    std::map<std::string, int> per_topic;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) ++per_topic[nlohmann::json::parse(line)["topic"].get<std::string>()];
    EXPECT_EQ(per_topic, (std::map<std::string, int>{{"metrics.cpu", 2}, {"metrics.disk", 2}}));
    EXPECT_EQ(cli({"sub", "metrics.>.x", "--count", "0"}).code, 2);
    EXPECT_EQ(cli({"sub", "metr*", "--count", "0"}).code, 2);
    EXPECT_EQ(cli({"sub", "metrics.*", "--group", "g", "--count", "0"}).code, 2);
}

}  // namespace

namespace {

// shmbusd knows the pattern subscriptions clients hold: `topic info` names those covering a
// topic, bus info counts them, and they go when their subscription (or connection) ends.
TEST_F(Pattern, APatternSubscriptionIsShownWhereItCoversAndGoesWithIt) {
    auto c = connect();
    ASSERT_TRUE(c);
    publish_numbered(*c, "sensors.kitchen", 0, 1);
    publish_numbered(*c, "other", 0, 1);
    {
        auto p = c->subscribe_pattern("sensors.*");
        ASSERT_TRUE(p) << p.error().message;
        auto all = c->pattern_subscriptions();
        ASSERT_TRUE(all) << all.error().message;
        ASSERT_EQ(all->size(), 1u);
        EXPECT_EQ((*all)[0].pattern, "sensors.*");
        EXPECT_EQ((*all)[0].pid, getpid());
        auto info = c->bus_info();
        ASSERT_TRUE(info);
        EXPECT_EQ(info->pattern_subscriptions, 1u);
        auto covered = cli({"topic", "info", "sensors.kitchen", "--json"});
        ASSERT_EQ(covered.code, 0) << covered.err;
        const auto j = nlohmann::json::parse(covered.out);
        ASSERT_EQ(j["pattern_subscriptions"].size(), 1u);
        EXPECT_EQ(j["pattern_subscriptions"][0]["pattern"], "sensors.*");
        EXPECT_EQ(nlohmann::json::parse(cli({"topic", "info", "other", "--json"}).out)["pattern_subscriptions"].size(), 0u);
        EXPECT_NE(cli({"topic", "info", "sensors.kitchen"}).out.find("pattern   sensors.*"), std::string::npos);
    }
    auto after = c->pattern_subscriptions();
    ASSERT_TRUE(after);
    EXPECT_TRUE(after->empty());
}

}  // namespace
