#include <pybind11/stl.h>

#include <cmath>
#include <vector>

#include "handles.h"

namespace shmbus::python {

namespace {
// A wait with no deadline is made of slices this long, so that Ctrl-C (a signal Python handles
// between them) interrupts it.
constexpr int64_t kSliceNs = 100'000'000;

// While `status` is SHMBUS_EMPTY and `total` nanoseconds (negative: no limit) have not passed,
// calls `wait_for(slice)` without the GIL, in slices so that Python handles signals (Ctrl-C)
// between them. Returns the last status.
template <class WaitFor>
int wait_in_slices(int status, int64_t total, WaitFor&& wait_for) {
    for (int64_t waited = 0; status == SHMBUS_EMPTY && (total < 0 || waited < total);) {
        const int64_t slice = total < 0 ? kSliceNs : std::min(kSliceNs, total - waited);
        {
            py::gil_scoped_release unlocked;
            status = wait_for(slice);
        }
        waited += slice;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
    return status;
}

// Headers given as a dict (or any mapping, or pairs) of str or bytes, as the C API's array. The
// strings they point into are kept in `keep`.
std::vector<shmbus_header> to_headers(const py::object& headers, std::vector<std::string>& keep) {
    std::vector<shmbus_header> out;
    if (headers.is_none()) return out;
    py::object items = py::hasattr(headers, "items") ? headers.attr("items")() : headers;
    std::vector<std::pair<py::handle, py::handle>> pairs;
    for (py::handle item : items) {
        auto pair = item.cast<py::tuple>();
        if (pair.size() != 2) throw py::value_error("headers: each item is a (key, value) pair");
        for (py::handle part : {pair[0], pair[1]}) {
            if (py::isinstance<py::bytes>(part)) keep.push_back(part.cast<std::string>());
            else if (py::isinstance<py::str>(part)) keep.push_back(part.cast<std::string>());
            else throw py::type_error("headers: keys and values are str or bytes");
        }
    }
    out.reserve(keep.size() / 2);
    for (std::size_t i = 0; i + 1 < keep.size(); i += 2)
        out.push_back({keep[i].data(), keep[i].size(), keep[i + 1].data(), keep[i + 1].size()});
    return out;
}

py::buffer_info read_buffer(const py::buffer& data) {
    if (!PyObject_CheckBuffer(data.ptr())) throw py::type_error("the data must be bytes or another buffer (bytearray, memoryview, numpy array)");
    py::buffer_info info = data.request();
    if (!PyBuffer_IsContiguous(info.view(), 'C')) throw py::value_error("the data must be one contiguous buffer");
    return info;
}

std::size_t bytes_of(const py::buffer_info& info) { return std::size_t(info.size) * std::size_t(info.itemsize); }
}  // namespace

int64_t timeout_ns(const std::optional<double>& seconds) {
    if (!seconds) return -1;
    if (std::isnan(*seconds) || *seconds < 0) throw py::value_error("a timeout is a number of seconds, 0 or more (or None)");
    return int64_t(std::min(*seconds, 1e9) * 1e9);
}

// ---- Bus ----

Bus::Bus(const std::optional<std::string>& dir_arg) {
    int status;
    {
        py::gil_scoped_release unlocked;  // connect may wait for shmbusd to appear
        status = shmbus_connect(dir_arg ? dir_arg->c_str() : nullptr, &client_);
    }
    check(status);
    dir = dir_arg ? py::object(py::str(*dir_arg)) : py::object(py::none());
}

void Bus::close() noexcept {
    shmbus_client_close(client_);
    client_ = nullptr;
}

shmbus_client* Bus::handle() const {
    if (!client_) throw py::value_error("the bus connection is closed");
    return client_;
}

// ---- Publisher and Loan ----

Publisher::Publisher(Bus& bus, const std::string& topic, const std::optional<std::string>& producer,
                     const std::optional<double>& block_timeout, bool reuse_space)
    : topic_(topic) {
    shmbus_publisher_options o = SHMBUS_PUBLISHER_OPTIONS_INIT;
    if (producer) o.producer = producer->c_str();
    if (block_timeout) o.block_timeout_ns = std::max<int64_t>(1, timeout_ns(block_timeout));
    o.reuse_space = reuse_space ? 1 : 0;
    check(shmbus_publisher_open(bus.handle(), topic.c_str(), &o, &pub_));
}

void Publisher::close() noexcept {
    shmbus_publisher_close(pub_);
    pub_ = nullptr;
}

shmbus_publisher* Publisher::handle() const {
    if (!pub_) throw py::value_error("the publisher is closed");
    return pub_;
}

void Publisher::publish(py::handle data, const py::object& headers, const py::object& key, const std::optional<double>& ttl,
                        const std::optional<double>& delay, const std::optional<uint64_t>& deliver_at_ns) {
    if (!key.is_none() || ttl || delay || deliver_at_ns) {
        const py::buffer_info info = read_buffer(py::reinterpret_borrow<py::buffer>(data));
        std::vector<std::string> keep;
        const auto h = to_headers(headers, keep);
        std::string key_bytes;
        if (py::isinstance<py::str>(key)) key_bytes = key.cast<std::string>();
        else if (py::isinstance<py::bytes>(key)) key_bytes = std::string(key.cast<py::bytes>());
        else if (!key.is_none()) throw py::type_error("key: str or bytes");
        shmbus_message_options o = SHMBUS_MESSAGE_OPTIONS_INIT;
        o.headers = h.data();
        o.header_count = h.size();
        o.key = key_bytes.data();
        o.key_size = key_bytes.size();
        if (ttl) o.ttl_ns = std::max<int64_t>(1, timeout_ns(ttl));
        if (delay) o.delay_ns = std::max<int64_t>(1, timeout_ns(delay));
        if (deliver_at_ns) o.deliver_at_ns = *deliver_at_ns;
        return check(shmbus_publish_message(handle(), info.ptr, bytes_of(info), &o));
    }
    // bytes, the common case, without the buffer protocol's request and release.
    if (PyBytes_CheckExact(data.ptr()) && headers.is_none())
        return check(shmbus_publish(handle(), PyBytes_AS_STRING(data.ptr()), std::size_t(PyBytes_GET_SIZE(data.ptr()))));
    const py::buffer_info info = read_buffer(py::reinterpret_borrow<py::buffer>(data));
    if (headers.is_none()) return check(shmbus_publish(handle(), info.ptr, bytes_of(info)));
    std::vector<std::string> keep;
    const auto h = to_headers(headers, keep);
    check(shmbus_publish_headers(handle(), info.ptr, bytes_of(info), h.data(), h.size()));
}

void Publisher::publish_sequence(uint64_t sequence, const py::buffer& data, const py::object& headers) {
    const py::buffer_info info = read_buffer(data);
    std::vector<std::string> keep;
    const auto h = to_headers(headers, keep);
    check(shmbus_publish_sequence(handle(), sequence, info.ptr, bytes_of(info), h.data(), h.size()));
}

std::size_t Publisher::publish_batch(const py::sequence& payloads) {
    std::vector<py::buffer_info> infos;
    std::vector<shmbus_buffer> buffers;
    infos.reserve(payloads.size());
    buffers.reserve(payloads.size());
    for (py::handle p : payloads) {
        if (PyBytes_CheckExact(p.ptr())) {
            buffers.push_back({PyBytes_AS_STRING(p.ptr()), std::size_t(PyBytes_GET_SIZE(p.ptr()))});
            continue;
        }
        infos.push_back(read_buffer(py::reinterpret_borrow<py::buffer>(p)));
        buffers.push_back({infos.back().ptr, bytes_of(infos.back())});
    }
    std::size_t published = 0;
    check(shmbus_publish_batch(handle(), buffers.data(), buffers.size(), &published));
    return published;
}

py::object Publisher::loan(py::object self, std::size_t size) {
    void* data = nullptr;
    check(shmbus_loan(handle(), size, &data));
    return py::cast(Loan(std::move(self), data, size));
}

uint64_t Publisher::last_id() const { return shmbus_publisher_last_id(handle()); }
uint64_t Publisher::last_sequence() const { return shmbus_publisher_last_sequence(handle()); }

void Loan::commit() {
    if (!data_) throw py::value_error("the loan was committed or abandoned already");
    data_ = nullptr;
    check(shmbus_loan_commit(publisher_.cast<Publisher&>().handle()));
}

void Loan::abandon() noexcept {
    if (!data_) return;
    data_ = nullptr;
    try {
        shmbus_loan_abandon(publisher_.cast<Publisher&>().handle());
    } catch (...) {  // the publisher was closed: it gave the space back then
    }
}

py::buffer_info Loan::buffer() {
    if (!data_) throw py::value_error("the loan was committed or abandoned already");
    return py::buffer_info(data_, 1, py::format_descriptor<uint8_t>::format(), py::ssize_t(size_), false);
}

// ---- Subscription and Message ----

Subscription::Subscription(Bus& bus, const std::string& topic, const std::optional<std::string>& durable,
                           const std::optional<std::string>& group, const py::object& start, bool auto_ack,
                           bool busy_spin, const std::optional<double>& stream_backoff)
    : topic_(topic) {
    shmbus_subscribe_options o = SHMBUS_SUBSCRIBE_OPTIONS_INIT;
    if (durable) o.durable = durable->c_str();
    if (group) o.group = group->c_str();
    if (py::isinstance<py::int_>(start)) {
        o.start = SHMBUS_START_ID;
        o.start_id = start.cast<uint64_t>();
    } else {
        const auto s = start.cast<std::string>();
        if (s == "latest") o.start = SHMBUS_START_LATEST;
        else if (s == "earliest") o.start = SHMBUS_START_EARLIEST;
        else if (s == "latest-per-key") o.start = SHMBUS_START_LATEST_PER_KEY;
        else throw py::value_error("start is \"earliest\", \"latest\", \"latest-per-key\" or a message id, not \"" + s + "\"");
    }
    o.auto_ack = auto_ack ? 1 : 0;
    o.busy_spin = busy_spin ? 1 : 0;
    // None: the C API's default (32 us); 0: never wait, which the C API spells as below 0.
    if (stream_backoff) {
        if (std::isnan(*stream_backoff) || *stream_backoff < 0)
            throw py::value_error("stream_backoff is a number of seconds, 0 or more (or None)");
        o.stream_backoff_ns = *stream_backoff == 0 ? -1 : std::max<int64_t>(1, timeout_ns(stream_backoff));
    }
    check(shmbus_subscribe(bus.handle(), topic.c_str(), &o, &sub_));
}

void Subscription::close() noexcept {
    forget_current();
    shmbus_subscriber_close(sub_);
    sub_ = nullptr;
}

shmbus_subscriber* Subscription::handle() const {
    if (!sub_) throw py::value_error("the subscription is closed");
    return sub_;
}

void Subscription::forget_current() noexcept {
    if (current_) current_.cast<Message&>().release_payload();
    current_ = py::object();
}

py::object Subscription::receive(py::object self, const std::optional<double>& timeout) {
    shmbus_subscriber* s = handle();
    forget_current();
    const int64_t total = timeout_ns(timeout);
    shmbus_message m;
    int status = shmbus_next(s, 0, &m);
    status = wait_in_slices(status, total, [&](int64_t slice) { return shmbus_next(s, slice, &m); });
    if (status == SHMBUS_EMPTY) return py::none();
    check(status);
    current_ = py::cast(Message(std::move(self), m));
    return current_;
}

py::object Subscription::next(py::object self) {
    try {
        return receive(std::move(self), std::nullopt);
    } catch (py::error_already_set& e) {
        // The topic was deleted and everything published was delivered: the iteration ends.
        if (e.matches(py::module_::import("shmbus._errors").attr("TopicDeleted"))) throw py::stop_iteration();
        throw;
    }
}

py::list Subscription::receive_batch(std::size_t max, const std::optional<double>& timeout) {
    shmbus_subscriber* s = handle();
    forget_current();
    py::list out;
    auto add = [](void* user, const shmbus_message* m) {
        static_cast<py::list*>(user)->append(py::bytes(static_cast<const char*>(m->payload), m->size));
    };
    int status = shmbus_poll(s, add, &out, max, nullptr);
    const int64_t total = timeout_ns(timeout);
    if (status != SHMBUS_EMPTY || total == 0) {
        if (status != SHMBUS_EMPTY) check(status);
        return out;
    }
    // Nothing yet: wait without the GIL, copying what comes into C++ strings, made bytes after.
    std::vector<std::string> got;
    auto keep = [](void* user, const shmbus_message* m) {
        static_cast<std::vector<std::string>*>(user)->emplace_back(static_cast<const char*>(m->payload), m->size);
    };
    status = wait_in_slices(status, total, [&](int64_t slice) { return shmbus_receive(s, keep, &got, slice, max, nullptr); });
    for (const std::string& p : got) out.append(py::bytes(p));
    if (status != SHMBUS_EMPTY) check(status);
    return out;
}

uint64_t Subscription::next_id() const { return shmbus_subscriber_next_id(handle()); }
uint64_t Subscription::lost() const { return shmbus_subscriber_lost(handle()); }

Subscription& Message::sub() const { return subscription_.cast<Subscription&>(); }

py::object Message::payload() {
    if (!view_) {
        PyObject* mv = PyMemoryView_FromMemory(static_cast<char*>(const_cast<void*>(m_.payload)), py::ssize_t(m_.size), PyBUF_READ);
        if (!mv) throw py::error_already_set();
        view_ = py::reinterpret_steal<py::object>(mv);
    }
    return view_;
}

void Message::release_payload() noexcept {
    if (!view_) return;
    PyObject* r = PyObject_CallMethod(view_.ptr(), "release", nullptr);
    if (r) Py_DECREF(r);
    else PyErr_Clear();  // a buffer made from it (numpy) still holds it
}

py::object Message::producer() const {
    if (m_.producer_size == 0) return py::none();
    return py::str(m_.producer, m_.producer_size);
}

py::object Message::key() const {
    const void* key = nullptr;
    std::size_t size = 0;
    if (shmbus_message_key(&m_, &key, &size) != SHMBUS_OK) return py::none();
    return py::bytes(static_cast<const char*>(key), size);
}

py::str Message::topic() const { return py::str(sub().topic()); }

py::dict Message::headers() const {
    py::dict out;
    for (uint32_t i = 0; i < m_.header_count; ++i) {
        shmbus_header h;
        if (shmbus_message_header(&m_, i, &h) != SHMBUS_OK) break;
        py::str key(h.key, h.key_size);
        if (!out.contains(key)) out[key] = py::bytes(h.value, h.value_size);  // the first of a name, as C++ get()
    }
    return out;
}

void Message::ack() { check(shmbus_ack(sub().handle(), &m_)); }
void Message::nack(const std::optional<double>& delay) {
    check(shmbus_nack(sub().handle(), &m_, delay ? std::max<int64_t>(1, timeout_ns(delay)) : 0));
}
void Message::reject(const std::string& reason) { check(shmbus_reject(sub().handle(), &m_, reason.c_str())); }

std::string Message::repr() const {
    return "<shmbus.Message topic=" + sub().topic() + " id=" + std::to_string(m_.id) + " size=" + std::to_string(m_.size) +
           (m_.attempt > 1 ? " attempt=" + std::to_string(m_.attempt) : "") + ">";
}

// ---- WaitSet ----

WaitSet::WaitSet() { check(shmbus_waitset_new(&set_)); }

void WaitSet::close() noexcept {
    shmbus_waitset_free(set_);
    set_ = nullptr;
    try {
        members_.clear();
    } catch (...) {
    }
}

void WaitSet::add(py::object subscription) {
    if (!set_) throw py::value_error("the wait set is closed");
    auto& s = subscription.cast<Subscription&>();
    check(shmbus_waitset_add(set_, s.handle()));
    members_[py::int_(reinterpret_cast<uintptr_t>(s.handle()))] = subscription;
}

void WaitSet::remove(py::object subscription) {
    if (!set_) throw py::value_error("the wait set is closed");
    auto& s = subscription.cast<Subscription&>();
    check(shmbus_waitset_remove(set_, s.handle()));
    members_.attr("pop")(py::int_(reinterpret_cast<uintptr_t>(s.handle())), py::none());
}

py::list WaitSet::wait(const std::optional<double>& timeout) {
    if (!set_) throw py::value_error("the wait set is closed");
    const std::size_t cap = std::max<std::size_t>(1, py::len(members_));
    std::vector<shmbus_subscriber*> ready(cap);
    std::size_t n = 0;
    const int64_t total = timeout_ns(timeout);
    int status = shmbus_waitset_wait(set_, 0, ready.data(), cap, &n);
    status = wait_in_slices(status, total, [&](int64_t slice) { return shmbus_waitset_wait(set_, slice, ready.data(), cap, &n); });
    if (status != SHMBUS_EMPTY) check(status);
    py::list out;
    for (std::size_t i = 0; i < n; ++i) {
        py::int_ key(reinterpret_cast<uintptr_t>(ready[i]));
        if (members_.contains(key)) out.append(members_[key]);
    }
    return out;
}

int WaitSet::fileno() {
    if (!set_) throw py::value_error("the wait set is closed");
    int fd = -1;
    check(shmbus_waitset_fd(set_, &fd));
    return fd;
}

}  // namespace shmbus::python
