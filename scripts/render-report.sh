#!/usr/bin/env bash
# Renders docs/benchmarks.md (and its plots) from what docs/bench holds: the main run
# (results.json), every partial run kept beside it (scripts/bench.sh --partial), whose figures
# replace the main run's of the same benchmarks, and last the run against Aeron (aeron.json,
# scripts/bench-aeron.sh). scripts/bench.sh and scripts/bench-aeron.sh end with it; it may be run
# alone after editing bench/analysis.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3; [[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
inputs=(docs/bench/results.json)
for f in docs/bench/*.json; do
  case "$f" in
    docs/bench/results.json|docs/bench/aeron.json) ;;
    *) inputs+=("$f") ;;
  esac
done
[[ -f docs/bench/aeron.json ]] && inputs+=(docs/bench/aeron.json)
"$PY" bench/report "${inputs[@]}" --out docs/benchmarks.md --plots docs/bench
