// JetStream helpers for the tests and the benchmark that start a nats-server (needs libnats).
#pragma once

#include <nats/nats.h>

#include <cstdint>

namespace shmbus::test {

// Messages in `stream` now; 0 if it cannot be read.
inline uint64_t stream_count(jsCtx* js, const char* stream) {
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js, stream, nullptr, nullptr) != NATS_OK) return 0;
    const uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

// A file stream `name` on one subject, made anew (an older one of that name is deleted first).
inline bool add_stream(jsCtx* js, const char* name, const char* subject) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    const char* subjects[] = {subject};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    jsStreamInfo* si = nullptr;
    (void)js_DeleteStream(js, name, nullptr, nullptr);
    if (js_AddStream(&si, js, &cfg, nullptr, nullptr) != NATS_OK) return false;
    jsStreamInfo_Destroy(si);
    return true;
}

}  // namespace shmbus::test
