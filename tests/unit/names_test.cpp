#include <gtest/gtest.h>

#include "control/control.h"
#include "shmbus/names.h"
#include "shmbus/topic.h"

namespace shmbus {
namespace {

TEST(Names, ValidTopicNames) {
    for (const char* n : {"prices", "orders.eu", "a", "A_b-c.9", "0day"}) EXPECT_TRUE(validate_topic_name(n).has_value()) << n;
    EXPECT_TRUE(validate_topic_name(std::string(63, 'x')).has_value());
}

TEST(Names, InvalidTopicNamesSayWhy) {
    for (const char* n : {"", ".hidden", "a/b", "a b", "a..b", "-x", "ünï", "a\nb", "x*"}) {
        auto r = validate_topic_name(n);
        ASSERT_FALSE(r.has_value()) << n;
        EXPECT_EQ(r.error().code, Errc::invalid_name);
        EXPECT_NE(r.error().message.find("invalid topic name"), std::string::npos);
    }
    EXPECT_FALSE(validate_topic_name(std::string(64, 'x')).has_value());
    EXPECT_FALSE(validate_subscription_name(std::string(48, 'x')).has_value());
    EXPECT_TRUE(validate_subscription_name(std::string(47, 'x')).has_value());
}

TEST(Names, Sizes) {
    EXPECT_EQ(parse_size("4096"), 4096u);
    EXPECT_EQ(parse_size("64K"), 65536u);
    EXPECT_EQ(parse_size("64k"), 65536u);
    EXPECT_EQ(parse_size("16M"), 16u << 20);
    EXPECT_EQ(parse_size("1G"), 1u << 30);
    EXPECT_EQ(parse_size("2MiB"), 2u << 20);
    EXPECT_EQ(parse_size("12B"), 12u);
    for (const char* bad : {"", "K", "12X", "1.5M", "-1", "99999999999999999999", "17179869184G"})
        EXPECT_FALSE(parse_size(bad).has_value()) << bad;
}

TEST(Names, OnFull) {
    OnFull p{};
    EXPECT_TRUE(parse_on_full("overwrite", p));
    EXPECT_EQ(p, OnFull::overwrite);
    EXPECT_FALSE(parse_on_full("drop", p));
}

TEST(Names, ConfigValidation) {
    TopicConfig c;
    c.capacity = 64 << 10;
    c.max_message = 64 << 10;
    auto r = validate_config(c);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("8160"), std::string::npos);
    EXPECT_TRUE(validate_config(with_defaults(c = TopicConfig{})).has_value());
    c = TopicConfig{};
    c.capacity = 1;
    EXPECT_FALSE(validate_config(with_defaults(c)).has_value());
}

TEST(Printable, ControlCharactersFromSharedMemoryAreEscapedForLogsAndTerminals) {
    EXPECT_EQ(detail::printable("orders-1.eu"), "orders-1.eu");
    EXPECT_EQ(detail::printable(std::string_view("\x1b[31mred\n\\", 10)), "\\x1b[31mred\\x0a\\x5c");
    EXPECT_EQ(detail::printable(std::string_view("a\0b", 3)), "a\\x00b");
}

}  // namespace
}  // namespace shmbus
