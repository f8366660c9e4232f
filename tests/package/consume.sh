#!/usr/bin/env bash
# Installs the build into a fresh prefix, builds the README's example against it twice (CMake's
# find_package, then pkg-config), and runs both against a shmbusd from that prefix.
#   tests/package/consume.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d /tmp/shmbus-package-XXXXXX)
daemon=
cleanup() {
  [[ -n $daemon ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  SHMBUS_DIR=$work/bus "$work/prefix/bin/shmbus" --wait 0s topic delete prices >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/package/consumer" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/prefix" \
      -DQUICKSTART_SOURCE="$src/examples/quickstart/quickstart.cpp" >/dev/null
cmake --build "$work/cmake" >/dev/null
export PKG_CONFIG_PATH=$(dirname "$(find "$work/prefix" -name shmbus.pc)")
# The consumer chooses its standard (C++20 or later); the .pc adds only what shmbus needs besides.
g++ -std=c++20 "$src/examples/quickstart/quickstart.cpp" $(pkg-config --cflags --libs shmbus) -o "$work/quickstart-pc"
[[ $(pkg-config --variable=includedir shmbus) -ef $work/prefix/include ]] || { echo "pkg-config points elsewhere"; exit 1; }

"$work/prefix/bin/shmbusd" --dir "$work/bus" >"$work/daemon.log" 2>&1 &
daemon=$!
export SHMBUS_DIR=$work/bus
"$work/prefix/bin/shmbus" --wait 10s topic list >/dev/null  # ready
out1=$("$work/cmake/quickstart")
out2=$("$work/quickstart-pc")
echo "find_package build: $out1"
echo "pkg-config build:   $out2"
[[ $out1 == "0: EURUSD 1.0841" ]] && [[ $out2 == "1: EURUSD 1.0841" ]]
