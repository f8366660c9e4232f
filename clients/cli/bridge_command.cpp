// `shmbus bridge`: its command line. The bridge itself is in clients/bridge/.
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bridge/bridge.h"
#include "cli/command.h"
#include "cli/common.h"

namespace cli {

void add_bridge_command(CLI::App& app, Commands& out) {
    struct Args {
        BridgeSettings given, settings;
        std::vector<std::string> out_mappings, in_mappings;
        std::string config;
        CLI::App* cmd = nullptr;
    };
    auto a = std::make_shared<Args>();
    auto* cmd = a->cmd = app.add_subcommand("bridge", "carry topics to and from NATS JetStream (runs until SIGTERM)");
    BridgeSettings& g = a->given;
    cmd->add_option("--config", a->config, "FILE: read the [bridge] section of this TOML file (options given here win)");
    cmd->add_option("--nats", g.nats_url, "URL of the NATS server (default nats://127.0.0.1:4222; tls:// for TLS)");
    cmd->add_option("--creds", g.creds, "FILE: NATS user credentials (JWT and NKey seed)");
    cmd->add_option("--user", g.user, "NATS user");
    cmd->add_option("--password", g.password, "NATS password");
    cmd->add_option("--token", g.token, "NATS token");
    cmd->add_option("--tls-ca", g.tls_ca, "FILE: CA certificates to verify the server's TLS certificate with");
    cmd->add_option("--out", a->out_mappings, "TOPIC[:SUBJECT]: forward a local topic to a JetStream subject (repeatable)")
        ->allow_extra_args(false);
    cmd->add_option("--in", a->in_mappings, "SUBJECT[:TOPIC]: deliver a JetStream subject into a local topic (repeatable)")
        ->allow_extra_args(false);
    cmd->add_option("--stream", g.stream, "NAME: create this stream for the --out subjects if it does not exist");
    cmd->add_option("--name", g.name, "the bridge's name: its durable subscription and consumers (default bridge)");
    cmd->add_option("--metrics", g.metrics, "[HOST:]PORT: serve the bridge's Prometheus metrics there");
    cmd->add_option("--window", g.window, "outbound publishes awaiting JetStream's acknowledgment (default 1024)")
        ->check(CLI::Range(1, 65536));
    auto check = [a] {
        if (!bridge_available()) {
            std::cerr << "shmbus: this build has no bridge (it needs libnats-dev)\n";
            return kExitError;
        }
        if (!a->config.empty() && !load_bridge_config(a->config, a->settings)) return kExitUsage;
        merge_bridge_settings(a->given, *a->cmd, a->settings);
        if (!parse_mappings(a->out_mappings, "--out", a->settings.out) || !parse_mappings(a->in_mappings, "--in", a->settings.in))
            return kExitUsage;
        return 0;
    };
    out.push_back({cmd, check, [a](shmbus::Client& c) { return run_bridge(c, a->settings); }, {}});
}

}  // namespace cli
