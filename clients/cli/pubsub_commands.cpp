// `shmbus pub` and `shmbus sub` (its --group --exec form is in exec.cpp).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/common.h"
#include "cli/work.h"
#include "shmbus/shmbus.h"

namespace cli {
namespace {

// `--from TIME` (RFC 3339) or `--since DURATION`: the time a subscription starts at. rc is set on failure.
std::optional<uint64_t> start_time(const std::string& from, const std::string& since, int& rc) {
    if (!since.empty()) {
        auto d = shmbus::parse_duration(since);
        if (!d) {
            std::cerr << "shmbus: invalid --since '" << since << "' (" << kDurationExamples << ")\n";
            rc = kExitUsage;
            return std::nullopt;
        }
        const auto now = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::system_clock::now().time_since_epoch()).count());
        return now > uint64_t(d->count()) ? now - uint64_t(d->count()) : 1;
    }
    if (from.find('-') != std::string::npos && from.find(':') != std::string::npos) {
        auto t = shmbus::parse_rfc3339(from);
        if (!t) {
            std::cerr << "shmbus: --from takes earliest, latest, latest-per-key, a message id or an RFC 3339 time "
                         "(2026-11-28T20:00:00Z), not '" << from << "'\n";
            rc = kExitUsage;
        }
        return t;
    }
    return std::nullopt;
}

// On a full ring: the durable subscriptions whose unacked messages hold the publishers back,
// slowest first, e.g. " held back by durable subscription 'audit' (detached, 812 unacked)".
std::string held_back_by(shmbus::Client& client, const std::string& topic) {
    auto stats = client.topic_stats(topic);
    if (!stats) return {};
    std::vector<const shmbus::SubscriptionStats*> durable;
    for (const auto& s : stats->subscriptions)
        if (s.durable && s.lag > 0) durable.push_back(&s);
    if (durable.empty()) return {};
    std::sort(durable.begin(), durable.end(), [](auto* a, auto* b) { return a->lag > b->lag; });
    std::string out = durable.size() == 1 ? "; held back by durable subscription " : "; held back by durable subscriptions ";
    for (std::size_t i = 0; i < durable.size() && i < 3; ++i) {
        if (i > 0) out += ", ";
        out += "'" + durable[i]->name + "' (" + (durable[i]->attached ? "attached" : "detached") + ", " +
               std::to_string(durable[i]->lag) + " unacked)";
    }
    if (durable.size() > 3) out += " and " + std::to_string(durable.size() - 3) + " more";
    return out;
}

// What `pub` publishes with: a named producer numbers its messages from `first_sequence` on.
// How messages follow each other on stdin (pub) and stdout (sub): `line` ends each with a newline;
// `nul` with a NUL byte (payloads may hold newlines); `length` puts each after its length, four
// bytes big-endian (payloads may hold anything).
enum class Framing : uint8_t { line, nul, length };
const std::map<std::string, Framing> kFramings = {{"line", Framing::line}, {"nul", Framing::nul}, {"length", Framing::length}};

// The next message of stdin in `framing`: false at its end; rc set for a frame cut short, or one
// longer than `max_bytes` (refused before it is read).
bool read_frame(Framing framing, std::string& out, uint32_t max_bytes, int& rc) {
    if (framing != Framing::length) return bool(std::getline(std::cin, out, framing == Framing::nul ? '\0' : '\n'));
    unsigned char prefix[4];
    if (!std::cin.read(reinterpret_cast<char*>(prefix), sizeof prefix)) {
        if (std::cin.gcount() == 0) return false;
        std::cerr << "shmbus: stdin ends inside a length prefix\n";
        rc = kExitError;
        return false;
    }
    const uint32_t length = uint32_t(prefix[0]) << 24 | uint32_t(prefix[1]) << 16 | uint32_t(prefix[2]) << 8 | prefix[3];
    if (length > max_bytes) {
        std::cerr << "shmbus: a frame of " << length << " bytes exceeds the topic's max message of " << max_bytes << " bytes\n";
        rc = kExitError;
        return false;
    }
    out.resize(length);
    if (!std::cin.read(out.data(), std::streamsize(length))) {
        std::cerr << "shmbus: stdin ends inside a frame of " << length << " bytes (" << std::cin.gcount() << " read)\n";
        rc = kExitError;
        return false;
    }
    return true;
}

