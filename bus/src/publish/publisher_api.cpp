// The public Publisher and Loan over PublisherCore: every publish builds one record (a named
// producer's stamp, the header block, the payload) and commits it.
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "publish/publisher_core.h"
#include "core/futex.h"
#include "groups/group.h"
#include "core/slots.h"

namespace shmbus {

const char* to_string(PublishStatus status) noexcept {
    switch (status) {
        case PublishStatus::ok: return "ok";
        case PublishStatus::would_block: return "would_block";
        case PublishStatus::timed_out: return "timed_out";
        case PublishStatus::too_large: return "too_large";
        case PublishStatus::aborted: return "aborted";
        case PublishStatus::revoked: return "revoked";
        case PublishStatus::corrupt: return "corrupt";
        case PublishStatus::deleted: return "deleted";
        case PublishStatus::bad_headers: return "bad_headers";
        case PublishStatus::duplicate: return "duplicate";
        case PublishStatus::no_producer: return "no_producer";
        case PublishStatus::bad_key: return "bad_key";
    }
    return "unknown";
}

// ---- Loan ----

Loan::Loan(Loan&& other) noexcept { *this = std::move(other); }

Loan& Loan::operator=(Loan&& other) noexcept {
    if (this != &other) {
        abandon();
        core_ = std::exchange(other.core_, nullptr);
        position_ = other.position_;
        id_ = other.id_;
        sequence_ = other.sequence_;
        data_ = other.data_;
    }
    return *this;
}

Loan::~Loan() { abandon(); }

PublishStatus Loan::commit() noexcept {
    if (core_ == nullptr) return PublishStatus::aborted;
    return std::exchange(core_, nullptr)->commit_message(position_, sequence_);
}

void Loan::abandon() noexcept {
    if (core_ == nullptr) return;
    auto* core = std::exchange(core_, nullptr);
    core->seg.producers().aborted_loans.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
    (void)core->commit_record(position_, layout::RecordType::skip);  // revoked: already a skip record
}

namespace {

PublishStatus publish_plain(detail::PublisherCore& core, std::span<const std::byte> payload, std::chrono::nanoseconds timeout) noexcept;

BatchResult publish_each(detail::PublisherCore& core, std::span<const std::span<const std::byte>> payloads,
                         std::chrono::nanoseconds timeout) noexcept {
    BatchResult r{PublishStatus::ok, 0};
    for (const auto& p : payloads) {
        r.status = publish_plain(core, p, timeout);
        if (r.status != PublishStatus::ok) break;
        ++r.published;
    }
    return r;
}

// A message's meta block (layout/record.h, kRecordHasMeta): what it holds, and its size (0: none).
struct Meta {
    uint32_t fields = 0;
    uint64_t expires_at_ns = 0;
    uint64_t deliver_at_ns = 0;
    std::string_view key;
    std::size_t bytes = 0;
};
Meta meta_of(detail::PublisherCore& core, const MessageOptions& message) noexcept {
    Meta meta;
    const auto ttl = message.ttl.count() > 0 ? uint64_t(message.ttl.count()) : core.default_ttl_ns;
    const bool delayed = message.deliver_at_ns != 0 || message.delay.count() > 0;
    // The key's size alone first: copying the key (16 bytes) from options the caller has just
    // built with 8-byte stores misses store forwarding, a stall a message without one need not pay.
    if (ttl == 0 && !delayed && message.key.empty()) return meta;
    meta.key = message.key;
    // The times are CLOCK_REALTIME, as Message::timestamp_ns is: read once, only for a message that has them.
    const uint64_t now = (ttl != 0 || (delayed && message.deliver_at_ns == 0)) ? core.clock.now_ns() : 0;
    if (ttl != 0) {
        meta.fields |= layout::kMetaExpiresAt;
        meta.expires_at_ns = now + ttl;
    }
    if (delayed) {
        meta.fields |= layout::kMetaDeliverAt;
        meta.deliver_at_ns = message.deliver_at_ns != 0 ? message.deliver_at_ns : now + uint64_t(message.delay.count());
    }
    meta.bytes = layout::meta_block_size(meta.fields, meta.key.size());
    return meta;
}

void write_meta(const Meta& meta, std::byte* out) noexcept {
    const uint16_t block = uint16_t(meta.bytes), key_length = uint16_t(meta.key.size());
    std::memcpy(out, &block, 2);
    std::memcpy(out + 2, &key_length, 2);
    std::memcpy(out + 4, &meta.fields, 4);
    std::size_t at = layout::kMetaPrefix;
    if (meta.fields & layout::kMetaExpiresAt) {
        std::memcpy(out + at, &meta.expires_at_ns, 8);
        at += 8;
    }
    if (meta.fields & layout::kMetaDeliverAt) {
        std::memcpy(out + at, &meta.deliver_at_ns, 8);
        at += 8;
    }
    if (!meta.key.empty()) std::memcpy(out + at, meta.key.data(), meta.key.size());
}

// What the options carry, checked before a named producer takes a sequence for the message.
PublishStatus check_options(const MessageOptions& message) noexcept {
    if (!message.headers.empty() && !detail::headers_ok(message.headers)) return PublishStatus::bad_headers;
    if (message.key.size() > layout::kMaxKey) return PublishStatus::bad_key;
    return PublishStatus::ok;
}

// Claims a record for `payload_size` bytes after the message's meta block and header block (the
// options checked), and writes those blocks; `payload_at` is where the payload goes.
PublishStatus claim_with_options(detail::PublisherCore& core, uint64_t sequence, std::size_t payload_size, const MessageOptions& message,
                                 std::chrono::nanoseconds timeout, detail::PublisherCore::MessageClaim& claim,
                                 std::byte*& payload_at) noexcept {
    const std::span<const Header> headers = message.headers;
    const Meta meta = meta_of(core, message);
    const std::size_t block = headers.empty() ? 0 : encoded_headers_size(headers);
    const PublishStatus st = core.claim_message(sequence, meta.bytes + block + payload_size, timeout, claim);
    if (st != PublishStatus::ok) return st;
    const uint16_t flags = uint16_t((meta.bytes != 0 ? layout::kRecordHasMeta : 0) | (block != 0 ? layout::kRecordHasHeaders : 0));
    if (flags != 0) {
        if (meta.bytes != 0) write_meta(meta, claim.data);
        if (block != 0) encode_headers(headers, claim.data + meta.bytes);
        auto& field = core.ring.header_at(claim.position)->flags;
        // Published by the commit store, as the header's other fields are.
        layout::put_field(field, uint16_t(layout::get_field(field) | flags));
    }
    payload_at = claim.data + meta.bytes + block;
    return PublishStatus::ok;
}

// Every publish: a named producer's stamp, then the meta block, then the header block, then the
// payload, in one record.
PublishStatus publish_message(detail::PublisherCore& core, uint64_t requested_sequence, std::span<const std::byte> payload,
                              const MessageOptions& message, std::chrono::nanoseconds timeout) noexcept {
    if (const PublishStatus bad = check_options(message); bad != PublishStatus::ok) return bad;
    const uint64_t sequence = core.named != nullptr ? core.choose_sequence(requested_sequence) : 0;
    if (core.named != nullptr && sequence == 0) return PublishStatus::duplicate;
    detail::PublisherCore::MessageClaim claim;
    std::byte* payload_at = nullptr;
    const PublishStatus st = claim_with_options(core, sequence, payload.size(), message, timeout, claim, payload_at);
    if (st != PublishStatus::ok) return st;
    if (!payload.empty()) detail::copy_into_ring(payload_at, payload.data(), payload.size(), core.lands_warm(claim.position, payload.size()));
    return core.commit_message(claim.position, sequence);
}

// A message without options (no headers, key, TTL or delay) from a publisher without a name, on a
// topic without a default TTL: a record holding the payload alone. The general path builds and
// reads a MessageOptions and a meta block for it, which measured a third of a publish's time.
PublishStatus publish_plain(detail::PublisherCore& core, std::span<const std::byte> payload, std::chrono::nanoseconds timeout) noexcept {
    if (core.named != nullptr || core.default_ttl_ns != 0) return publish_message(core, 0, payload, MessageOptions{}, timeout);
    return core.publish_payload(payload, timeout);
}

std::span<const std::byte> bytes_of(std::string_view text) noexcept {
    return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

}  // namespace

// ---- Publisher ----

Publisher::Publisher(std::unique_ptr<detail::PublisherCore> core) noexcept : core_(std::move(core)) {}
Publisher::Publisher(Publisher&&) noexcept = default;
Publisher& Publisher::operator=(Publisher&&) noexcept = default;
Publisher::~Publisher() = default;

PublishStatus Publisher::publish(std::span<const std::byte> payload) noexcept {
    return publish(payload, core_->options.block_timeout);
}

PublishStatus Publisher::publish(std::string_view payload) noexcept {
    return publish(payload, core_->options.block_timeout);
}

PublishStatus Publisher::publish(std::string_view payload, std::chrono::nanoseconds timeout) noexcept {
    return publish(bytes_of(payload), timeout);
}

PublishStatus Publisher::publish(std::span<const std::byte> payload, std::chrono::nanoseconds timeout) noexcept {
    return publish_plain(*core_, payload, timeout);
}

PublishStatus Publisher::publish(std::span<const std::byte> payload, std::span<const Header> headers) noexcept {
    return publish(payload, headers, core_->options.block_timeout);
}

PublishStatus Publisher::publish(std::string_view payload, std::span<const Header> headers) noexcept {
    return publish(bytes_of(payload), headers, core_->options.block_timeout);
}

PublishStatus Publisher::publish(std::span<const std::byte> payload, std::span<const Header> headers,
                                 std::chrono::nanoseconds timeout) noexcept {
    return publish_message(*core_, 0, payload, MessageOptions{.headers = headers}, timeout);
}

PublishStatus Publisher::publish(std::span<const std::byte> payload, std::span<const Header> headers, std::string_view key) noexcept {
    return publish_message(*core_, 0, payload, MessageOptions{.headers = headers, .key = key}, core_->options.block_timeout);
}

PublishStatus Publisher::publish(std::string_view payload, std::span<const Header> headers, std::string_view key) noexcept {
    return publish(bytes_of(payload), headers, key);
}

PublishStatus Publisher::publish(std::span<const std::byte> payload, const MessageOptions& message) noexcept {
    return publish_message(*core_, 0, payload, message, core_->options.block_timeout);
}

PublishStatus Publisher::publish(std::string_view payload, const MessageOptions& message) noexcept {
    return publish_message(*core_, 0, bytes_of(payload), message, core_->options.block_timeout);
}

PublishStatus Publisher::publish(std::span<const std::byte> payload, const MessageOptions& message,
                                 std::chrono::nanoseconds timeout) noexcept {
    return publish_message(*core_, 0, payload, message, timeout);
}

PublishStatus Publisher::publish(std::string_view payload, const MessageOptions& message, std::chrono::nanoseconds timeout) noexcept {
    return publish_message(*core_, 0, bytes_of(payload), message, timeout);
}

PublishStatus Publisher::publish_sequence(uint64_t sequence, std::span<const std::byte> payload,
                                          std::span<const Header> headers) noexcept {
    return publish_sequence(sequence, payload, MessageOptions{.headers = headers});
}

PublishStatus Publisher::publish_sequence(uint64_t sequence, std::span<const std::byte> payload, const MessageOptions& message) noexcept {
    if (core_->named == nullptr) return PublishStatus::no_producer;
    if (sequence == 0) return PublishStatus::duplicate;  // 0 is never above the last committed
    return publish_message(*core_, sequence, payload, message, core_->options.block_timeout);
}

PublishStatus Publisher::publish_sequence(uint64_t sequence, std::string_view payload, std::span<const Header> headers) noexcept {
    return publish_sequence(sequence, bytes_of(payload), headers);
}

PublishStatus detail::publish_retry(PublisherCore& core, const layout::RetryInfo& info, std::span<const std::byte> data,
                                    uint16_t flags, uint64_t& position) noexcept {
    if (core.retry_reserve != 0) {  // this publisher moves retries: the reserve is its to use
        core.retry_reserve = 0;
        core.gate_limit = 0;  // refreshed by the claim
    }
    uint64_t id = 0;
    const PublishStatus st = core.claim(sizeof info + data.size(), std::chrono::nanoseconds(0), position, id,
                                        layout::record_allowance(flags));
    if (st != PublishStatus::ok) return st;
    std::byte* out = core.ring.payload_at(position);
    std::memcpy(out, &info, sizeof info);
    if (!data.empty()) std::memcpy(out + sizeof info, data.data(), data.size());
    layout::put_field(core.ring.header_at(position)->flags, flags);  // published by the commit store
    return core.commit_record(position, layout::RecordType::data);
}

BatchResult Publisher::publish_batch(std::span<const std::span<const std::byte>> payloads) noexcept {
    return publish_batch(payloads, core_->options.block_timeout);
}

BatchResult Publisher::publish_batch(std::span<const std::span<const std::byte>> payloads,
                                     std::chrono::nanoseconds timeout) noexcept {
    // A named producer commits one sequence at a time through its table entry, and on a topic
    // with an unblock-timeout shmbusd may take back a claim (one record): both publish one by one.
    if (core_->named != nullptr || core_->revocable) return publish_each(*core_, payloads, timeout);
    BatchResult r{PublishStatus::ok, 0};
    r.published = core_->publish_batch(payloads, timeout, r.status);
    return r;
}

PublishStatus Publisher::loan(std::size_t size, Loan& out) noexcept { return loan(size, out, core_->options.block_timeout); }

PublishStatus Publisher::loan(std::size_t size, Loan& out, std::chrono::nanoseconds timeout) noexcept {
    return loan(size, out, MessageOptions{}, timeout);
}

PublishStatus Publisher::loan(std::size_t size, Loan& out, const MessageOptions& message) noexcept {
    return loan(size, out, message, core_->options.block_timeout);
}

PublishStatus Publisher::loan(std::size_t size, Loan& out, const MessageOptions& message, std::chrono::nanoseconds timeout) noexcept {
    out.abandon();
    if (const PublishStatus bad = check_options(message); bad != PublishStatus::ok) return bad;
    const uint64_t sequence = core_->named != nullptr ? core_->choose_sequence(0) : 0;
    detail::PublisherCore::MessageClaim claim;
    std::byte* payload_at = nullptr;
    const PublishStatus st = claim_with_options(*core_, sequence, size, message, timeout, claim, payload_at);
    if (st != PublishStatus::ok) return st;
    out.core_ = core_.get();
    out.position_ = claim.position;
    out.id_ = claim.id;
    out.sequence_ = sequence;
    out.data_ = std::span<std::byte>(payload_at, size);
    return PublishStatus::ok;
}

uint64_t Publisher::last_id() const noexcept { return core_->last_id; }
uint64_t Publisher::last_sequence() const noexcept { return core_->committed_sequence; }
const std::string& Publisher::producer() const noexcept { return core_->options.producer; }
uint32_t Publisher::max_message() const noexcept { return core_->seg.max_message(); }
OnFull Publisher::on_full() const noexcept { return core_->seg.live_on_full(); }
const std::string& Publisher::topic() const noexcept { return core_->topic; }

}  // namespace shmbus
