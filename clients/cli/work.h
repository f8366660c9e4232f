// The work-queue subcommands: `group`, `dlq` (cli_work.cpp) and `sub --group --exec` (cli_exec.cpp).
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "cli/common.h"
#include "shmbus/shmbus.h"

namespace cli {

// "N/s[:BURST]" (also /m and /h; a bare N is per second), e.g. 100/s:10.
[[nodiscard]] std::optional<shmbus::RateLimit> parse_rate(std::string_view text);
[[nodiscard]] std::string rate_text(const shmbus::RateLimit& rate);
// An option's rate: nullopt if not given; rc set to the usage status (and said why) if it does not parse.
[[nodiscard]] std::optional<shmbus::RateLimit> parse_rate_option(const std::string& text, int& rc);

// The group settings a command line may give (`sub --group`, `group create`).
struct GroupOptions {
    std::optional<uint32_t> window, max_deliveries;
    DurationOption visibility{{}, kDurationExamples};
    std::string backoff;
    bool dead_letter_expired = false;
    bool ordered_by_key = false;
    void add_to(CLI::App& cmd, const CLI::Validator& whole_number);
    [[nodiscard]] bool given() const {
        return window || max_deliveries || !visibility.text.empty() || !backoff.empty() || dead_letter_expired || ordered_by_key;
    }
    // Applies what was given; rc is set to the usage status on text that does not parse.
    void apply(shmbus::GroupSettings& g, int& rc) const;
};

[[nodiscard]] nlohmann::json group_json(const shmbus::GroupStats& g);
void print_group_text(const shmbus::GroupStats& g);  // one line, as `topic info` shows it

int group_create(shmbus::Client& client, const std::string& topic, const std::string& group,
                 const shmbus::GroupSettings& settings, const shmbus::SubscribeOptions& from);
int group_info(shmbus::Client& client, const std::string& topic, const std::string& group, bool json);
int group_delete(shmbus::Client& client, const std::string& topic, const std::string& group);
int group_list(shmbus::Client& client, const std::string& topic, bool json);

// Dead letters of TOPIC (in TOPIC.dlq) not replayed yet.
int dlq_list(shmbus::Client& client, const std::string& topic, bool json);
// Publishes them again to TOPIC (all, or the one with dead-letter id `id`), without shmbus's
// origin headers, and records them as replayed.
int dlq_replay(shmbus::Client& client, const std::string& topic, std::optional<uint64_t> id);

// `sub --group NAME --exec CMD [--parallel N]`: each message runs `sh -c CMD`; exit 0 acks it,
// anything else nacks it; a command still running at the visibility timeout is killed and nacked.
int sub_exec(shmbus::Client& client, const std::string& topic, shmbus::SubscribeOptions options, const std::string& command,
             uint32_t parallel, std::optional<uint64_t> count);

// Starts `sh -c command` for message `m` of `topic`: its payload on standard input, its id,
// attempt, key and headers in the environment, in a process group of its own; standard error to
// `error_output` and standard output to `output` where >= 0. -1 if it could not be started.
pid_t start_job(const std::string& command, const std::string& topic, const shmbus::Message& m, int error_output, int output = -1);
// A finished command's standard error (the file `fd`, closed here), passed on to ours; returns its
// last lines, joined, for a reason or an error reply.
std::string pass_on_error_output(int fd);
// "exit status 3", "killed by signal Killed".
std::string exit_text(int status);

}  // namespace cli