void write_frame(Framing framing, std::span<const std::byte> payload) {
    if (framing == Framing::length) {
        const auto n = uint32_t(payload.size());
        const unsigned char prefix[4] = {uint8_t(n >> 24), uint8_t(n >> 16), uint8_t(n >> 8), uint8_t(n)};
        std::fwrite(prefix, 1, sizeof prefix, stdout);
    }
    std::fwrite(payload.data(), 1, payload.size(), stdout);
    if (framing != Framing::length) std::fputc(framing == Framing::nul ? '\0' : '\n', stdout);
}

struct PubSettings {
    Framing framing = Framing::line;
    std::string key;                   // --key: every message's key
    std::optional<std::string> key_separator;  // --key-separator: each message is KEY<SEP>PAYLOAD
    std::chrono::nanoseconds ttl{0};   // --ttl
    std::chrono::nanoseconds delay{0}; // --delay
    uint64_t deliver_at_ns = 0;        // --deliver-at
    std::chrono::nanoseconds timeout = std::chrono::seconds(30);
    std::string producer;              // --producer; empty: anonymous
    std::optional<uint64_t> sequence;  // --seq: the first message's sequence (default: one past the last committed)
};

// One message; `sequence` is 0 for an anonymous publisher. A named producer's message already
// published (a duplicate) is counted in `skipped`, not an error.
int publish_one(shmbus::Client& client, shmbus::Publisher& pub, std::string_view message, const shmbus::MessageOptions& options,
                std::chrono::nanoseconds timeout, uint64_t sequence, uint64_t& skipped) {
    const auto bytes = std::as_bytes(std::span<const char>(message.data(), message.size()));
    const std::span<const shmbus::Header> headers = options.headers;
    const auto st = sequence != 0 ? pub.publish_sequence(sequence, bytes, options) : pub.publish(bytes, options, timeout);
    if (st == shmbus::PublishStatus::ok) return 0;
    if (st == shmbus::PublishStatus::duplicate) {
        ++skipped;
        return 0;
    }
    if (st == shmbus::PublishStatus::too_large) {
        std::cerr << "shmbus: message of " << message.size() << " bytes"
                  << (headers.empty() ? "" : " with " + std::to_string(shmbus::encoded_headers_size(headers)) + " bytes of headers")
                  << (options.key.empty() ? "" : " and a key of " + std::to_string(options.key.size()) + " bytes")
                  << " exceeds the topic's max message of " << pub.max_message() << " bytes\n";
        return kExitError;
    }
    const bool full = st == shmbus::PublishStatus::would_block || st == shmbus::PublishStatus::timed_out;
    std::cerr << "shmbus: publish to '" << pub.topic() << "' failed: " << shmbus::to_string(st)
              << (st == shmbus::PublishStatus::would_block ? " (topic is full and its on-full policy is fail)"
                  : st == shmbus::PublishStatus::corrupt   ? " (the topic's shared memory is damaged)"
                  : st == shmbus::PublishStatus::revoked   ? " (the message was taken back)"
                  : st == shmbus::PublishStatus::deleted   ? " (the topic was deleted)"
                                                           : " (topic stayed full for " + duration_text(timeout, "0s") + ")")
              << (full ? held_back_by(client, pub.topic()) : std::string()) << "\n";
    return kExitError;
}

