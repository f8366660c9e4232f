// Result: a value or an error, and what happens when a caller reads the wrong one.
#include <gtest/gtest.h>

#include "shmbus/result.h"

namespace shmbus {
namespace {

Result<int> failing() { return make_error(Errc::topic_not_found, "no topic named 'x'"); }

TEST(Result, AValueReadsBack) {
    Result<std::string> r(std::string("abc"));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r.value(), "abc");
    EXPECT_EQ(r->size(), 3u);
    EXPECT_EQ(*r, "abc");
}

TEST(ResultDeathTest, ValueOfAnErrorAbortsWithTheErrorsText) {
    EXPECT_DEATH((void)failing().value(), "value of a failed Result used \\(topic_not_found: no topic named 'x'\\)");
    auto r = failing();
    EXPECT_DEATH((void)*r, "topic_not_found");
}

TEST(ResultDeathTest, ArrowOnAnErrorAborts) {
    Result<std::string> r = make_error(Errc::busy, "attached elsewhere");
    EXPECT_DEATH((void)r->size(), "busy: attached elsewhere");
}

TEST(ResultDeathTest, ErrorOfAValueAborts) {
    Result<int> r(5);
    EXPECT_DEATH((void)r.error(), "Result::error\\(\\) called on a value");
}

TEST(Errc, EveryCodeToStringNamesIsKnownOnTheWireAndNothingElse) {
    uint32_t known = 0;
    for (uint32_t code = 0; code < 1000; ++code) {
        const auto e = errc_from_code(code);
        if (!e) continue;
        ++known;
        EXPECT_EQ(uint32_t(*e), code);
        EXPECT_STRNE(to_string(*e), "unknown");
    }
    EXPECT_EQ(known, uint32_t(Errc::responder_error) + 1);  // the codes are dense from ok
    EXPECT_FALSE(errc_from_code(UINT32_MAX).has_value());
}

}  // namespace
}  // namespace shmbus
