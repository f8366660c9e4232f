#!/usr/bin/env bash
# shmbus beside Aeron IPC in one run (docs/benchmarks.md, "Against Aeron").
#   scripts/bench-aeron.sh AERON_SOURCE [extra shmbus-bench flags]
# AERON_SOURCE: a checkout of https://github.com/real-logic/aeron. Its C client and media driver
# are built outside the project (in $AERON_WORK, default /tmp/shmbus-aeron), shmbus-bench is
# built against them in build/aeron, and the comparison runs: the floors, raw_ring, shmbus and
# Aeron latency from 8 B to 1 MiB (iceoryx beside them where installed), throughput 64 B 1->1 at a
# 1 MiB and a 16 MiB ring and term (VsAeron/...), the same latencies and the 16 MiB streams in alternating blocks so that
# both sides see the same phase of the machine (Paired/...; PairedLong/... for the 64 B p99), and the per-message breakdown. The results go to
# docs/bench/aeron.json, then the report is rendered again. Aeron is never needed by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 || ! -f "$1/aeron-client/src/main/c/aeronc.h" ]]; then
  echo "usage: scripts/bench-aeron.sh AERON_SOURCE [shmbus-bench flags]   (an Aeron source checkout)" >&2
  exit 2
fi
src="$(cd "$1" && pwd)"; shift
work="${AERON_WORK:-/tmp/shmbus-aeron}"
scripts/setup.sh release
mkdir -p "$work"
# Aeron asks for CMake 3.26; Debian 12 has 3.25, which builds its C client and driver as well.
# The source is copied so that the lowered version never touches the caller's checkout.
rm -rf "$work/src" && cp -a "$src" "$work/src"
have="$(cmake --version | sed -n 's/cmake version \([0-9]*\.[0-9]*\).*/\1/p')"
sed -i -E "s/(cmake_minimum_required\(VERSION )3\.2[6-9]/\1$have/; s/(cmake_policy\(VERSION )3\.2[6-9]/\1$have/" "$work/src/CMakeLists.txt"
cmake -S "$work/src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_AERON_DRIVER=ON \
  -DBUILD_AERON_ARCHIVE_API=OFF -DAERON_TESTS=OFF -DAERON_UNIT_TESTS=OFF -DAERON_SYSTEM_TESTS=OFF \
  -DAERON_BUILD_SAMPLES=OFF -DAERON_BUILD_DOCUMENTATION=OFF >/dev/null
cmake --build "$work/build" --target aeron aeron_driver aeronmd
# The parts shmbus-bench uses, laid out as an install tree (Aeron's own install step wants every
# target built, its C++ client included): the C client's headers, libaeron.so and aeronmd.
rm -rf "$work/install" && mkdir -p "$work/install/include/aeron" "$work/install/lib" "$work/install/bin"
(cd "$work/src/aeron-client/src/main/c" && find . -name '*.h' -exec cp --parents {} "$work/install/include/aeron/" \;)
cp -a "$work/build/lib/"libaeron.so* "$work/install/lib/"
cp "$work/build/binaries/aeronmd" "$work/install/bin/"
cmake -S . -B build/aeron -G Ninja -DCMAKE_BUILD_TYPE=Release -DSHMBUS_BENCH_AERON_DIR="$work/install" >/dev/null
cmake --build build/aeron --target shmbus-bench shmbusd
mkdir -p docs/bench
SHMBUS_BENCH_COMMIT="$(git describe --always --dirty 2>/dev/null || echo unknown)"
export SHMBUS_BENCH_COMMIT
build/aeron/bench/shmbus-bench --benchmark_enable_random_interleaving=true \
  --benchmark_filter='^(Warmup|Latency/(cacheline|raw_ring|shmbus_spin|shmbus_exclusive|shmbus_spin_untimed|shmbus_exclusive_untimed|aeron_ipc|aeron_ipc_exclusive|iceoryx)/|Paired/|PairedLong/|PairedThroughput/|VsAeron/|Breakdown/)' \
  --benchmark_out=docs/bench/aeron.json --benchmark_out_format=json "$@" \
  2> >(grep -v 'Application registered' >&2)
# Rendered from every run docs/bench holds, as scripts/bench.sh renders it.
scripts/render-report.sh
