#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: builds, runs every shmbus-bench benchmark once (JSON kept in
# docs/bench/results.json), then renders the report with plots.
#   scripts/bench.sh [extra shmbus-bench flags, e.g. --benchmark_filter=Latency]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release
PY=python3; [[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "bench: installing python3-matplotlib for the plots"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-matplotlib >/dev/null
  else
    echo "bench: python3-matplotlib is missing; the report will have no plots" >&2
  fi
fi
mkdir -p docs/bench
SHMBUS_BENCH_COMMIT="$(git describe --always --dirty 2>/dev/null || echo unknown)"
export SHMBUS_BENCH_COMMIT
build/bench/shmbus-bench --benchmark_enable_random_interleaving=true \
  --benchmark_out=docs/bench/results.json --benchmark_out_format=json "$@" \
  2> >(grep -v 'Application registered' >&2)
"$PY" bench/report docs/bench/results.json --out docs/benchmarks.md --plots docs/bench
