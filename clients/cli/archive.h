// `shmbus archive info|verify` and the time a `sub --from`/`--since` names.
#pragma once

#include <optional>
#include <string>

#include "shmbus/shmbus.h"

namespace cli {

int archive_info(shmbus::Client& client, const std::string& topic, bool json);
// Exit status 0 when every record is whole and in order, 1 when damage was found.
int archive_verify(shmbus::Client& client, const std::string& topic);

}  // namespace cli