int pub(shmbus::Client& client, const std::string& topic, const std::vector<std::string>& messages,
        std::span<const shmbus::Header> headers, const PubSettings& settings) {
    shmbus::PublisherOptions options;
    options.block_timeout = settings.timeout;
    options.producer = settings.producer;
    auto pub = client.publisher(topic, options);
    if (!pub) return fail(pub.error());
    const bool named = !settings.producer.empty();
    uint64_t next = named ? settings.sequence.value_or(pub->last_sequence() + 1) : 0;
    const uint64_t first = next;
    uint64_t skipped = 0;
    shmbus::MessageOptions message{.headers = headers, .key = settings.key, .ttl = settings.ttl, .delay = settings.delay,
                                   .deliver_at_ns = settings.deliver_at_ns};
    uint64_t number = 0;
    auto one = [&](std::string_view m) {
        ++number;
        if (settings.key_separator) {  // KEY<SEP>PAYLOAD
            const auto at = m.find(*settings.key_separator);
            if (at == std::string_view::npos || at > shmbus::kMaxKey) {
                std::cerr << "shmbus: message " << number << (at == std::string_view::npos ? " has no key separator '" + *settings.key_separator + "'"
                                                                                         : " has a key longer than " + std::to_string(shmbus::kMaxKey) + " bytes")
                          << " (--key-separator: each message is KEY<SEP>PAYLOAD)\n";
                return kExitError;
            }
            message.key = m.substr(0, at);
            m = m.substr(at + settings.key_separator->size());
        }
        const int rc = publish_one(client, *pub, m, message, settings.timeout, next, skipped);
        if (named) ++next;
        return rc;
    };
    int rc = 0;
    if (!messages.empty()) {
        for (const auto& m : messages)
            if ((rc = one(m)) != 0) break;
    } else {
        std::string frame;
        while (rc == 0 && read_frame(settings.framing, frame, pub->max_message(), rc)) rc = one(frame);
    }
    if (skipped != 0)
        std::cerr << "shmbus: skipped " << skipped << " message" << (skipped == 1 ? "" : "s") << " that producer '" << settings.producer
                  << "' had already published (sequences from " << first << "; last committed " << pub->last_sequence() << ")\n";
    return rc;
}

// Prints what `source` (a Subscriber, or a PatternSubscriber) delivers, acking it once written.
// `name`: the topic, or the pattern (each message of a pattern names its topic).
template <class Source>
int print_stream(Source& s, const std::string& name, bool group, std::optional<uint64_t> count, const std::string& format,
                 Framing framing) {
    const bool json = format == "json";
    uint64_t received = 0;
    uint64_t lost_reported = 0;
    std::vector<shmbus::Message> to_ack;  // a group's acks are per message
    auto handler = [&](const shmbus::Message& m) {
        if (group) to_ack.push_back(m);
        if (json) {
            const std::string line = json_line(message_json(m.topic.empty() ? std::string_view(name) : m.topic, m, group));
            std::fwrite(line.data(), 1, line.size(), stdout);
            std::fputc('\n', stdout);
        } else {
            write_frame(framing, m.payload);
        }
        ++received;
    };
    while (!g_stop.load(std::memory_order_relaxed) && (!count || received < *count)) {
        const std::size_t want = count ? std::size_t(std::min<uint64_t>(*count - received, 256)) : 256;
        const auto r = s.receive(handler, std::chrono::milliseconds(100), want);
        if (r.status == shmbus::ReceiveStatus::corrupt) {
            std::fflush(stdout);
            std::cerr << "shmbus: topic '" << name << "' is corrupt; stopping\n";
            return kExitError;
        }
        if (r.status == shmbus::ReceiveStatus::deleted) {
            std::fflush(stdout);
            std::cerr << "shmbus: topic '" << name << "' was deleted; stopping\n";
            return kExitError;
        }
        if (r.count == 0) {
            // Nothing delivered, but what was read may have moved on (messages stepped over as
            // expired): acked, so that they hold no publisher back. Everything delivered is written.
            if (!group) s.ack_delivered();
            continue;
        }
        if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
            std::cerr << "shmbus: cannot write output; messages left unacked\n";
            return kExitError;
        }
        // Only after the output is flushed: a killed sub redelivers, never loses.
        if (group) {
            for (const auto& m : to_ack) (void)s.ack(m);  // a stale one was given to another member meanwhile
            to_ack.clear();
        } else {
            s.ack_delivered();
        }
        if (s.lost() != lost_reported) {
            std::cerr << "shmbus: lost " << s.lost() - lost_reported << " message(s): the subscription was overrun\n";
            lost_reported = s.lost();
        }
    }
    return 0;
}

