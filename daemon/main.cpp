// shmbusd [--dir DIR] [--state-dir DIR] [--config FILE] [--metrics [HOST:]PORT] [--log-level LEVEL] [--version]: the shmbus supervisor, in
// the foreground. Command-line options override the configuration file.
// Exit status: 0 stopped by SIGTERM/SIGINT, 2 bad usage or cannot start, 3 another shmbusd serves
// the directory.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/systemd_sink.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <cstdlib>

#include "daemon.h"
#include "shmbus/client.h"
#include "shmbus/version.h"

namespace {

// True when systemd connected our stderr to the journal ($JOURNAL_STREAM names that stream).
bool stderr_is_journal() {
    const char* stream = std::getenv("JOURNAL_STREAM");
    struct stat st{};
    if (stream == nullptr || fstat(2, &st) != 0) return false;
    unsigned long long dev = 0, ino = 0;
    return std::sscanf(stream, "%llu:%llu", &dev, &ino) == 2 && dev == st.st_dev && ino == st.st_ino;
}

// Where the log goes: `destination` is "console" (standard output), "journal", a file path, or
// empty: the journal when systemd runs us with output to it, else the console.
bool route_log(const std::string& destination) {
    try {
        if (destination == "journal" || (destination.empty() && stderr_is_journal())) {
            spdlog::set_default_logger(std::make_shared<spdlog::logger>("shmbusd", std::make_shared<spdlog::sinks::systemd_sink_mt>()));
            spdlog::set_pattern("%v");  // the journal stamps time and priority itself
            return true;
        }
        if (!destination.empty() && destination != "console")
            spdlog::set_default_logger(std::make_shared<spdlog::logger>(
                "shmbusd", std::make_shared<spdlog::sinks::basic_file_sink_mt>(destination)));
        spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e [%l] %v");
        return true;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmbusd: cannot log to %s: %s\n", destination.c_str(), e.what());
        return false;
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shmbusd: supervisor of a shmbus bus directory"};
    shmbus::daemon::Options options;
    std::string level = "info";
    app.add_option("--dir", options.dir, "bus directory (default: [bus] dir, $SHMBUS_DIR, then a per-user runtime directory)");
    app.add_option("--state-dir", options.state_dir, "archives and cursors that outlive a reboot (default: [bus] state_dir, "
                                                      "else /var/lib/shmbus for root, $XDG_STATE_HOME/shmbus otherwise, "
                                                      "under buses/ for a bus directory other than the default)");
    std::string archiver_topic;
    app.add_option("--archiver", archiver_topic, "run as the archiver of TOPIC (shmbusd starts these itself)")->group("");
    app.add_option("--metrics", options.metrics, "serve Prometheus metrics on [HOST:]PORT (HOST defaults to 127.0.0.1)");
    app.add_option("--config", options.config_path, "configuration file (TOML): bus settings and access rules; "
                                                     "reread on SIGHUP");
    app.add_option("--log-level", level, "trace, debug, info, warn, error, critical or off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
    app.set_version_flag("--version", std::string("shmbusd ") + shmbus::kVersion);
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --version
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        (void)app.exit(e);
        return 2;  // bad usage, like every other refusal to start (3: another shmbusd serves the directory)
    }

    spdlog::flush_on(spdlog::level::trace);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e [%l] %v");
    if (!options.config_path.empty()) {
        auto config = shmbus::daemon::load_config(options.config_path);
        if (!config) {
            spdlog::error("{}", config.error().message);
            return 2;
        }
        options.config = std::move(config.value());
        if (options.dir.empty()) options.dir = options.config.dir;
        if (options.metrics.empty()) options.metrics = options.config.metrics;
        if (app.count("--log-level") == 0 && !options.config.log_level.empty()) level = options.config.log_level;
    }
    if (!route_log(options.config.log)) return 2;
    spdlog::set_level(spdlog::level::from_str(level));
    spdlog::flush_on(spdlog::level::trace);
    if (options.dir.empty()) options.dir = shmbus::default_bus_dir();
    if (options.state_dir.empty()) options.state_dir = options.config.state_dir;
    if (!archiver_topic.empty()) {
        spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e [%l] [archiver] %v");
        if (options.state_dir.empty()) options.state_dir = shmbus::daemon::default_state_dir(options.dir);
        return shmbus::daemon::run_archiver(archiver_topic, options.dir, options.state_dir);
    }
    // Archivers are this program run again: found through /proc, so a moved binary still finds itself.
    std::error_code ec;
    options.executable = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    options.log_level = level;

    shmbus::daemon::Daemon daemon(options);
    if (auto st = daemon.start(); !st) {
        spdlog::error("{}", st.error().message);
        return st.error().code == shmbus::Errc::daemon_running ? 3 : 2;
    }
    return daemon.run();
}
