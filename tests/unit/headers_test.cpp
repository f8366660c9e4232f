// Message headers: the encoding round-trips, and a damaged header block (set directly, as a
// hostile or broken publisher could leave it) never reads outside the record. Rate limits: the
// GCRA word allows a burst, then one delivery per interval.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/rate_limit.h"
#include "record/record_view.h"
#include "core/ring.h"
#include "shmbus/headers.h"

namespace shmbus::test {
namespace {

std::vector<std::byte> record_with(std::span<const Header> headers, std::string_view payload) {
    std::vector<std::byte> data(encoded_headers_size(headers) + payload.size());
    encode_headers(headers, data.data());
    std::memcpy(data.data() + encoded_headers_size(headers), payload.data(), payload.size());
    return data;
}

TEST(Headers, EncodedHeadersReadBackInOrder) {
    const Header in[] = {{"trace-id", "4bf92f35"}, {"tenant", "acme"}, {"empty", ""}};
    const auto data = record_with(in, "payload");
    Message m;
    detail::split_record(data.data(), uint32_t(data.size()), layout::kRecordHasHeaders, m);
    EXPECT_EQ(m.text(), "payload");
    std::vector<std::pair<std::string, std::string>> out;
    for (const Header& h : m.headers) out.emplace_back(h.key, h.value);
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[0], (std::pair<std::string, std::string>{"trace-id", "4bf92f35"}));
    EXPECT_EQ(out[2].second, "");
    EXPECT_EQ(m.headers.get("tenant"), "acme");
    EXPECT_FALSE(m.headers.get("missing").has_value());
    EXPECT_EQ(m.headers.size(), 3u);
}

TEST(Headers, ARecordWithoutTheFlagIsAllPayload) {
    const Header in[] = {{"k", "v"}};
    const auto data = record_with(in, "x");
    Message m;
    detail::split_record(data.data(), uint32_t(data.size()), 0, m);
    EXPECT_TRUE(m.headers.empty());
    EXPECT_EQ(m.payload.size(), data.size());
}

TEST(Headers, ABlockLongerThanTheRecordMakesItHeaderless) {
    const Header in[] = {{"k", "v"}};
    auto data = record_with(in, "abc");
    const uint32_t too_long = uint32_t(data.size()) + 1;
    std::memcpy(data.data(), &too_long, sizeof too_long);
    Message m;
    detail::split_record(data.data(), uint32_t(data.size()), layout::kRecordHasHeaders, m);
    EXPECT_TRUE(m.headers.empty());
    EXPECT_EQ(m.payload.size(), data.size());
    const uint32_t too_short = 3;
    std::memcpy(data.data(), &too_short, sizeof too_short);
    detail::split_record(data.data(), uint32_t(data.size()), layout::kRecordHasHeaders, m);
    EXPECT_TRUE(m.headers.empty());
}

TEST(Headers, AnEntryRunningPastTheBlockEndsTheHeaders) {
    const Header in[] = {{"first", "1"}, {"second", "2"}};
    auto data = record_with(in, "payload");
    // The second entry's value length claims more than the block holds.
    const std::size_t second = layout::kHeaderBlockPrefix + layout::kHeaderEntryPrefix + 5 + 1;
    const uint16_t huge = 60000;
    std::memcpy(data.data() + second + 2, &huge, sizeof huge);
    Message m;
    detail::split_record(data.data(), uint32_t(data.size()), layout::kRecordHasHeaders, m);
    EXPECT_EQ(m.headers.size(), 1u);
    EXPECT_EQ(m.headers.get("first"), "1");
    EXPECT_FALSE(m.headers.get("second").has_value());
    EXPECT_EQ(m.text(), "payload");
}

TEST(Headers, KeysAndSizesAreChecked) {
    EXPECT_TRUE(validate_headers(std::vector<Header>{{"a.b-c_D9", "v"}}));
    EXPECT_FALSE(validate_headers(std::vector<Header>{{"", "v"}}));
    EXPECT_FALSE(validate_headers(std::vector<Header>{{"has space", "v"}}));
    EXPECT_FALSE(validate_headers(std::vector<Header>{{"k=v", "v"}}));
    EXPECT_FALSE(validate_headers(std::vector<Header>{{std::string(kMaxHeaderKey + 1, 'k'), "v"}}));
    const std::string big(kMaxHeaderValue + 1, 'v');
    EXPECT_FALSE(validate_headers(std::vector<Header>{{"k", big}}));
    EXPECT_FALSE(detail::headers_ok(std::vector<Header>(kMaxHeaders + 1, Header{"k", "v"})));
    EXPECT_TRUE(detail::headers_ok(std::vector<Header>(kMaxHeaders, Header{"k", "v"})));
}

TEST(Headers, TimesAreRfc3339InUtc) {
    EXPECT_EQ(rfc3339_utc(0), "1970-01-01T00:00:00.000000000Z");
    EXPECT_EQ(rfc3339_utc(1'795'876'955'123'456'789ull), "2026-11-28T14:42:35.123456789Z");
}

TEST(RateLimit, ABurstThenOnePerInterval) {
    std::atomic<uint64_t> tat{0};
    constexpr uint64_t kInterval = 1000;
    const uint64_t t0 = 1'000'000;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(detail::take_token(tat, kInterval, 3, t0), 0u) << "burst of 3";
    EXPECT_EQ(detail::take_token(tat, kInterval, 3, t0), kInterval) << "the fourth waits one interval";
    EXPECT_EQ(detail::take_token(tat, kInterval, 3, t0 + 400), kInterval - 400);
    EXPECT_EQ(detail::take_token(tat, kInterval, 3, t0 + kInterval), 0u);
    EXPECT_NE(detail::take_token(tat, kInterval, 3, t0 + kInterval), 0u);
    // A quiet spell refills the burst, never more.
    const uint64_t later = t0 + 100 * kInterval;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(detail::take_token(tat, kInterval, 3, later), 0u);
    EXPECT_NE(detail::take_token(tat, kInterval, 3, later), 0u);
}

TEST(RateLimit, ABurstOfZeroActsAsOne) {
    std::atomic<uint64_t> tat{0};
    EXPECT_EQ(detail::take_token(tat, 50, 0, 100), 0u);
    EXPECT_EQ(detail::take_token(tat, 50, 0, 100), 50u);
}

}  // namespace
}  // namespace shmbus::test
