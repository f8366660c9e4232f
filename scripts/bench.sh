#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: builds, runs every shmbus-bench benchmark once (JSON kept in
# docs/bench/results.json), then renders the report with plots.
#   scripts/bench.sh [extra shmbus-bench flags, e.g. --benchmark_filter=Latency]
# A run of some benchmarks on their own, kept beside the main run and added to the report as a
# further run whose figures replace the main run's of the same benchmarks:
#   scripts/bench.sh --partial NAME --benchmark_filter=REGEX      (JSON in docs/bench/NAME.json)
# Request/reply against D-Bus, gRPC and NATS alone (a full run makes it too), then the report:
#   scripts/bench.sh --requests                                   (table in docs/bench/requests.md)
# A full run supersedes every partial run: their files are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/bench/results.json
requests_only=0
if [[ "${1:-}" == "--requests" ]]; then
  requests_only=1
  shift
fi
if [[ "${1:-}" == "--partial" ]]; then
  [[ -n "${2:-}" && "$2" != results && "$2" != aeron ]] || { echo "bench: --partial takes a NAME (not results or aeron)" >&2; exit 2; }
  out="docs/bench/$2.json"
  shift 2
fi
# The work-queue peers, run beside shmbus on loopback, the Python module's peers (pyzmq,
# redis-py) and gRPC for shmbus-request-bench: never needed by the tests.
peers=(redis-server rabbitmq-server libhiredis-dev librabbitmq-dev python3-zmq python3-redis libgrpc++-dev)
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
# Request/reply against D-Bus, gRPC and NATS: its own program, its table kept beside the JSON.
if [[ $requests_only -eq 1 || "$out" == docs/bench/results.json ]]; then
  build/bench/shmbus-request-bench --calls 20000 --runs 3 > docs/bench/requests.md.new
  mv docs/bench/requests.md.new docs/bench/requests.md
fi
if [[ $requests_only -eq 0 ]]; then
  build/bench/shmbus-bench --benchmark_enable_random_interleaving=true \
    --benchmark_out="$out" --benchmark_out_format=json "$@" \
    2> >(grep -v 'Application registered' >&2)
fi
# A full run supersedes the partial runs; the report is rendered from what is left, with the
# section against Aeron from scripts/bench-aeron.sh's own run.
if [[ "$out" == docs/bench/results.json && $requests_only -eq 0 ]]; then
  for f in docs/bench/*.json; do
    case "$f" in
      docs/bench/results.json|docs/bench/aeron.json) ;;
      *) rm -f "$f" ;;
    esac
  done
fi
scripts/render-report.sh
