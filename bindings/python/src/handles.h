// The Python module's objects over the C API (shmbus/shmbus_c.h): each owns one C handle and
// closes it in close() (or when collected). Statuses other than ok (and empty, where "nothing"
// is an answer) become shmbus.Error, or the subclass the status names, carrying the C API's text.
#pragma once

#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <utility>

#include "shmbus/shmbus_c.h"

namespace shmbus::python {

namespace py = pybind11;

// Raises the exception for `status` (never returns).
[[noreturn]] void raise_status(int status);
// Raises unless `status` is SHMBUS_OK.
inline void check(int status) {
    if (status != SHMBUS_OK) raise_status(status);
}
void register_exceptions(py::module_& m);

// Seconds (None: forever, as far as the C API goes) as the C API's nanoseconds.
int64_t timeout_ns(const std::optional<double>& seconds);

class Bus {
public:
    explicit Bus(const std::optional<std::string>& dir);
    ~Bus() { close(); }
    void close() noexcept;
    [[nodiscard]] shmbus_client* handle() const;
    py::object dir;

private:
    shmbus_client* client_ = nullptr;
};

class Subscription;

// A received message. Its payload is a memoryview of the bus's memory, valid until the next
// receive on its subscription (then released: using it raises ValueError), as in C++, where the
// payload is valid until the handler returns; bytes(msg.payload) keeps a copy.
class Message {
public:
    Message(py::object subscription, const shmbus_message& m) : subscription_(std::move(subscription)), m_(m) {}
    [[nodiscard]] py::object payload();
    [[nodiscard]] uint64_t id() const { return m_.id; }
    [[nodiscard]] uint64_t timestamp_ns() const { return m_.timestamp_ns; }
    [[nodiscard]] uint64_t lost_before() const { return m_.lost_before; }
    [[nodiscard]] uint32_t attempt() const { return m_.attempt; }
    [[nodiscard]] uint64_t sequence() const { return m_.sequence; }
    [[nodiscard]] py::object producer() const;
    [[nodiscard]] py::object key() const;  // bytes, or None
    [[nodiscard]] uint64_t expires_at_ns() const { return shmbus_message_expires_at(&m_); }
    [[nodiscard]] uint64_t deliver_at_ns() const { return shmbus_message_deliver_at(&m_); }
    [[nodiscard]] py::str topic() const;
    [[nodiscard]] py::dict headers() const;
    void ack();
    void nack(const std::optional<double>& delay);
    void reject(const std::string& reason);
    // Releases the payload's memoryview, if nothing holds a buffer from it (a numpy array over it
    // does: then it stays, and must not be used past this point).
    void release_payload() noexcept;
    [[nodiscard]] std::string repr() const;

private:
    [[nodiscard]] Subscription& sub() const;
    py::object subscription_;
    shmbus_message m_;
    py::object view_;  // the payload's memoryview, made on first use
};

class Subscription {
public:
    Subscription(Bus& bus, const std::string& topic, const std::optional<std::string>& durable,
                 const std::optional<std::string>& group, const py::object& start, bool auto_ack, bool busy_spin,
                 const std::optional<double>& stream_backoff);
    ~Subscription() { close(); }
    void close() noexcept;
    [[nodiscard]] shmbus_subscriber* handle() const;
    // The next message, or None if none comes within `timeout` seconds (None: wait until one does).
    [[nodiscard]] py::object receive(py::object self, const std::optional<double>& timeout);
    // Up to `max` messages' payloads, copied, waiting up to `timeout` for the first (auto-acked).
    [[nodiscard]] py::list receive_batch(std::size_t max, const std::optional<double>& timeout);
    [[nodiscard]] py::object next(py::object self);  // iteration: blocks; StopIteration when the topic is deleted
    [[nodiscard]] std::string topic() const { return topic_; }
    [[nodiscard]] uint64_t next_id() const;
    [[nodiscard]] uint64_t lost() const;
    [[nodiscard]] bool closed() const { return sub_ == nullptr; }
    void forget_current() noexcept;  // the previous message's payload is released

private:
    shmbus_subscriber* sub_ = nullptr;
    std::string topic_;
    py::object current_;  // the last Message handed out (its payload is released on the next receive)
};

class Publisher {
public:
    Publisher(Bus& bus, const std::string& topic, const std::optional<std::string>& producer,
              const std::optional<double>& block_timeout, bool reuse_space);
    ~Publisher() { close(); }
    void close() noexcept;
    // key: str or bytes; ttl and delay: seconds; deliver_at_ns: CLOCK_REALTIME (wins over delay).
    void publish(py::handle data, const py::object& headers, const py::object& key, const std::optional<double>& ttl,
                 const std::optional<double>& delay, const std::optional<uint64_t>& deliver_at_ns);
    void publish_sequence(uint64_t sequence, const py::buffer& data, const py::object& headers);
    // Publishes each buffer of `payloads` in order, batched; returns how many were published
    // (all, or it raises saying why it stopped).
    std::size_t publish_batch(const py::sequence& payloads);
    [[nodiscard]] py::object loan(py::object self, std::size_t size);
    [[nodiscard]] uint64_t last_id() const;
    [[nodiscard]] uint64_t last_sequence() const;
    [[nodiscard]] shmbus_publisher* handle() const;
    [[nodiscard]] std::string topic() const { return topic_; }

private:
    shmbus_publisher* pub_ = nullptr;
    std::string topic_;
};

// Space claimed in the ring: a writable buffer (memoryview(loan), numpy.frombuffer(loan)) that
// commit() publishes; a context manager that commits on a clean exit and abandons on an exception.
class Loan {
public:
    Loan(py::object publisher, void* data, std::size_t size) : publisher_(std::move(publisher)), data_(data), size_(size) {}
    Loan(Loan&& other) noexcept
        : publisher_(std::move(other.publisher_)), data_(std::exchange(other.data_, nullptr)), size_(other.size_) {}
    Loan(const Loan&) = delete;
    Loan& operator=(const Loan&) = delete;
    ~Loan() { abandon(); }
    void commit();
    void abandon() noexcept;
    [[nodiscard]] py::buffer_info buffer();
    [[nodiscard]] bool open() const { return data_ != nullptr; }

private:
    py::object publisher_;
    void* data_;
    std::size_t size_;
};

class WaitSet {
public:
    WaitSet();
    ~WaitSet() { close(); }
    void close() noexcept;
    void add(py::object subscription);
    void remove(py::object subscription);
    [[nodiscard]] py::list wait(const std::optional<double>& timeout);
    [[nodiscard]] int fileno();

private:
    shmbus_waitset* set_ = nullptr;
    py::dict members_;  // handle address -> Subscription, to name the ready ones (and keep them alive)
};

}  // namespace shmbus::python
