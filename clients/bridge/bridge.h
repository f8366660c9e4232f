// `shmbus bridge`: carries topics to and from NATS JetStream (built when Debian's libnats-dev is
// present). Outbound, a topic is read through a durable subscription named after the bridge and
// published to a subject asynchronously, a bounded window at a time; its cursor advances only over
// messages JetStream acknowledged, and each carries `Nats-Msg-Id` (bus id, topic, message id), so
// the stream's duplicate window drops what a restarted bridge sends again. Inbound, a durable
// JetStream pull consumer named after the bridge delivers a subject's messages, published locally
// by an idempotent producer whose sequence is the stream sequence, and each is acked to JetStream
// only once committed here. Headers travel both ways; `shmbus-origin-bus` keeps a message from
// going round between two buses that bridge one subject both ways.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "shmbus/client.h"

namespace cli {

struct BridgeSettings {
    std::string name = "bridge";  // names its durable subscription, JetStream consumers and producer
    std::string nats_url = "nats://127.0.0.1:4222";
    std::string creds, user, password, token, tls_ca;
    std::vector<std::pair<std::string, std::string>> out;  // local topic -> subject
    std::vector<std::pair<std::string, std::string>> in;   // subject -> local topic
    std::string stream;                                    // create it for the --out subjects if missing
    uint32_t window = 1024;                                // outbound publishes awaiting JetStream's ack
    std::string metrics;                                   // "[HOST:]PORT": serve Prometheus metrics there
};

// Parses "A[:B]" mappings: B defaults to A. False (and a message on stderr) for an empty side.
[[nodiscard]] bool parse_mappings(const std::vector<std::string>& given, const char* option,
                                  std::vector<std::pair<std::string, std::string>>& out);

// Reads the [bridge] section of a TOML file (shmbusd's configuration file may hold it): keys
// name, nats, creds, user, password, token, tls_ca, out and in (arrays of "A[:B]"), stream, window.
// An unknown key or a wrong type is an error naming the file and line. False (and a message) on error.
[[nodiscard]] bool load_bridge_config(const std::string& path, BridgeSettings& out);

// What the command line gave wins over the file: every option the user set replaces the file's value.
void merge_bridge_settings(const BridgeSettings& given, const CLI::App& command, BridgeSettings& out);

// True if this build has the bridge (libnats).
[[nodiscard]] bool bridge_available() noexcept;

// Runs until SIGTERM or SIGINT. Exit status: 0 after a signal, 1 when it cannot start (the server
// refused the credentials, a topic or stream could not be opened), 2 for a bad setting.
[[nodiscard]] int run_bridge(shmbus::Client& client, const BridgeSettings& settings);

}  // namespace cli
