// The C API's statuses: the C++ ones mapped to ints, the last error's text per thread, names.
#include <string>

#include "c_api/handles.h"
#include "shmbus/version.h"

using shmbus::AckStatus;
using shmbus::Errc;
using shmbus::PublishStatus;
using shmbus::ReceiveStatus;

namespace shmbus::c_api {

namespace {

static_assert(SHMBUS_ERROR_BASE + int(Errc::invalid_name) == SHMBUS_INVALID_NAME);
static_assert(SHMBUS_ERROR_BASE + int(Errc::topic_not_found) == SHMBUS_TOPIC_NOT_FOUND);
static_assert(SHMBUS_ERROR_BASE + int(Errc::no_space) == SHMBUS_NO_SPACE);
static_assert(SHMBUS_ERROR_BASE + int(Errc::daemon_not_running) == SHMBUS_DAEMON_NOT_RUNNING);
static_assert(SHMBUS_ERROR_BASE + int(Errc::permission_denied) == SHMBUS_PERMISSION_DENIED);
static_assert(SHMBUS_ERROR_BASE + int(Errc::timed_out) == SHMBUS_ERROR_TIMED_OUT);
static_assert(SHMBUS_ERROR_BASE + int(Errc::responder_error) == SHMBUS_RESPONDER_ERROR);

thread_local std::string last_error_text;
}  // namespace

int fail(int status, std::string text) noexcept {
    try {
        last_error_text = std::move(text);
    } catch (...) {
        last_error_text.clear();
    }
    return status;
}

int fail(const shmbus::Error& e) noexcept { return fail(SHMBUS_ERROR_BASE + int(e.code), e.message); }

int out_of_memory() noexcept { return fail(SHMBUS_IO_ERROR, "out of memory"); }

int null_argument(const char* what) noexcept { return fail(SHMBUS_INVALID_ARGUMENT, std::string(what) + " is NULL"); }

int status_of(PublishStatus s) noexcept {
    switch (s) {
        case PublishStatus::ok: return SHMBUS_OK;
        case PublishStatus::would_block: return fail(SHMBUS_WOULD_BLOCK, "the ring is full of unacked messages (on-full fail)");
        case PublishStatus::timed_out: return fail(SHMBUS_TIMED_OUT, "the ring stayed full until the publish timeout");
        case PublishStatus::too_large: return fail(SHMBUS_TOO_LARGE, "the message is larger than the topic's max_message");
        case PublishStatus::aborted: return fail(SHMBUS_ABORTED, "no open loan");
        case PublishStatus::revoked: return fail(SHMBUS_REVOKED, "the loan stayed open past the topic's unblock-timeout");
        case PublishStatus::corrupt: return fail(SHMBUS_CORRUPT, "the topic's shared state failed a check");
        case PublishStatus::deleted: return fail(SHMBUS_DELETED, "the topic was deleted");
        case PublishStatus::bad_headers: return fail(SHMBUS_BAD_HEADERS, "a header breaks the rules of shmbus headers");
        case PublishStatus::duplicate:
            return fail(SHMBUS_DUPLICATE, "the sequence is not above the last one committed under the producer's name");
        case PublishStatus::no_producer: return fail(SHMBUS_NO_PRODUCER, "publish_sequence needs a named producer");
        case PublishStatus::bad_key: return fail(SHMBUS_BAD_KEY, "the message key is longer than 256 bytes");
    }
    return fail(SHMBUS_IO_ERROR, "unknown publish status");
}

int status_of(ReceiveStatus s) noexcept {
    switch (s) {
        case ReceiveStatus::ok: return SHMBUS_OK;
        case ReceiveStatus::empty: return SHMBUS_EMPTY;
        case ReceiveStatus::corrupt: return fail(SHMBUS_CORRUPT, "the ring failed a bounds check: the segment is damaged or hostile");
        case ReceiveStatus::deleted: return fail(SHMBUS_DELETED, "every message was delivered and the topic was deleted");
    }
    return fail(SHMBUS_IO_ERROR, "unknown receive status");
}

int status_of(AckStatus s) noexcept {
    switch (s) {
        case AckStatus::ok: return SHMBUS_OK;
        case AckStatus::not_delivered: return fail(SHMBUS_NOT_DELIVERED, "not a message this subscriber delivered");
        case AckStatus::stale:
            return fail(SHMBUS_STALE, "delivered before the subscriber's last seek, or past its visibility timeout");
        case AckStatus::not_group: return fail(SHMBUS_NOT_GROUP, "nack and reject need a consumer group member");
    }
    return fail(SHMBUS_IO_ERROR, "unknown ack status");
}

}  // namespace shmbus::c_api

extern "C" {

using shmbus::c_api::last_error_text;

const char* shmbus_last_error(void) { return last_error_text.c_str(); }

const char* shmbus_status_name(int status) {
    switch (status) {
        case SHMBUS_OK: return "ok";
        case SHMBUS_EMPTY: return "empty";
        case SHMBUS_WOULD_BLOCK: return "would_block";
        case SHMBUS_TIMED_OUT: return "timed_out";
        case SHMBUS_TOO_LARGE: return "too_large";
        case SHMBUS_ABORTED: return "aborted";
        case SHMBUS_REVOKED: return "revoked";
        case SHMBUS_CORRUPT: return "corrupt";
        case SHMBUS_DELETED: return "deleted";
        case SHMBUS_BAD_HEADERS: return "bad_headers";
        case SHMBUS_DUPLICATE: return "duplicate";
        case SHMBUS_NO_PRODUCER: return "no_producer";
        case SHMBUS_NOT_DELIVERED: return "not_delivered";
        case SHMBUS_STALE: return "stale";
        case SHMBUS_NOT_GROUP: return "not_group";
        case SHMBUS_BAD_KEY: return "bad_key";
        default: break;
    }
    if (status > SHMBUS_ERROR_BASE)
        if (auto code = shmbus::errc_from_code(uint32_t(status - SHMBUS_ERROR_BASE))) return shmbus::to_string(*code);
    return "unknown";
}

const char* shmbus_version(void) { return shmbus::kVersion; }

}  // extern "C"
