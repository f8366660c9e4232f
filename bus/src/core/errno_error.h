// An Error that ends with the text of the current errno: "cannot open X: Permission denied".
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include "shmbus/result.h"

namespace shmbus::detail {

[[nodiscard]] inline Error errno_error(Errc code, const std::string& what) {
    return make_error(code, what + ": " + std::strerror(errno));
}

}  // namespace shmbus::detail
