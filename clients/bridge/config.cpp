// The bridge's settings from a TOML file and the command line; built with or without libnats.
#include <toml++/toml.h>

#include <iostream>

#include "bridge/bridge.h"

namespace cli {

bool parse_mappings(const std::vector<std::string>& given, const char* option,
                    std::vector<std::pair<std::string, std::string>>& out) {
    for (const std::string& text : given) {
        const auto colon = text.find(':');
        std::string a = text.substr(0, colon);
        std::string b = colon == std::string::npos ? a : text.substr(colon + 1);
        if (a.empty() || b.empty()) {
            std::cerr << "shmbus: " << option << " takes A[:B], not '" << text << "'\n";
            return false;
        }
        out.emplace_back(std::move(a), std::move(b));
    }
    return true;
}

bool load_bridge_config(const std::string& path, BridgeSettings& out) {
    auto bad = [&](const toml::source_region& where, const std::string& what) {
        std::cerr << "shmbus: " << path << ":" << where.begin.line << ": " << what << "\n";
        return false;
    };
    toml::table root;
    try {
        root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        return bad(e.source(), std::string(e.description()));
    }
    const toml::table* bridge = root["bridge"].as_table();
    if (bridge == nullptr) {
        std::cerr << "shmbus: " << path << ": no [bridge] section\n";
        return false;
    }
    for (auto&& [k, v] : *bridge) {
        const std::string key(k.str());
        std::string* text = key == "name" ? &out.name : key == "nats" ? &out.nats_url : key == "creds" ? &out.creds
                          : key == "user" ? &out.user : key == "password" ? &out.password : key == "token" ? &out.token
                          : key == "tls_ca" ? &out.tls_ca : key == "stream" ? &out.stream : key == "metrics" ? &out.metrics : nullptr;
        if (text != nullptr) {
            const auto* s = v.as_string();
            if (s == nullptr) return bad(v.source(), "'" + key + "' must be a string");
            *text = s->get();
        } else if (key == "out" || key == "in") {
            const auto* a = v.as_array();
            std::vector<std::string> items;
            if (a != nullptr)
                for (const auto& item : *a) {
                    if (!item.is_string()) return bad(item.source(), "'" + key + "' must be an array of \"A[:B]\" strings");
                    items.push_back(item.as_string()->get());
                }
            if (a == nullptr) return bad(v.source(), "'" + key + "' must be an array of \"A[:B]\" strings");
            if (!parse_mappings(items, key == "out" ? "out" : "in", key == "out" ? out.out : out.in)) return false;
        } else if (key == "window") {
            const auto* n = v.as_integer();
            if (n == nullptr || n->get() < 1 || n->get() > 65536) return bad(v.source(), "'window' must be a number from 1 to 65536");
            out.window = uint32_t(n->get());
        } else {
            return bad(v.source(), "unknown key '" + key +
                                       "' in [bridge] (known: name, nats, creds, user, password, token, tls_ca, out, in, stream, window, metrics)");
        }
    }
    return true;
}

void merge_bridge_settings(const BridgeSettings& given, const CLI::App& command, BridgeSettings& out) {
    auto set = [&](const char* option, auto& field, const auto& value) {
        if (command.count(option) != 0) field = value;
    };
    set("--name", out.name, given.name);
    set("--nats", out.nats_url, given.nats_url);
    set("--creds", out.creds, given.creds);
    set("--user", out.user, given.user);
    set("--password", out.password, given.password);
    set("--token", out.token, given.token);
    set("--tls-ca", out.tls_ca, given.tls_ca);
    set("--stream", out.stream, given.stream);
    set("--window", out.window, given.window);
    set("--metrics", out.metrics, given.metrics);
}

}  // namespace cli
