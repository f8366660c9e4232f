// The C API's wait sets (shmbus_waitset_*): a shmbus::WaitSet and the handles it names.
#include "c_api/handles.h"

using namespace shmbus::c_api;

extern "C" {

int shmbus_waitset_new(shmbus_waitset** out) {
    if (!out) return null_argument("out");
    try {
        *out = new shmbus_waitset;  // paired with delete in shmbus_waitset_free
    } catch (...) {
        *out = nullptr;
        return out_of_memory();
    }
    return SHMBUS_OK;
}

void shmbus_waitset_free(shmbus_waitset* set) { delete set; }

int shmbus_waitset_add(shmbus_waitset* set, shmbus_subscriber* subscriber) {
    if (!set || !subscriber) return null_argument(!set ? "set" : "subscriber");
    try {
        set->handles[&subscriber->subscriber] = subscriber;
    } catch (...) {
        return out_of_memory();
    }
    auto r = set->set.add(subscriber->subscriber);
    if (!r) {
        set->handles.erase(&subscriber->subscriber);
        return fail(r.error());
    }
    return SHMBUS_OK;
}

int shmbus_waitset_remove(shmbus_waitset* set, shmbus_subscriber* subscriber) {
    if (!set || !subscriber) return null_argument(!set ? "set" : "subscriber");
    set->handles.erase(&subscriber->subscriber);
    return set->set.remove(subscriber->subscriber) ? SHMBUS_OK : fail(SHMBUS_INVALID_ARGUMENT, "not in this wait set");
}

int shmbus_waitset_wait(shmbus_waitset* set, int64_t timeout_ns, shmbus_subscriber** ready, size_t capacity, size_t* count) {
    if (!set || !count || (!ready && capacity)) return null_argument(!set ? "set" : "count or ready");
    *count = 0;
    auto r = set->set.wait(ns(timeout_ns));
    if (!r) return fail(r.error());
    for (shmbus::Subscriber* s : *r) {
        if (*count == capacity) break;
        auto it = set->handles.find(s);
        if (it != set->handles.end()) ready[(*count)++] = it->second;
    }
    return *count > 0 ? SHMBUS_OK : SHMBUS_EMPTY;
}

int shmbus_waitset_fd(shmbus_waitset* set, int* fd) {
    if (!set || !fd) return null_argument(!set ? "set" : "fd");
    auto r = set->set.fd();
    if (!r) return fail(r.error());
    *fd = *r;
    return SHMBUS_OK;
}

}  // extern "C"
