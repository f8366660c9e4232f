#!/usr/bin/env bash
# The main job on the embedded defaults: the price-update example of a decoupled architecture.
# A catalog publishes price-changed events on topic `prices`; a basket service holds a durable
# subscription and reprices carts (it is stopped halfway, shmbusd itself is killed and restarted
# meanwhile, and basket catches up after its restart); an analytics process subscribes
# ephemerally; a basket started late begins with the current price of every product (the topic is
# compacted: it keeps the latest message of each key); checkout asks a pricing service for a quote
# (request/reply), and is told at once when no service answers. Everything runs on a fresh bus (and
# state directory) that is removed after.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo  # the bus, the CLI and the examples: no tests, no benchmarks
build=build/demo

bus=$(mktemp -d /tmp/shmbus-demo.XXXXXX)
shmbus() { "$build/clients/shmbus" --dir "$bus" "$@"; }
daemon_pid=""
serve_pid=""
cleanup() {
  set +e
  [[ -n "$serve_pid" ]] && kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    shmbus topic delete prices >/dev/null 2>&1
    shmbus topic delete quote --force >/dev/null 2>&1
    kill -TERM "$daemon_pid"
    wait "$daemon_pid"
  fi
  rm -rf "$bus"
}
trap cleanup EXIT

echo "== starting shmbusd on $bus"
"$build/daemon/shmbusd" --dir "$bus" --state-dir "$bus/state" >"$bus/shmbusd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do grep -q ready "$bus/shmbusd.log" 2>/dev/null && break; sleep 0.05; done
grep -q ready "$bus/shmbusd.log" || { cat "$bus/shmbusd.log"; exit 1; }

wait_for_subscriptions() {
  for _ in $(seq 200); do
    [[ $(shmbus topic info prices --json 2>/dev/null | grep -c '"state": "attached"') -ge "$1" ]] && return 0
    sleep 0.05
  done
  echo "demo: subscribers did not attach" >&2
  return 1
}

echo "== basket (durable) and analytics (ephemeral) subscribe; the catalog publishes 6 changes"
shmbus topic create prices --capacity 1M --compact  # keyed by product: the latest price of each is kept
"$build/examples/analytics" --dir "$bus" --count 12 >"$bus/analytics.out" &
analytics_pid=$!
"$build/examples/basket" --dir "$bus" --count 6 &
basket_pid=$!
wait_for_subscriptions 2
"$build/examples/catalog" --dir "$bus" --changes 6
wait "$basket_pid"

echo "== basket is down; the catalog publishes 6 more changes"
"$build/examples/catalog" --dir "$bus" --changes 6 | sed 's/^/(basket down) /'
wait "$analytics_pid"
cat "$bus/analytics.out"
shmbus topic info prices

echo "== shmbusd is killed with SIGKILL and started again: it re-adopts the topic and basket's cursor"
kill -KILL "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
"$build/daemon/shmbusd" --dir "$bus" --state-dir "$bus/state" >>"$bus/shmbusd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [[ $(grep -c ready "$bus/shmbusd.log") -ge 2 ]] && break; sleep 0.05; done
grep -E "re-adopted|gc:" "$bus/shmbusd.log" | sed 's/^.*\] /shmbusd: /'

echo "== basket restarts and catches up from its last ack"
"$build/examples/basket" --dir "$bus" --count 6

echo "== a basket started late asks for the current price of every product (the latest message per key)"
"$build/examples/basket" --dir "$bus" --from latest-per-key --count 4

echo "== checkout asks the pricing service for a quote (request/reply); stopped, the service cannot answer"
"$build/clients/shmbus" --dir "$bus" serve quote --exec 'read -r sku; echo "$sku: 19.99 EUR"' &
serve_pid=$!
for _ in $(seq 200); do shmbus topic info quote --json 2>/dev/null | grep -q '"responders": 1' && break; sleep 0.05; done
echo "checkout: $(shmbus request quote sku-42 --timeout 2s)"
kill -TERM "$serve_pid"
wait "$serve_pid" || true
serve_pid=""
if shmbus request quote sku-42 --timeout 2s; then echo "demo: a quote came with no service running" >&2; exit 1; fi
shmbus topic info quote | grep requests

echo "== the topic at the end"
shmbus topic info prices
echo "== stopping; removing the bus"
