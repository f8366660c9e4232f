// A message's meta block (layout/record.h, kRecordHasMeta): a key and two times before the header
// block. What a publisher writes reads back; a damaged block (set directly, as a hostile or broken
// publisher could leave it) never reads outside the record and never moves the payload's start
// anywhere but past a block whose length fits.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "local_topic.h"
#include "record/record_view.h"
#include "ring_helpers.h"
#include "shmbus/headers.h"

namespace shmbus::test {
namespace {

struct Block {
    uint16_t bytes;
    uint16_t key_length;
    uint32_t fields;
};

std::vector<std::byte> with_meta(Block b, std::span<const uint64_t> values, std::string_view key, std::string_view payload) {
    std::vector<std::byte> data(sizeof b + 8 * values.size() + key.size() + payload.size());
    std::byte* at = data.data();
    auto put = [&](const void* from, std::size_t n) {
        if (n != 0) std::memcpy(at, from, n);  // an empty part may have no storage at all
        at += n;
    };
    put(&b, sizeof b);
    put(values.data(), 8 * values.size());
    put(key.data(), key.size());
    put(payload.data(), payload.size());
    return data;
}

// A record with key "acct-7", times 111 and 222, header tenant=acme and payload "hello"
// (flags kRecordHasMeta | kRecordHasHeaders).
std::vector<std::byte> keyed_record() {
    const uint64_t times[] = {111, 222};
    const uint32_t fields = layout::kMetaExpiresAt | layout::kMetaDeliverAt;
    auto data = with_meta({uint16_t(layout::meta_block_size(fields, 6)), 6, fields}, times, "acct-7", "");
    const Header h[] = {{"tenant", "acme"}};
    const std::size_t meta = data.size();
    data.resize(meta + encoded_headers_size(h) + 5);
    encode_headers(h, data.data() + meta);
    std::memcpy(data.data() + meta + encoded_headers_size(h), "hello", 5);
    return data;
}

TEST(Meta, KeyAndTimesReadBackBeforeHeadersAndPayload) {
    const auto data = keyed_record();
    Message m;
    detail::split_record(data.data(), uint32_t(data.size()), layout::kRecordHasMeta | layout::kRecordHasHeaders, m);
    EXPECT_EQ(m.key, "acct-7");
    EXPECT_EQ(m.expires_at_ns, 111u);
    EXPECT_EQ(m.deliver_at_ns, 222u);
    EXPECT_EQ(m.headers.get("tenant"), "acme");
    EXPECT_EQ(m.text(), "hello");
}

// A subscriber fills one Message per record, clearing in place what a record leaves out: a record
// of payload alone leaves nothing behind of the keyed, timed message with headers read before it.
TEST(Meta, APayloadOnlyRecordClearsWhatTheRecordBeforeItSet) {
    const auto keyed = keyed_record();
    Message m;
    detail::split_record(keyed.data(), uint32_t(keyed.size()), layout::kRecordHasMeta | layout::kRecordHasHeaders, m);
    ASSERT_EQ(m.key, "acct-7");
    m.producer = "billing";  // as a named producer's stamp leaves it
    m.sequence = 9;
    const std::byte plain[] = {std::byte{'h'}, std::byte{'i'}};
    detail::split_record(plain, 2, 0, m);
    EXPECT_TRUE(m.key.empty());
    EXPECT_TRUE(m.producer.empty());
    EXPECT_EQ(m.sequence, 0u);
    EXPECT_EQ(m.expires_at_ns, 0u);
    EXPECT_EQ(m.deliver_at_ns, 0u);
    EXPECT_TRUE(m.headers.empty());
    EXPECT_EQ(m.text(), "hi");
    EXPECT_EQ(m.payload.data(), plain);
}

TEST(Meta, OneTimeOnlyIsReadAsThatTime) {
    const uint64_t deliver[] = {5000};
    const auto data = with_meta({uint16_t(layout::meta_block_size(layout::kMetaDeliverAt, 1)), 1, layout::kMetaDeliverAt}, deliver, "k", "p");
    Message m;
    detail::split_record(data.data(), uint32_t(data.size()), layout::kRecordHasMeta, m);
    EXPECT_EQ(m.expires_at_ns, 0u);
    EXPECT_EQ(m.deliver_at_ns, 5000u);
    EXPECT_EQ(m.key, "k");
    EXPECT_EQ(m.text(), "p");
}

TEST(Meta, WithoutTheFlagTheBlockIsPayload) {
    const auto data = with_meta({11, 3, 0}, {}, "key", "x");
    Message m;
    detail::split_record(data.data(), uint32_t(data.size()), 0, m);
    EXPECT_TRUE(m.key.empty());
    EXPECT_EQ(m.payload.size(), data.size());
}

TEST(Meta, ALengthOutsideTheRecordMakesItARecordWithoutMeta) {
    for (uint16_t bytes : {uint16_t(0), uint16_t(7), uint16_t(13), uint16_t(0xffff)}) {
        const auto data = with_meta({bytes, 3, 0}, {}, "key", "x");  // 12 bytes in all
        Message m;
        detail::split_record(data.data(), uint32_t(data.size()), layout::kRecordHasMeta, m);
        EXPECT_TRUE(m.key.empty()) << bytes;
        EXPECT_EQ(m.expires_at_ns, 0u);
        EXPECT_EQ(m.payload.size(), data.size()) << bytes;
    }
    Message m;  // shorter than the block's prefix
    const std::byte three[3]{};
    detail::split_record(three, 3, layout::kRecordHasMeta, m);
    EXPECT_EQ(m.payload.size(), 3u);
}

TEST(Meta, PartsThatDoNotAddUpAreSteppedOverAndSayNothing) {
    const uint64_t times[] = {1, 2};
    // Claims a key of 200 bytes in a 12-byte block; unknown fields; a key above the limit.
    for (Block b : {Block{12, 200, 0}, Block{20, 4, 0x80}, Block{16, 0, layout::kMetaExpiresAt | layout::kMetaDeliverAt}}) {
        auto data = with_meta(b, times, "", "");
        data.resize(b.bytes + 2);
        std::memcpy(data.data() + b.bytes, "pp", 2);
        Message m;
        detail::split_record(data.data(), uint32_t(data.size()), layout::kRecordHasMeta, m);
        EXPECT_TRUE(m.key.empty());
        EXPECT_EQ(m.expires_at_ns, 0u);
        EXPECT_EQ(m.deliver_at_ns, 0u);
        EXPECT_EQ(m.text(), "pp") << b.bytes;
    }
    std::vector<std::byte> big(layout::kMetaPrefix + layout::kMaxKey + 1);
    const Block over{uint16_t(big.size()), uint16_t(layout::kMaxKey + 1), 0};
    std::memcpy(big.data(), &over, sizeof over);
    Message m;
    detail::split_record(big.data(), uint32_t(big.size()), layout::kRecordHasMeta, m);
    EXPECT_TRUE(m.key.empty());
    EXPECT_EQ(m.payload.size(), 0u);
}

// publish() with no options takes a shorter path than one with options; where the topic or the
// publisher adds to every message (a default TTL, a named producer's stamp), it still does.
struct Received {
    std::string text, producer;
    uint64_t sequence = 0, timestamp_ns = 0, expires_at_ns = 0;
};
Received first_message_of(const detail::LocalTopic& t, Publisher& pub) {
    auto sub = t.subscriber(detail::durable("d", StartFrom::earliest));
    EXPECT_TRUE(sub.has_value());
    EXPECT_EQ(pub.publish(std::string_view("plain")), PublishStatus::ok);
    Received out;
    const auto r = sub->receive(
        [&](const Message& m) {  // the views in m last only as long as the subscription's mapping
            out = {std::string(m.text()), std::string(m.producer), m.sequence, m.timestamp_ns, m.expires_at_ns};
        },
        std::chrono::seconds(5), 1);
    EXPECT_EQ(r.status, ReceiveStatus::ok);
    return out;
}

TEST(Meta, APlainPublishCarriesTheTopicsDefaultTtl) {
    TopicConfig c = detail::config(1 << 16);
    c.ttl = std::chrono::seconds(60);
    detail::LocalTopic t(c);
    ASSERT_TRUE(t.ok()) << t.error().message;
    auto pub = t.publisher();
    const Received m = first_message_of(t, pub);
    EXPECT_EQ(m.text, "plain");
    EXPECT_GE(m.expires_at_ns, m.timestamp_ns + 59'000'000'000ull);
    EXPECT_LE(m.expires_at_ns, m.timestamp_ns + 61'000'000'000ull);
}

TEST(Meta, APlainPublishOfANamedProducerCarriesItsStamp) {
    detail::LocalTopic t(detail::config(1 << 16));
    ASSERT_TRUE(t.ok()) << t.error().message;
    PublisherOptions o;
    o.producer = "billing";
    auto pub = t.publisher(o);
    const Received m = first_message_of(t, pub);
    EXPECT_EQ(m.text, "plain");
    EXPECT_EQ(m.producer, "billing");
    EXPECT_EQ(m.sequence, 1u);
    EXPECT_EQ(m.expires_at_ns, 0u);
}

}  // namespace
}  // namespace shmbus::test
