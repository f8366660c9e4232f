// The C API (shmbus/shmbus_c.h) over the C++ library: clients, publishers and subscribers, and
// the one thing C++ does not have: a borrowed message that stays valid until the next call
// (shmbus_next), with auto-ack deferred until then. Statuses: statuses.cpp; wait sets: wait_set.cpp.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "c_api/handles.h"

using shmbus::AckStatus;
using shmbus::Message;
using shmbus::PublishStatus;
using shmbus::ReceiveStatus;
using namespace shmbus::c_api;

namespace {

// A C message carries the C++ one in its reserved words, copied by value with the struct.
static_assert(std::is_trivially_copyable_v<Message> && sizeof(Message) <= sizeof(shmbus_message::reserved_) &&
              alignof(Message) <= alignof(uint64_t));

std::vector<shmbus::Header> to_headers(const shmbus_header* headers, std::size_t count) {
    std::vector<shmbus::Header> out;
    out.reserve(count);
    for (std::size_t i = 0; i < count; ++i)
        out.push_back({{headers[i].key, headers[i].key_size}, {headers[i].value, headers[i].value_size}});
    return out;
}

const Message& message_in(const shmbus_message* m) noexcept { return *reinterpret_cast<const Message*>(m->reserved_); }

void to_c(const Message& m, shmbus_message& out) noexcept {
    out.id = m.id;
    out.timestamp_ns = m.timestamp_ns;
    out.lost_before = m.lost_before;
    out.attempt = m.attempt;
    out.header_count = m.headers.empty() ? 0 : uint32_t(m.headers.size());
    out.payload = m.payload.data();
    out.size = m.payload.size();
    out.producer = m.producer.data();
    out.producer_size = m.producer.size();
    out.sequence = m.sequence;
    std::memcpy(out.reserved_, &m, sizeof m);
}


// The auto-ack of what shmbus_next lent out, when the next call on the subscriber comes.
void settle_borrowed(shmbus_subscriber* s) noexcept {
    if (!s->borrowed) return;
    s->borrowed = false;
    if (s->auto_ack) (void)s->subscriber.ack(s->last);
}

// Runs `handler` for each message and, with auto_ack, acks it once the handler returned.
struct Delivery {
    shmbus_subscriber* s;
    shmbus_handler handler;
    void* user;
    void operator()(const Message& m) const noexcept {
        shmbus_message c;
        to_c(m, c);
        handler(user, &c);
        if (s->auto_ack && s->group) (void)s->subscriber.ack(m);  // per message; plain subscriptions ack once per poll
    }
};

int finish_poll(shmbus_subscriber* s, shmbus::PollResult r, uint32_t* delivered) noexcept {
    if (s->auto_ack && !s->group && r.count > 0) s->subscriber.ack_delivered();
    if (delivered) *delivered = r.count;
    return status_of(r.status);
}

// A caller's options struct as this library reads it: the fields past what the caller's
// struct_size covers (a program built against an older, shorter struct) keep `defaults`.
template <class Options>
Options as_known(const Options& given, Options defaults) noexcept {
    std::memcpy(&defaults, &given, std::min(sizeof defaults, given.struct_size));
    return defaults;
}

}  // namespace

