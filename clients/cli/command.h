// A command of the `shmbus` CLI, as a command group registers it: its subcommand, what it checks
// before anything talks to shmbusd (usage errors are exit status 2 whether or not a daemon runs),
// and what it does once connected. main.cpp only wires them.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

#include "shmbus/shmbus.h"

namespace cli {

struct Command {
    CLI::App* app = nullptr;
    // Checks and converts what was given: 0, or the exit status of a usage error (said on stderr).
    std::function<int()> check = [] { return 0; };
    // Runs with a connected client.
    std::function<int(shmbus::Client&)> run;
    // Instead of run, for a command that also works without shmbusd: runs whatever connect() said.
    std::function<int(shmbus::Result<shmbus::Client>&)> run_without_daemon;
};
using Commands = std::vector<Command>;

// Each command group adds its subcommands to `app` and its commands to `out`, in the order
// `shmbus --help` lists them.
void add_topic_commands(CLI::App& app, Commands& out);    // topic, subscription, gc (topic_commands.cpp)
void add_pubsub_commands(CLI::App& app, Commands& out);   // pub, sub (pubsub_commands.cpp)
void add_work_commands(CLI::App& app, Commands& out);     // group, dlq (work_commands.cpp)
void add_request_commands(CLI::App& app, Commands& out);  // request, serve (request_commands.cpp)
void add_archive_commands(CLI::App& app, Commands& out);  // archive (archive_commands.cpp)
void add_bridge_command(CLI::App& app, Commands& out);    // bridge (bridge_command.cpp)

}  // namespace cli
