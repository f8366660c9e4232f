// The price-update example: its event, written in place with loan(), and the helpers its three
// programs share (command line, connecting).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "shmbus/shmbus.h"

namespace prices {

struct PriceChanged {
    char sku[16];          // product id, NUL padded
    int64_t old_cents;
    int64_t new_cents;
    uint64_t catalog_version;

    [[nodiscard]] std::string_view product() const { return {sku, strnlen(sku, sizeof sku)}; }
};

// The examples' command line: [--dir DIR], [--from WHERE] and one count option (`count_flag`).
struct Args {
    std::string dir;
    int count;
    std::string from;
};
inline Args parse_args(int argc, char** argv, const char* count_flag, int count_default) {
    Args a{"", count_default, ""};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--dir") == 0) a.dir = argv[i + 1];
        if (std::strcmp(argv[i], "--from") == 0) a.from = argv[i + 1];
        if (std::strcmp(argv[i], count_flag) == 0) a.count = std::atoi(argv[i + 1]);
    }
    return a;
}

// Connects to shmbusd, or says why not on stderr.
inline std::optional<shmbus::Client> connect(const char* who, const std::string& dir) {
    shmbus::ClientOptions options;
    options.dir = dir;
    options.name = who;
    auto client = shmbus::Client::connect(options);
    if (!client) {
        std::fprintf(stderr, "%s: %s\n", who, client.error().message.c_str());
        return std::nullopt;
    }
    return std::move(client.value());
}

}  // namespace prices
