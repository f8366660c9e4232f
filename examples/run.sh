#!/usr/bin/env bash
# Runs one of the exactly-once examples on a fresh bus, then checks its outcome:
#   examples/run.sh orders|notifications|logging|etl [COUNT]
# orders: a shop places COUNT orders; inventory, payment (a flaky provider: retries, and declined
#   cards to orders.reserved.dlq) and shipping handle each exactly once.
# notifications: COUNT events, each sent once by email and once by SMS, paced by rate limits, with
#   a provider that fails now and then.
# logging: three applications ship COUNT lines each; one aggregator counts them exactly once.
# etl: extract -> transform -> load COUNT records into a SQLite warehouse, exactly once.
# Builds first if needed (scripts/setup.sh). Everything runs in a temporary directory under $TMPDIR
# (default /tmp), removed after with the topics' shared memory.
set -euo pipefail
cd "$(dirname "$0")/.."
example=${1:-}
count=${2:-200}
case "$example" in
  orders) services=(inventory payment shipping); sources=("shop --count $count") ;;
  notifications) services=(email sms); sources=("events --count $count") ;;
  logging) services=(aggregator)
           sources=("app --name web --count $count" "app --name api --count $count" "app --name worker --count $count") ;;
  etl) services=(transform load); sources=("extract --count $count") ;;
  *) echo "usage: examples/run.sh orders|notifications|logging|etl [COUNT]" >&2; exit 64 ;;
esac
# SHMBUS_BUILD_DIR: the build to run (default build/, made by scripts/setup.sh if it is missing).
build=${SHMBUS_BUILD_DIR:-build}
if [[ ! -x $build/examples/$example || ! -x $build/daemon/shmbusd ]]; then
  [[ -n ${SHMBUS_BUILD_DIR:-} ]] && { echo "examples/run.sh: no $example in $build" >&2; exit 1; }
  scripts/setup.sh release
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/shmbus-example.XXXXXX")
bin=$build/examples/$example
common=(--dir "$work/bus" --data "$work")
pids=()
daemon_pid=""
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  # The topics' shared memory goes with the bus: /dev/shm keeps nothing of the run.
  if [[ -n "$daemon_pid" ]]; then
    for t in $("$build/clients/shmbus" --dir "$work/bus" topic list --names 2>/dev/null); do
      "$build/clients/shmbus" --dir "$work/bus" topic delete "$t" --force >/dev/null 2>&1
    done
    kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bus"
"$build/daemon/shmbusd" --dir "$work/bus" >"$work/shmbusd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do grep -q ready "$work/shmbusd.log" 2>/dev/null && break; sleep 0.05; done
echo "== $example: bus $(head -1 "$work/bus/bus.id")"

echo "== $example: starting ${services[*]}"
for s in "${services[@]}"; do
  "$bin" "$s" "${common[@]}" 2>>"$work/$s.err" &
  pids+=($!)
done
for src in "${sources[@]}"; do
  echo "== $example: $src"
  # shellcheck disable=SC2086 # the source's own words
  "$bin" $src "${common[@]}"
done

check=(check --count "$count" "${common[@]}")
[[ $example == logging ]] && check+=(--name web,api,worker)
for _ in $(seq 600); do
  if "$bin" "${check[@]}" >"$work/check.out" 2>&1; then
    cat "$work/check.out"
    [[ $example == logging ]] && "$build/clients/shmbus" --dir "$work/bus" subscription list logs
    [[ $example == orders ]] && "$build/clients/shmbus" --dir "$work/bus" dlq list orders.reserved
    echo "== $example: done, exactly once"
    exit 0
  fi
  [[ $? -eq 2 ]] && { cat "$work/check.out"; echo "== $example: something was applied twice" >&2; exit 1; }
  sleep 0.1
done
cat "$work/check.out"
echo "== $example: not finished after 60 s" >&2
exit 1
