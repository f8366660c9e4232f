// The `shmbus._shmbus` extension: the classes of handles.h as Python types. The package around it
// (shmbus/__init__.py) adds asyncio and the exceptions; its stubs (__init__.pyi) the type hints.
#include <pybind11/stl.h>

#include "handles.h"

namespace shmbus::python {

[[noreturn]] void raise_status(int status) {
    py::object errors = py::module_::import("shmbus._errors");
    py::object error = errors.attr("error_for")(status, shmbus_status_name(status), shmbus_last_error());
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    throw py::error_already_set();
}

}  // namespace shmbus::python

PYBIND11_MODULE(_shmbus, m) {
    using namespace shmbus::python;
    using py::arg;
    m.doc() = "shmbus: a shared-memory message bus for processes on one Linux host (the C API's module)";
    m.attr("version") = shmbus_version();

    py::class_<Bus>(m, "Bus")
        .def(py::init<const std::optional<std::string>&>(), arg("dir") = py::none())
        .def("close", &Bus::close)
        .def_readonly("dir", &Bus::dir)
        .def("create_topic",
             [](Bus& b, const std::string& topic, uint64_t capacity, uint32_t max_message, const std::string& on_full) {
                 shmbus_topic_config c = SHMBUS_TOPIC_CONFIG_INIT;
                 c.capacity = capacity;
                 c.max_message = max_message;
                 if (on_full == "block") c.on_full = 0;
                 else if (on_full == "fail") c.on_full = 1;
                 else if (on_full == "overwrite") c.on_full = 2;
                 else throw py::value_error("on_full is \"block\", \"fail\" or \"overwrite\"");
                 check(shmbus_create_topic(b.handle(), topic.c_str(), &c));
             },
             arg("topic"), py::kw_only(), arg("capacity") = 0, arg("max_message") = 0, arg("on_full") = "block")
        .def("delete_topic", [](Bus& b, const std::string& topic, bool force) {
                 check(shmbus_delete_topic(b.handle(), topic.c_str(), force ? 1 : 0));
             },
             arg("topic"), py::kw_only(), arg("force") = false)
        .def("publisher", [](Bus& b, const std::string& topic, const std::optional<std::string>& producer,
                             const std::optional<double>& block_timeout, bool reuse_space) {
                 return std::make_unique<Publisher>(b, topic, producer, block_timeout, reuse_space);
             },
             arg("topic"), py::kw_only(), arg("producer") = py::none(), arg("block_timeout") = py::none(),
             arg("reuse_space") = false, py::keep_alive<0, 1>())
        .def("subscribe", [](Bus& b, const std::string& topic, const std::optional<std::string>& durable,
                             const std::optional<std::string>& group, const py::object& start, bool auto_ack, bool busy_spin,
                             const std::optional<double>& stream_backoff) {
                 return std::make_unique<Subscription>(b, topic, durable, group, start, auto_ack, busy_spin, stream_backoff);
             },
             arg("topic"), arg("durable") = py::none(), arg("group") = py::none(), arg("start") = "latest",
             py::kw_only(), arg("auto_ack") = true, arg("busy_spin") = false, arg("stream_backoff") = py::none(),
             py::keep_alive<0, 1>());

    py::class_<Publisher>(m, "Publisher")
        .def("close", &Publisher::close)
        .def_property_readonly("topic", &Publisher::topic)
        .def("publish", &Publisher::publish, arg("data"), arg("headers") = py::none(), py::kw_only(), arg("key") = py::none(),
             arg("ttl") = py::none(), arg("delay") = py::none(), arg("deliver_at_ns") = py::none())
        .def("publish_sequence", &Publisher::publish_sequence, arg("sequence"), arg("data"), arg("headers") = py::none())
        .def("publish_batch", &Publisher::publish_batch, arg("payloads"))
        .def("loan", [](py::object self, std::size_t size) { return self.cast<Publisher&>().loan(self, size); }, arg("size"))
        .def_property_readonly("last_id", &Publisher::last_id)
        .def_property_readonly("last_sequence", &Publisher::last_sequence);

    py::class_<Loan>(m, "Loan", py::buffer_protocol())
        .def_buffer(&Loan::buffer)
        .def("commit", &Loan::commit)
        .def("abandon", &Loan::abandon)
        .def_property_readonly("open", &Loan::open);

    py::class_<Subscription>(m, "Subscription")
        .def("close", &Subscription::close)
        .def_property_readonly("topic", &Subscription::topic)
        .def_property_readonly("next_id", &Subscription::next_id)
        .def_property_readonly("lost", &Subscription::lost)
        .def_property_readonly("closed", &Subscription::closed)
        .def("receive", [](py::object self, const std::optional<double>& timeout) {
                 return self.cast<Subscription&>().receive(self, timeout);
             },
             arg("timeout") = py::none())
        .def("receive_batch", &Subscription::receive_batch, arg("max") = 1024, arg("timeout") = py::none())
        .def("__iter__", [](py::object self) { return self; })
        .def("__next__", [](py::object self) { return self.cast<Subscription&>().next(self); });

    py::class_<Message>(m, "Message")
        .def_property_readonly("payload", &Message::payload)
        .def_property_readonly("id", &Message::id)
        .def_property_readonly("topic", &Message::topic)
        .def_property_readonly("headers", &Message::headers)
        .def_property_readonly("timestamp_ns", &Message::timestamp_ns)
        .def_property_readonly("lost_before", &Message::lost_before)
        .def_property_readonly("attempt", &Message::attempt)
        .def_property_readonly("producer", &Message::producer)
        .def_property_readonly("sequence", &Message::sequence)
        .def_property_readonly("key", &Message::key)
        .def_property_readonly("expires_at_ns", &Message::expires_at_ns)
        .def_property_readonly("deliver_at_ns", &Message::deliver_at_ns)
        .def("ack", &Message::ack)
        .def("nack", &Message::nack, arg("delay") = py::none())
        .def("reject", &Message::reject, arg("reason") = "")
        .def("__repr__", &Message::repr);

    py::class_<WaitSet>(m, "WaitSet")
        .def(py::init<>())
        .def("close", &WaitSet::close)
        .def("add", &WaitSet::add, arg("subscription"))
        .def("remove", &WaitSet::remove, arg("subscription"))
        .def("wait", &WaitSet::wait, arg("timeout") = py::none())
        .def("fileno", &WaitSet::fileno);
}