extern "C" {

int shmbus_connect(const char* dir, shmbus_client** out) {
    if (!out) return null_argument("out");
    *out = nullptr;
    try {
        shmbus::ClientOptions o;
        if (dir) o.dir = dir;
        auto c = shmbus::Client::connect(std::move(o));
        if (!c) return fail(c.error());
        *out = new shmbus_client{std::move(c.value())};
        return SHMBUS_OK;
    } catch (...) {
        return out_of_memory();
    }
}

void shmbus_client_close(shmbus_client* client) { delete client; }

int shmbus_create_topic(shmbus_client* client, const char* topic, const shmbus_topic_config* config) {
    if (!client || !topic) return null_argument(!client ? "client" : "topic");
    try {
        shmbus::TopicConfig c;
        if (config) {
            if (config->struct_size < sizeof(shmbus_topic_config))
                return fail(SHMBUS_INVALID_ARGUMENT, "shmbus_topic_config.struct_size is too small");
            if (config->capacity) c.capacity = config->capacity;
            c.max_message = config->max_message;
            if (config->on_full < 0 || config->on_full > 2) return fail(SHMBUS_INVALID_ARGUMENT, "on_full must be 0, 1 or 2");
            c.on_full = shmbus::OnFull(config->on_full);
        }
        auto r = client->client.create_topic(topic, c);
        return r ? SHMBUS_OK : fail(r.error());
    } catch (...) {
        return out_of_memory();
    }
}

int shmbus_delete_topic(shmbus_client* client, const char* topic, int force) {
    if (!client || !topic) return null_argument(!client ? "client" : "topic");
    auto r = client->client.delete_topic(topic, force != 0);
    return r ? SHMBUS_OK : fail(r.error());
}

int shmbus_publisher_open(shmbus_client* client, const char* topic, const shmbus_publisher_options* options,
                          shmbus_publisher** out) {
    if (!client || !topic || !out) return null_argument(!client ? "client" : !topic ? "topic" : "out");
    *out = nullptr;
    try {
        shmbus::PublisherOptions o;
        if (options) {
            if (options->struct_size < offsetof(shmbus_publisher_options, reuse_space))
                return fail(SHMBUS_INVALID_ARGUMENT, "shmbus_publisher_options.struct_size is too small");
            const shmbus_publisher_options given = as_known(*options, shmbus_publisher_options SHMBUS_PUBLISHER_OPTIONS_INIT);
            if (given.producer) o.producer = given.producer;
            if (given.block_timeout_ns > 0) o.block_timeout = std::chrono::nanoseconds(given.block_timeout_ns);
            o.reuse_space = given.reuse_space != 0;
        }
        auto p = client->client.publisher(topic, std::move(o));
        if (!p) return fail(p.error());
        *out = new shmbus_publisher{std::move(p.value()), {}};
        return SHMBUS_OK;
    } catch (...) {
        return out_of_memory();
    }
}

void shmbus_publisher_close(shmbus_publisher* publisher) { delete publisher; }

int shmbus_publish(shmbus_publisher* publisher, const void* data, size_t size) {
    if (!publisher || (!data && size)) return null_argument(!publisher ? "publisher" : "data");
    return status_of(publisher->publisher.publish(std::span<const std::byte>(static_cast<const std::byte*>(data), size)));
}

int shmbus_publish_headers(shmbus_publisher* publisher, const void* data, size_t size, const shmbus_header* headers,
                           size_t header_count) {
    if (!publisher || (!data && size) || (!headers && header_count)) return null_argument(!publisher ? "publisher" : "data or headers");
    try {
        const auto h = to_headers(headers, header_count);
        return status_of(publisher->publisher.publish(std::span<const std::byte>(static_cast<const std::byte*>(data), size), h));
    } catch (...) {
        return out_of_memory();
    }
}

int shmbus_publish_message(shmbus_publisher* publisher, const void* data, size_t size, const shmbus_message_options* options) {
    if (!publisher || (!data && size) || !options) return null_argument(!publisher ? "publisher" : !options ? "options" : "data");
    const shmbus_message_options o = as_known(*options, shmbus_message_options SHMBUS_MESSAGE_OPTIONS_INIT);
    if ((!o.headers && o.header_count) || (!o.key && o.key_size)) return null_argument("headers or key");
    try {
        const auto h = to_headers(o.headers, o.header_count);
        const shmbus::MessageOptions m{.headers = h,
                                       .key = std::string_view(static_cast<const char*>(o.key), o.key_size),
                                       .ttl = std::chrono::nanoseconds(std::max<int64_t>(0, o.ttl_ns)),
                                       .delay = std::chrono::nanoseconds(std::max<int64_t>(0, o.delay_ns)),
                                       .deliver_at_ns = o.deliver_at_ns};
        return status_of(publisher->publisher.publish(std::span<const std::byte>(static_cast<const std::byte*>(data), size), m));
    } catch (...) {
        return out_of_memory();
    }
}

int shmbus_publish_sequence(shmbus_publisher* publisher, uint64_t sequence, const void* data, size_t size,
                            const shmbus_header* headers, size_t header_count) {
    if (!publisher || (!data && size) || (!headers && header_count)) return null_argument(!publisher ? "publisher" : "data or headers");
    try {
        const auto h = to_headers(headers, header_count);
        return status_of(publisher->publisher.publish_sequence(
            sequence, std::span<const std::byte>(static_cast<const std::byte*>(data), size), h));
    } catch (...) {
        return out_of_memory();
    }
}

int shmbus_publish_batch(shmbus_publisher* publisher, const shmbus_buffer* payloads, size_t count, size_t* published) {
    if (published) *published = 0;
    if (!publisher || (!payloads && count)) return null_argument(!publisher ? "publisher" : "payloads");
    // shmbus_buffer and std::span<const std::byte> hold the same two words; spans are made in
    // chunks on the stack rather than relying on that.
    constexpr std::size_t kChunk = 256;
    std::span<const std::byte> spans[kChunk];
    std::size_t done = 0;
    while (done < count) {
        const std::size_t n = std::min(kChunk, count - done);
        for (std::size_t i = 0; i < n; ++i)
            spans[i] = {static_cast<const std::byte*>(payloads[done + i].data), payloads[done + i].size};
        const shmbus::BatchResult r = publisher->publisher.publish_batch(std::span<const std::span<const std::byte>>(spans, n));
        done += r.published;
        if (published) *published = done;
        if (r.status != PublishStatus::ok) return status_of(r.status);
    }
    return SHMBUS_OK;
}

int shmbus_loan(shmbus_publisher* publisher, size_t size, void** data) {
    if (!publisher || !data) return null_argument(!publisher ? "publisher" : "data");
    *data = nullptr;
    if (publisher->loan.active()) return fail(SHMBUS_INVALID_ARGUMENT, "the publisher has an open loan: commit or abandon it first");
    const PublishStatus s = publisher->publisher.loan(size, publisher->loan);
    if (s == PublishStatus::ok) *data = publisher->loan.data().data();
    return status_of(s);
}

int shmbus_loan_commit(shmbus_publisher* publisher) {
    if (!publisher) return null_argument("publisher");
    if (!publisher->loan.active()) return status_of(PublishStatus::aborted);
    return status_of(publisher->loan.commit());
}

void shmbus_loan_abandon(shmbus_publisher* publisher) {
    if (publisher && publisher->loan.active()) publisher->loan.abandon();
}

uint64_t shmbus_publisher_last_id(const shmbus_publisher* publisher) { return publisher ? publisher->publisher.last_id() : 0; }
uint64_t shmbus_publisher_last_sequence(const shmbus_publisher* publisher) {
    return publisher ? publisher->publisher.last_sequence() : 0;
}

int shmbus_subscribe(shmbus_client* client, const char* topic, const shmbus_subscribe_options* options,
                     shmbus_subscriber** out) {
    if (!client || !topic || !out) return null_argument(!client ? "client" : !topic ? "topic" : "out");
    *out = nullptr;
    try {
        shmbus::SubscribeOptions o;
        bool auto_ack = true;
        if (options) {
            if (options->struct_size < offsetof(shmbus_subscribe_options, stream_backoff_ns))
                return fail(SHMBUS_INVALID_ARGUMENT, "shmbus_subscribe_options.struct_size is too small");
            const shmbus_subscribe_options given = as_known(*options, shmbus_subscribe_options SHMBUS_SUBSCRIBE_OPTIONS_INIT);
            if (given.durable) o.durable_name = given.durable;
            if (given.group) o.group = given.group;
            switch (given.start) {
                case SHMBUS_START_LATEST: o.from = shmbus::StartFrom::latest; break;
                case SHMBUS_START_EARLIEST: o.from = shmbus::StartFrom::earliest; break;
                case SHMBUS_START_ID: o.from = shmbus::StartFrom::id, o.from_id = given.start_id; break;
                case SHMBUS_START_LATEST_PER_KEY: o.from = shmbus::StartFrom::latest_per_key; break;
                default: return fail(SHMBUS_INVALID_ARGUMENT, "start must be SHMBUS_START_LATEST, _EARLIEST, _ID or _LATEST_PER_KEY");
            }
            auto_ack = given.auto_ack != 0;
            if (given.busy_spin) o.wait = shmbus::WaitStrategy::busy_spin;
            if (given.stream_backoff_ns != 0)
                o.stream_backoff = std::chrono::nanoseconds(std::max<int64_t>(0, given.stream_backoff_ns));
        }
        // The C layer acks itself (after the handler, or when shmbus_next is called again), and
        // lends messages past the handler: nothing is read in place under a hold that ends with it.
        o.auto_ack = false;
        o.in_place_from = 0;
        auto s = client->client.subscribe(topic, std::move(o));
        if (!s) return fail(s.error());
        const bool group = s->in_group();
        const bool acks_matter = group || s->durable();
        *out = new shmbus_subscriber{std::move(s.value()), auto_ack, group, acks_matter};
        return SHMBUS_OK;
    } catch (...) {
        return out_of_memory();
    }
}

void shmbus_subscriber_close(shmbus_subscriber* subscriber) {
    if (!subscriber) return;
    settle_borrowed(subscriber);
    delete subscriber;
}

int shmbus_poll(shmbus_subscriber* subscriber, shmbus_handler handler, void* user, size_t max, uint32_t* delivered) {
    if (!subscriber || !handler) return null_argument(!subscriber ? "subscriber" : "handler");
    settle_borrowed(subscriber);
    Delivery d{subscriber, handler, user};
    return finish_poll(subscriber, subscriber->subscriber.poll(d, max), delivered);
}

int shmbus_receive(shmbus_subscriber* subscriber, shmbus_handler handler, void* user, int64_t timeout_ns, size_t max,
                   uint32_t* delivered) {
    if (!subscriber || !handler) return null_argument(!subscriber ? "subscriber" : "handler");
    settle_borrowed(subscriber);
    Delivery d{subscriber, handler, user};
    return finish_poll(subscriber, subscriber->subscriber.receive(d, ns(timeout_ns), max), delivered);
}

int shmbus_next(shmbus_subscriber* subscriber, int64_t timeout_ns, shmbus_message* out) {
    if (!subscriber || !out) return null_argument(!subscriber ? "subscriber" : "out");
    settle_borrowed(subscriber);
    // Kept for the deferred auto-ack only where an ack does something (durable, group).
    const bool keep = subscriber->auto_ack && subscriber->acks_matter;
    auto lend = [&](const Message& m) {
        to_c(m, *out);
        if (keep) subscriber->last = m;
    };
    const shmbus::PollResult r = subscriber->subscriber.receive(lend, ns(timeout_ns), 1);
    if (r.count == 0) return status_of(r.status == ReceiveStatus::ok ? ReceiveStatus::empty : r.status);
    subscriber->borrowed = keep;
    return SHMBUS_OK;
}

int shmbus_ack(shmbus_subscriber* subscriber, const shmbus_message* message) {
    if (!subscriber || !message) return null_argument(!subscriber ? "subscriber" : "message");
    return status_of(subscriber->subscriber.ack(message_in(message)));
}

int shmbus_nack(shmbus_subscriber* subscriber, const shmbus_message* message, int64_t delay_ns) {
    if (!subscriber || !message) return null_argument(!subscriber ? "subscriber" : "message");
    const Message& m = message_in(message);
    return status_of(delay_ns > 0 ? subscriber->subscriber.nack(m, std::chrono::nanoseconds(delay_ns)) : subscriber->subscriber.nack(m));
}

int shmbus_reject(shmbus_subscriber* subscriber, const shmbus_message* message, const char* reason) {
    if (!subscriber || !message) return null_argument(!subscriber ? "subscriber" : "message");
    return status_of(subscriber->subscriber.reject(message_in(message), reason ? reason : ""));
}

uint64_t shmbus_subscriber_next_id(const shmbus_subscriber* subscriber) {
    return subscriber ? subscriber->subscriber.next_id() : 0;
}
uint64_t shmbus_subscriber_lost(const shmbus_subscriber* subscriber) { return subscriber ? subscriber->subscriber.lost() : 0; }
const char* shmbus_subscriber_topic(const shmbus_subscriber* subscriber) {
    return subscriber ? subscriber->subscriber.topic().c_str() : "";
}

int shmbus_message_header(const shmbus_message* message, uint32_t index, shmbus_header* out) {
    if (!message || !out) return null_argument(!message ? "message" : "out");
    uint32_t i = 0;
    for (const shmbus::Header& h : message_in(message).headers) {
        if (i++ != index) continue;
        *out = {h.key.data(), h.key.size(), h.value.data(), h.value.size()};
        return SHMBUS_OK;
    }
    return fail(SHMBUS_INVALID_ARGUMENT, "no header at index " + std::to_string(index));
}

int shmbus_message_key(const shmbus_message* message, const void** key, size_t* size) {
    if (!message || !key || !size) return null_argument(!message ? "message" : !key ? "key" : "size");
    const std::string_view k = message_in(message).key;
    *key = k.data();
    *size = k.size();
    return k.empty() ? SHMBUS_EMPTY : SHMBUS_OK;
}

uint64_t shmbus_message_expires_at(const shmbus_message* message) { return message ? message_in(message).expires_at_ns : 0; }

uint64_t shmbus_message_deliver_at(const shmbus_message* message) { return message ? message_in(message).deliver_at_ns : 0; }

int shmbus_message_header_get(const shmbus_message* message, const char* key, shmbus_header* out) {
    if (!message || !key || !out) return null_argument(!message ? "message" : !key ? "key" : "out");
    for (const shmbus::Header& h : message_in(message).headers) {
        if (h.key != key) continue;
        *out = {h.key.data(), h.key.size(), h.value.data(), h.value.size()};
        return SHMBUS_OK;
    }
    return SHMBUS_EMPTY;
}

}  // extern "C"
