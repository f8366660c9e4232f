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
    else if (from == "latest-per-key") options.from = shmbus::StartFrom::latest_per_key;
    else {
        options.from = shmbus::StartFrom::id;
        const auto id = parse_whole_number(from);
        options.from_id = id.value_or(0);
        if (!id) {
            std::cerr << "shmbus: --from takes earliest, latest, latest-per-key or a message id, not '" << from << "'\n";
            rc = kExitUsage;
        }
    }
}

bool is_utf8(std::string_view text) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* end = p + text.size();
    while (p < end) {
        const unsigned char c = *p;
        int more = 0;
        uint32_t cp = 0, min = 0;
        if (c < 0x80) { ++p; continue; }
        if ((c & 0xE0) == 0xC0) more = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) more = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) more = 3, cp = c & 0x07, min = 0x10000;
        else return false;
        if (end - p <= more) return false;
        for (int i = 1; i <= more; ++i) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
        if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
        p += more + 1;
    }
    return true;
}

std::string base64(std::string_view bytes) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const uint32_t v = uint32_t(p[i]) << 16 | uint32_t(p[i + 1]) << 8 | p[i + 2];
        for (int shift : {18, 12, 6, 0}) out += kAlphabet[(v >> shift) & 63];
    }
    if (const std::size_t rest = bytes.size() - i; rest != 0) {
        const uint32_t v = uint32_t(p[i]) << 16 | (rest == 2 ? uint32_t(p[i + 1]) << 8 : 0);
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
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

std::vector<shmbus::Header> parse_headers(const std::vector<std::string>& given, int& rc) {
    std::vector<shmbus::Header> out;
    for (const auto& text : given) {
        const auto eq = text.find('=');
        if (eq == std::string::npos) {
            std::cerr << "shmbus: --header takes KEY=VALUE, not '" << text << "'\n";
            rc = kExitUsage;
            return {};
        }
        out.push_back({std::string_view(text).substr(0, eq), std::string_view(text).substr(eq + 1)});
    }
    if (auto st = shmbus::validate_headers(out); !st) {
        std::cerr << "shmbus: " << st.error().message << "\n";
        rc = kExitUsage;
        return {};
    }
    return out;
}

}  // namespace cli