int sub(shmbus::Client& client, const std::string& topic, shmbus::SubscribeOptions options, std::optional<uint64_t> count,
        const std::string& format, Framing framing) {
    options.auto_ack = false;  // acked only after the output is flushed
    install_stop_handlers();
    auto s = client.subscribe(topic, options);
    if (!s) return fail(s.error());
    // From the earliest message of a ring that has lapped (and no archive behind it): where it
    // starts and what is gone is said at once, rather than a --count waiting without a word.
    if (options.from == shmbus::StartFrom::earliest && !s->in_group() && !s->resumed() && s->next_id() > 0)
        if (auto stats = client.topic_stats(topic); stats && !stats->archived)
            std::cerr << "shmbus: starting at id " << s->next_id() << ": the ring no longer holds the " << s->next_id()
                      << " message(s) before it" << (count ? " (--count waits for new ones)" : "") << "\n";
    return print_stream(*s, topic, s->in_group(), count, format, framing);
}

// `sub PATTERN`: every matching topic, those created later included; topics the caller may not
// read are named once on stderr.
int sub_pattern(shmbus::Client& client, const std::string& pattern, shmbus::SubscribeOptions options, std::optional<uint64_t> count,
                const std::string& format, Framing framing) {
    options.auto_ack = false;
    install_stop_handlers();
    auto s = client.subscribe_pattern(pattern, options);
    if (!s) return fail(s.error());
    for (const std::string& t : s->refused())
        std::cerr << "shmbus: topic '" << t << "' matches '" << pattern << "' but may not be read by you: left out\n";
    return print_stream(*s, pattern, false, count, format, framing);
}

struct PubArgs {
    std::string topic;
    std::vector<std::string> messages;
    DurationOption timeout{{}, kDurationExamples}, ttl{{}, kDurationExamples}, delay{{}, kDurationExamples};
    std::string deliver_at;
    std::vector<std::string> header_texts;
    std::vector<shmbus::Header> headers;
    PubSettings settings;
    CLI::Option* seq = nullptr;
    CLI::Option* framing = nullptr;
    CLI::Option* key = nullptr;
    CLI::Option* key_separator = nullptr;
};

int check_pub(PubArgs& a) {
    int rc = 0;
    if (auto t = a.timeout.parse("timeout", rc)) a.settings.timeout = *t;
    if (auto t = a.ttl.parse("ttl", rc)) a.settings.ttl = *t;
    if (auto t = a.delay.parse("delay", rc)) a.settings.delay = *t;
    if (!a.deliver_at.empty()) {
        if (auto t = shmbus::parse_rfc3339(a.deliver_at)) {
            a.settings.deliver_at_ns = *t;
        } else {
            std::cerr << "shmbus: --deliver-at takes an RFC 3339 time (2026-11-28T20:00:00Z), not '" << a.deliver_at << "'\n";
            return kExitUsage;
        }
    }
    if (!a.deliver_at.empty() && !a.delay.text.empty()) {
        std::cerr << "shmbus: pub: --delay and --deliver-at exclude each other\n";
        return kExitUsage;
    }
    if (a.key->count() != 0 && a.key_separator->count() != 0) {
        std::cerr << "shmbus: pub: --key and --key-separator exclude each other\n";
        return kExitUsage;
    }
    if (a.key->count() != 0 && (a.settings.key.empty() || a.settings.key.size() > shmbus::kMaxKey)) {
        std::cerr << "shmbus: pub: --key takes 1 to " << shmbus::kMaxKey << " bytes\n";
        return kExitUsage;
    }
    if (a.key_separator->count() != 0 && a.settings.key_separator->empty()) {
        std::cerr << "shmbus: pub: --key-separator must not be empty\n";
        return kExitUsage;
    }
    a.headers = parse_headers(a.header_texts, rc);
    if (rc != 0) return rc;
    if (a.framing->count() != 0 && !a.messages.empty()) {
        std::cerr << "shmbus: pub: --framing is how stdin is read: not with MESSAGE arguments\n";
        return kExitUsage;
    }
    if (a.seq->count() != 0 && a.settings.producer.empty()) {
        std::cerr << "shmbus: --seq needs --producer NAME\n";
        return kExitUsage;
    }
    if (!a.settings.producer.empty())
        if (auto st = shmbus::validate_producer_name(a.settings.producer); !st) {
            std::cerr << "shmbus: " << st.error().message << "\n";
            return kExitUsage;
        }
    return check_topic_name(a.topic);
}

