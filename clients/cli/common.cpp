#include "cli/common.h"

namespace cli {

const CLI::Validator& whole_number() {
    static const CLI::Validator v(
        [](std::string& text) -> std::string {
            const bool ok = text.size() <= 19 && parse_whole_number(text).has_value();
            return ok ? std::string() : "takes a whole number (0 or more), not '" + text + "'";
        },
        "N");
    return v;
}

// `--from`: earliest, latest or a message id. rc is set on failure.
void parse_from(const std::string& from, shmbus::SubscribeOptions& options, int& rc) {
    if (from == "earliest") options.from = shmbus::StartFrom::earliest;
    else if (from == "latest") options.from = shmbus::StartFrom::latest;
    else {
        options.from = shmbus::StartFrom::id;
        const auto id = parse_whole_number(from);
        options.from_id = id.value_or(0);
        if (!id) {
            std::cerr << "shmbus: --from takes earliest, latest or a message id, not '" << from << "'\n";
            rc = kExitUsage;
        }
    }
}

int check_topic_name(const std::string& name) {
    if (auto st = shmbus::validate_topic_name(name); !st) return fail(st.error());
    return 0;
}

int check_subscription_name(const std::string& name) {
    if (name.empty()) return 0;
    if (auto st = shmbus::validate_subscription_name(name); !st) return fail(st.error());
    return 0;
}

}  // namespace cli
