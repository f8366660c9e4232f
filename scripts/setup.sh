#!/usr/bin/env bash
# Installs the Debian packages shmbus needs (only those missing), then configures and builds
# build/ with the release preset. Idempotent; quick when nothing changed.
#   scripts/setup.sh [PRESET]     (release by default; debug, asan, tsan build into build/PRESET;
#                                 demo builds only what scripts/demo.sh runs, with only its packages)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"

# The bus itself: the library, shmbusd, the CLI and bus-top, the examples.
packages=(build-essential cmake ninja-build pkg-config
          libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libncurses-dev
          prometheus-cpp-dev libsystemd-dev)
if [[ "$preset" != demo ]]; then
  # The tests and their servers, the exactly-once examples' SQLite, the bridge, shmbus-bench with
  # its peers, and the Python module with what its tests use (the last line; the Python
  # benchmark's pyzmq and redis-py come with scripts/bench.sh).
  packages+=(libboost-dev libgtest-dev libgmock-dev libbenchmark-dev util-linux tmux prometheus
             libsqlite3-dev libnats-dev nats-server openssl
             libzmq3-dev libiceoryx-posh-dev libiceoryx-hoofs-dev iceoryx
             pybind11-dev python3-dev python3-pytest python3-numpy)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run this script as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build_dir=build
[[ "$preset" != release ]] && build_dir="build/$preset"
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  echo "setup: configuring $build_dir ($preset)"
  cmake --preset "$preset" >/dev/null
fi
echo "setup: building $build_dir"
# pipefail (above) makes a failed build fail this script; grep only thins the progress lines out.
cmake --build "$build_dir" --parallel "$(nproc)" | { grep -vE '^\[[0-9]+/[0-9]+\]' || true; }
