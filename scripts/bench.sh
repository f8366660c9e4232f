#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: builds, runs every shmbus-bench benchmark once (JSON kept in
# docs/bench/results.json), then renders the report with plots.
#   scripts/bench.sh [extra shmbus-bench flags, e.g. --benchmark_filter=Latency]
set -euo pipefail
cd "$(dirname "$0")/.."
# The work-queue peers, run beside shmbus on loopback, and the Python module's peers (pyzmq,
# redis-py): never needed by the tests.
peers=(redis-server rabbitmq-server libhiredis-dev librabbitmq-dev python3-zmq python3-redis)
missing_peers=()
for p in "${peers[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing_peers+=("$p"); done
if [[ ${#missing_peers[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "bench: installing the work-queue peers: ${missing_peers[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_peers[@]}" >/dev/null
    # Debian starts the servers it installs where it can; the benchmark runs its own on loopback.
    for s in redis-server rabbitmq-server; do service "$s" stop >/dev/null 2>&1 || true; done
  else
    echo "bench: ${missing_peers[*]} missing; those work-queue peers are left out" >&2
  fi
fi
scripts/setup.sh release  # after the peers: it finds their client libraries
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
# The section against Aeron comes from scripts/bench-aeron.sh's own run, kept when present. A run
# of some benchmarks alone (docs/bench/keys.json: the ordered-by-key work queues beside their
# peers and the latest value per key) is added only while it is newer than the main run.
extra=(); [[ -f docs/bench/aeron.json ]] && extra+=(docs/bench/aeron.json)
[[ docs/bench/keys.json -nt docs/bench/results.json ]] && extra+=(docs/bench/keys.json)
"$PY" bench/report docs/bench/results.json "${extra[@]}" --out docs/benchmarks.md --plots docs/bench
