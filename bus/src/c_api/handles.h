// The C API's handles (shmbus/shmbus_c.h): each owns the C++ object it stands for. Internal to
// bus/src/c_api, with the helpers its files share.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "shmbus/client.h"
#include "shmbus/shmbus_c.h"
#include "shmbus/wait_set.h"

struct shmbus_client {
    shmbus::Client client;
};

struct shmbus_publisher {
    shmbus::Publisher publisher;
    shmbus::Loan loan;
};

struct shmbus_subscriber {
    shmbus::Subscriber subscriber;
    bool auto_ack;
    bool group;
    bool acks_matter;  // durable or a group member (an ephemeral subscription's ack does nothing)
    // shmbus_next's message: acked (auto_ack) when the next call comes.
    bool borrowed = false;
    shmbus::Message last{};
};

struct shmbus_waitset {
    shmbus::WaitSet set;
    std::unordered_map<const shmbus::Subscriber*, shmbus_subscriber*> handles;
};

namespace shmbus::c_api {

// Records `text` as this thread's last error (shmbus_last_error) and returns `status`.
int fail(int status, std::string text) noexcept;
int fail(const Error& e) noexcept;
int out_of_memory() noexcept;
int null_argument(const char* what) noexcept;
// The C status of a C++ one (and its text as the last error, when it is not ok).
int status_of(PublishStatus s) noexcept;
int status_of(ReceiveStatus s) noexcept;
int status_of(AckStatus s) noexcept;
// A timeout in the C API's nanoseconds (0 or less: do not wait) as the C++ one.
inline std::chrono::nanoseconds ns(int64_t v) noexcept { return std::chrono::nanoseconds(v > 0 ? v : 0); }

}  // namespace shmbus::c_api
