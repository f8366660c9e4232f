// shmbus: command-line client of a shmbus bus. See `shmbus --help` and README.md.
// Exit status: 0 success, 1 the bus reported an error (message on stderr), 2 invalid usage.
// This file only wires the command groups (command.h) to the command line.
#include <CLI/CLI.hpp>

#include <chrono>
#include <string>

#include "cli/command.h"
#include "cli/common.h"
#include "shmbus/shmbus.h"
#include "shmbus/version.h"

int main(int argc, char** argv) {
    using namespace cli;
    CLI::App app{"shmbus: publish, subscribe and manage topics on a shmbus bus"};
    app.require_subcommand(1);
    app.fallthrough();  // --dir may also follow the subcommand
    app.set_version_flag("--version", std::string("shmbus ") + shmbus::kVersion);
    std::string dir;
    app.add_option("--dir", dir, "bus directory (default: $SHMBUS_DIR, then a per-user runtime directory)");
    DurationOption wait{{}, kDurationExamples};
    app.add_option("--wait", wait.text, "wait this long for a shmbusd that is starting (default 2s; 0 fails at once)");

    Commands commands;
    add_topic_commands(app, commands);
    add_pubsub_commands(app, commands);
    add_work_commands(app, commands);
    add_request_commands(app, commands);
    add_archive_commands(app, commands);
    add_bridge_command(app, commands);

    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --help-all, --version
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return kExitUsage;
    }
    const Command* chosen = nullptr;
    for (const Command& c : commands)
        if (c.app->parsed()) chosen = &c;
    if (chosen == nullptr) return kExitUsage;
    if (const int rc = chosen->check(); rc != 0) return rc;

    shmbus::ClientOptions options;
    options.dir = dir;
    options.name = "shmbus-cli";
    // connect_wait: ClientOptions' default (2 s), so a shmbusd started a moment ago has time to listen.
    int rc = 0;
    if (auto w = wait.parse("wait", rc)) options.connect_wait = std::chrono::duration_cast<std::chrono::milliseconds>(*w);
    if (rc != 0) return rc;
    auto client = shmbus::Client::connect(options);
    if (chosen->run_without_daemon) return chosen->run_without_daemon(client);
    if (!client) return fail(client.error());
    return chosen->run(*client);
}
