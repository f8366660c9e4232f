// Small helpers shared by the in-process tests that drive a LocalTopic.
#pragma once

#include <string>
#include <vector>

#include "shmbus/subscriber.h"
#include "shmbus/topic.h"

namespace shmbus::detail {

// Polls until empty; returns the payloads, and optionally the ids and the losses reported.
inline std::vector<std::string> drain(Subscriber& s, std::size_t max = 1 << 20, std::vector<uint64_t>* ids = nullptr,
                                      uint64_t* lost_before = nullptr) {
    std::vector<std::string> out;
    for (;;) {
        auto r = s.poll([&](const Message& m) {
            out.emplace_back(m.text());
            if (ids) ids->push_back(m.id);
            if (lost_before) *lost_before += m.lost_before;
        }, max);
        if (r.status != ReceiveStatus::ok) break;
    }
    return out;
}

inline TopicConfig config(uint64_t capacity, OnFull on_full = OnFull::block) {
    TopicConfig c;
    c.capacity = capacity;
    c.on_full = on_full;
    return c;
}

inline SubscribeOptions durable(const char* name, StartFrom from = StartFrom::latest) {
    SubscribeOptions o;
    o.durable_name = name;
    o.from = from;
    return o;
}

}  // namespace shmbus::detail
