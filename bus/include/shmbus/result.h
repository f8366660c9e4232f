// Error codes and the expected-style result type of every setup call. The library never throws
// across its API: a failure comes back as an Error with a code and a sentence for humans.
#pragma once

#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace shmbus {

enum class Errc : uint32_t {
    ok = 0,
    invalid_name,         // a topic or subscription name breaks the naming rules
    invalid_argument,     // a size, policy or option out of range
    message_too_large,    // payload larger than the topic's max_message
    topic_not_found,
    topic_exists,
    bad_magic,            // a segment that is not a shmbus segment
    bad_version,          // a segment of another major layout version
    corrupt_segment,      // a segment whose header or ring fails a bounds check
    no_space,             // /dev/shm (or the memory limit) cannot hold the segment
    io_error,             // an unexpected system call failure
    daemon_not_running,   // nobody listens on the bus socket
    daemon_running,       // another shmbusd already serves this directory
    protocol_error,       // a malformed or unexpected control frame
    permission_denied,
    no_free_slot,         // every subscription or producer slot of the topic is taken
    busy,                 // a durable subscription or producer name already held elsewhere
    disconnected,         // the control connection to shmbusd was lost
    timed_out,
    // Request/reply (shmbus/request.h):
    no_responder,         // no responder serves the topic: nobody could answer
    responder_died,       // the responder that took the request died (or every responder left) before replying
    responder_error,      // the responder answered with a failure (its words are the message)
};

[[nodiscard]] const char* to_string(Errc code) noexcept;
// The Errc a number names (as sent on the wire), or nullopt for a number no Errc has: a code added
// later is known here as soon as to_string() names it, with no range to keep up to date.
[[nodiscard]] std::optional<Errc> errc_from_code(uint32_t code) noexcept;

struct Error {
    Errc code = Errc::ok;
    std::string message;
};

namespace detail {
// value() or operator-> on a Result that holds an error is a bug in the caller, as with
// std::expected: it ends the process with the error's text on stderr instead of reading
// through a null pointer (the library itself never calls it on an error).
[[noreturn]] void bad_result_access(const Error& error) noexcept;
}  // namespace detail

// A value or an Error. Deliberately small: has_value(), value(), error(), operator bool.
// value(), * and -> on an error, and error() on a value, abort with a clear message.
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}             // NOLINT: implicit by design
    Result(Error error) : v_(std::move(error)) {}         // NOLINT: implicit by design
    [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }
    [[nodiscard]] T& value() & noexcept { return *checked(); }
    [[nodiscard]] T&& value() && noexcept { return std::move(*checked()); }
    [[nodiscard]] const T& value() const& noexcept { return *checked(); }
    T* operator->() noexcept { return checked(); }
    const T* operator->() const noexcept { return checked(); }
    T& operator*() & noexcept { return value(); }
    const T& operator*() const& noexcept { return value(); }
    [[nodiscard]] const Error& error() const noexcept {
        if (const Error* e = std::get_if<1>(&v_)) return *e;
        detail::bad_result_access(Error{Errc::invalid_argument, "Result::error() called on a value"});
    }

private:
    T* checked() noexcept {
        if (T* v = std::get_if<0>(&v_)) return v;
        detail::bad_result_access(*std::get_if<1>(&v_));
    }
    const T* checked() const noexcept {
        if (const T* v = std::get_if<0>(&v_)) return v;
        detail::bad_result_access(*std::get_if<1>(&v_));
    }
    std::variant<T, Error> v_;
};

struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() { return Unit{}; }

inline Error make_error(Errc code, std::string message) { return Error{code, std::move(message)}; }

}  // namespace shmbus
