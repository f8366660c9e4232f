// Publish and receive never allocate: counted with a replaced global operator new.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "local_topic.h"

namespace {
std::atomic<uint64_t> g_allocations{0};
}

// These replace the global forms on purpose: malloc/free underneath is correct, GCC's
// -Wmismatched-new-delete cannot see that the pair is replaced together.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace shmbus::detail {
namespace {

TEST(NoAllocation, PublishLoanPollAckAndReceiveDoNotAllocate) {
    for (bool durable : {false, true}) {
        TopicConfig c;
        c.capacity = 65536;
        LocalTopic t(c);
        auto pub = t.publisher();
        SubscribeOptions o;
        if (durable) o.durable_name = "d";
        auto sub = t.subscriber(o);
        ASSERT_TRUE(sub.has_value());
        uint64_t sum = 0;
        const uint64_t before = g_allocations.load();
        for (int i = 0; i < 10000; ++i) {
            ASSERT_EQ(pub.publish("payload"), PublishStatus::ok);
            Loan loan;
            ASSERT_EQ(pub.loan(8, loan), PublishStatus::ok);
            loan.commit();
            auto r = sub->receive([&](const Message& m) { sum += m.payload.size(); }, std::chrono::milliseconds(1));
            ASSERT_EQ(r.status, ReceiveStatus::ok);
            sub->ack_delivered();
        }
        EXPECT_EQ(g_allocations.load(), before) << (durable ? "durable" : "ephemeral");
        EXPECT_EQ(sum, 10000u * 15);
    }
}

}  // namespace
}  // namespace shmbus::detail