void add_pub(CLI::App& app, Commands& out) {
    auto a = std::make_shared<PubArgs>();
    auto* cmd = app.add_subcommand("pub", "publish each MESSAGE, or each line (or frame, --framing) of stdin");
    cmd->add_option("TOPIC", a->topic, "topic")->required();
    cmd->add_option("MESSAGE", a->messages, "messages");
    cmd->add_option("--timeout", a->timeout.text, "on a full block topic, wait this long before failing (default 30s)");
    cmd->add_option("--header", a->header_texts, "KEY=VALUE: a header every message carries (repeatable)")->allow_extra_args(false);
    cmd->add_option("--producer", a->settings.producer,
                    "NAME: publish as an idempotent producer; a message whose sequence was already committed is skipped");
    a->seq = cmd->add_option("--seq", a->settings.sequence,
                             "N: number the messages N, N+1, ... (default: one past the producer's last committed)")
                 ->check(CLI::PositiveNumber);
    a->key = cmd->add_option("--key", a->settings.key, "KEY: every message's key (at most 256 bytes); a group ordered by key "
                                                      "processes the messages of one key one at a time, in order");
    a->key_separator = cmd->add_option("--key-separator", a->settings.key_separator,
                                       "SEP: each message (line of stdin, or MESSAGE) is KEY<SEP>PAYLOAD; one without SEP is exit 1");
    cmd->add_option("--ttl", a->ttl.text, "the messages expire this long after publish, e.g. 30s: no group member and no durable "
                                          "subscription is given them after that (default: the topic's TTL)");
    cmd->add_option("--delay", a->delay.text, "consumer groups deliver the messages no earlier than this long after publish, e.g. 5m");
    cmd->add_option("--deliver-at", a->deliver_at, "consumer groups deliver the messages no earlier than this RFC 3339 time");
    a->framing = cmd->add_option("--framing", a->settings.framing,
                                 "how stdin holds messages: line (each ends with a newline, the default), nul (each ends "
                                 "with a NUL byte), length (each after its length, 4 bytes big-endian): any bytes")
                     ->transform(CLI::CheckedTransformer(kFramings));
    out.push_back({cmd, [a] { return check_pub(*a); },
                   [a](shmbus::Client& c) { return pub(c, a->topic, a->messages, a->headers, a->settings); }, {}});
}

struct SubArgs {
    std::string topic, durable, from = "latest", since, format = "payload", group, rate, exec;
    Framing framing = Framing::line;
    std::optional<uint64_t> count;
    uint32_t parallel = 1;
    GroupOptions group_options;
    shmbus::SubscribeOptions options;
    CLI::App* cmd = nullptr;
};

