// The event of the price-update example: a fixed-size record, written in place with loan().
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace prices {

struct PriceChanged {
    char sku[16];          // product id, NUL padded
    int64_t old_cents;
    int64_t new_cents;
    uint64_t catalog_version;

    [[nodiscard]] std::string_view product() const { return {sku, strnlen(sku, sizeof sku)}; }
};

}  // namespace prices
