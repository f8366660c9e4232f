// The bridge in a build without libnats: the command exists and says why it cannot run.
#include "bridge/bridge.h"

namespace cli {

bool bridge_available() noexcept { return false; }
int run_bridge(shmbus::Client&, const BridgeSettings&) { return 1; }

}  // namespace cli