// Every combination of options `sub` refuses, said before anything talks to shmbusd.
int check_sub(SubArgs& a) {
    int rc = 0;
    a.options.durable_name = a.durable;
    if (!a.since.empty() && a.cmd->get_option("--from")->count() != 0) {
        std::cerr << "shmbus: sub: --from and --since exclude each other\n";
        return kExitUsage;
    }
    if (auto t = start_time(a.from, a.since, rc)) {
        a.options.from = shmbus::StartFrom::time;
        a.options.from_time_ns = *t;
    } else if (rc == 0) {
        parse_from(a.from, a.options, rc);
    }
    if (rc != 0) return rc;
    if (a.group.empty() && a.group_options.given()) {
        std::cerr << "shmbus: sub: --window, --visibility, --max-deliveries, --backoff, --dead-letter-expired and --ordered-by-key need --group\n";
        return kExitUsage;
    }
    if (a.group.empty() && !a.exec.empty()) {
        std::cerr << "shmbus: sub: --exec needs --group (a command's exit status acks or nacks its message)\n";
        return kExitUsage;
    }
    if (a.exec.empty() && a.parallel != 1) {
        std::cerr << "shmbus: sub: --parallel needs --exec\n";
        return kExitUsage;
    }
    if (a.format == "json" && a.framing != Framing::line) {
        std::cerr << "shmbus: sub: --framing is for --format payload (JSON lines carry any bytes in base64)\n";
        return kExitUsage;
    }
    if (!a.group.empty() && !a.durable.empty()) {
        std::cerr << "shmbus: sub: --durable and --group exclude each other\n";
        return kExitUsage;
    }
    a.options.group = a.group;
    a.group_options.apply(a.options.group_settings, rc);
    if (auto r = parse_rate_option(a.rate, rc)) (a.group.empty() ? a.options.rate : a.options.group_settings.rate) = *r;
    if (rc != 0) return rc;
    for (const std::string* n : {&a.durable, &a.group})
        if (const int bad = check_subscription_name(*n); bad != 0) return bad;
    if (shmbus::is_topic_pattern(a.topic)) {
        if (!a.group.empty() || !a.exec.empty()) {
            std::cerr << "shmbus: sub: a pattern ('" << a.topic << "') takes no --group or --exec (a group is one topic's)\n";
            return kExitUsage;
        }
        if (auto st = shmbus::validate_topic_pattern(a.topic); !st) return fail(st.error());
        return 0;
    }
    return check_topic_name(a.topic);
}

void add_sub(CLI::App& app, Commands& out) {
    auto a = std::make_shared<SubArgs>();
    auto* cmd = a->cmd = app.add_subcommand("sub", "print messages, one per line (or frame, --framing)");
    cmd->add_option("TOPIC", a->topic, "topic")->required();
    cmd->add_option("--durable", a->durable, "durable subscription name (at least once, resumes after its last ack)");
    cmd->add_option("--from", a->from, "earliest, latest, latest-per-key (a compacted topic: the latest message of "
                                       "every key, then the stream), a message id or an RFC 3339 time (new "
                                       "subscriptions only; an archived topic reaches back into its archive)");
    cmd->add_option("--since", a->since, "start at the first message published this long ago, e.g. 15m");
    cmd->add_option("--count", a->count, "exit after N messages (0: set up the subscription and exit)")->check(whole_number());
    cmd->add_option("--format", a->format, "payload, or json (one object per line; a payload that is not UTF-8 in base64, "
                                           "as payload_encoding says)")
        ->check(CLI::IsMember({"payload", "json"}));
    cmd->add_option("--framing", a->framing,
                    "how payloads follow each other on stdout: line (a newline after each, the default), nul (a NUL "
                    "byte after each), length (each after its length, 4 bytes big-endian): any bytes")
        ->transform(CLI::CheckedTransformer(kFramings));
    cmd->add_option("--group", a->group, "join consumer group NAME: each message goes to one member (work queue)");
    a->group_options.add_to(*cmd, whole_number());
    cmd->add_option("--rate", a->rate, "at most N/s[:BURST] deliveries (a group's rate is shared by its members)");
    cmd->add_option("--exec", a->exec, "group: run `sh -c CMD` per message, payload on stdin, SHMBUS_TOPIC, SHMBUS_MESSAGE_ID, "
                                       "SHMBUS_ATTEMPT and SHMBUS_HEADER_<KEY> in its environment; exit 0 acks, 65 rejects "
                                       "(to TOPIC.dlq at once), anything else nacks (retried)");
    cmd->add_option("--parallel", a->parallel, "with --exec: commands running at once (default 1)")->check(CLI::Range(1u, 256u));
    out.push_back({cmd, [a] { return check_sub(*a); },
                   [a](shmbus::Client& c) {
                       if (!a->exec.empty()) return sub_exec(c, a->topic, std::move(a->options), a->exec, a->parallel, a->count);
                       if (shmbus::is_topic_pattern(a->topic))
                           return sub_pattern(c, a->topic, std::move(a->options), a->count, a->format, a->framing);
                       return sub(c, a->topic, std::move(a->options), a->count, a->format, a->framing);
                   },
                   {}});
}

}  // namespace

void add_pubsub_commands(CLI::App& app, Commands& out) {
    add_pub(app, out);
    add_sub(app, out);
}

}  // namespace cli
