#!/usr/bin/env bash
# Reruns every figure of BENCHMARKS.md on this machine: builds topgate (release), seeds a
# 1-thousand-order and a 1-million-order SQLite store, installs Mockoon into bench/.mockoon,
# then drives each API with `topgate bench` against 127.0.0.1 only. Every phase of one
# `topgate bench` call (healthz ceiling, API, Mockoon) runs in the same process with the same
# connections, so the ratios it prints are of one run. Results: bench/results/*.json and
# bench/results/summary.txt.
#
# Each call alternates its phases for ROUNDS rounds (default 3) and reports the median of the
# rounds' ratios: the machine's speed drifts by more than 10 % between phases.
#
# Usage: bench/run.sh [seconds-per-phase]   (default 5; BIG_ORDERS=1000000 to change the big store)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-5}"
BIG_ORDERS="${BIG_ORDERS:-1000000}"
ROUNDS="${ROUNDS:-3}"
WORK="${BENCH_WORK:-/tmp/topgate-bench}"
OUT=bench/results
PORT=18080
MOCK_PORT=18090
TOKEN=bench-admin-token
URL="http://127.0.0.1:$PORT/router/rest"
BIN=target/release/topgate
mkdir -p "$WORK" "$OUT"

echo "== build"
cargo build --release --locked -p topgate

echo "== Mockoon (@mockoon/cli from npm, into bench/.mockoon)"
if [ ! -x bench/.mockoon/node_modules/.bin/mockoon-cli ]; then
  npm install --prefix bench/.mockoon --no-audit --no-fund --silent @mockoon/cli
fi

SERVER_PID=""
MOCK_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1"; exit 1
}

start_server() { # $1 = database file
  TOPGATE_ADMIN_TOKEN=$TOKEN "$BIN" --sandbox --database-url "sqlite://$1" serve \
    --listen "127.0.0.1:$PORT" >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER_PID=$!
  wait_port $PORT
}

stop_server() {
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}

# Peak RSS (VmHWM) of the server so far, in MiB.
peak_rss() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status"; }

bench() { # name, then topgate bench arguments
  local name=$1; shift
  echo "-- $name"
  "$BIN" bench --url "$URL" --admin-token "$TOKEN" --duration "$SECS" --rounds "$ROUNDS" --json "$@" >"$OUT/$name.json"
  python3 - "$OUT/$name.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for p in d["phases"]:
    l = p["latency_us"]
    print(f'   {p["name"]+"#"+str(p["round"]):<11} {p["throughput"]:>9.0f}/s  p50 {l["p50"]/1000:.2f} p99 {l["p99"]/1000:.2f} p99.9 {l["p999"]/1000:.2f} max {l["max"]/1000:.2f} ms  errors {p["errors"]} {p["errors_by_code"] or ""}')
r = d.get("ratio_to_ceiling"); c = d.get("ratio_to_compare")
rounds = lambda key, scale, unit: ", ".join(f"{x*scale:.1f}{unit}" for x in d.get(key) or [])
if r is not None: print(f'   {d["api"]} / healthz ceiling: median {r*100:.1f}% (rounds: {rounds("ratio_to_ceiling_by_round", 100, "%")})')
if c is not None: print(f'   {d["api"]} / mockoon: median {c:.1f}x (rounds: {rounds("ratio_to_compare_by_round", 1, "x")})')
PY
}

{
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), disk: $(df -h "$WORK" | awk 'NR==2 {print $1" "$2}')"
echo "date: $(date -u +%FT%TZ), ${SECS}s per phase"

echo "== 1 thousand stored orders"
rm -f "$WORK"/small.db*
"$BIN" --database-url "sqlite://$WORK/small.db" bench seed --orders 1000
start_server "$WORK/small.db"
# Mockoon serves one canned answer per API (bench/mockoon-<api>.json), one environment at a
# time on the same port. Both sides are compared in their steady state: Node compiles
# Mockoon's hot paths while it runs, and a fresh topgate store grows its WAL and database files
# during the first seconds of writes. One unmeasured phase of the same requests warms each.
compare_with_mockoon() { # api, then extra topgate bench arguments
  local api=$1; shift
  node bench/.mockoon/node_modules/@mockoon/cli/bin/run.js start -d "bench/mockoon-$api.json" \
    -p $MOCK_PORT -X >"$WORK/mockoon-$api.log" 2>&1 &
  MOCK_PID=$!
  wait_port $MOCK_PORT
  for warm_url in "http://127.0.0.1:$MOCK_PORT/router/rest" "$URL"; do
    "$BIN" bench --url "$warm_url" --api "$api" --connections 64 --duration "$SECS" --no-ceiling --json "$@" >/dev/null
  done
  bench "$api-64-mockoon" --api "$api" --connections 64 --compare-url "http://127.0.0.1:$MOCK_PORT/router/rest" --compare-name mockoon "$@"
  kill "$MOCK_PID"; wait "$MOCK_PID" 2>/dev/null || true; MOCK_PID=""
}
compare_with_mockoon pay
compare_with_mockoon lianbei --seeded 1000
bench lianbei-64-1k --api lianbei --connections 64 --seeded 1000
bench pay-64-1k --api pay --connections 64
# Supplier and opentrade requests each consume an order made for the run: a pool large enough
# for every round keeps them first notices (past the pool they would be idempotent replays).
bench supplier-64 --api supplier --connections 64 --pool 250000
bench opentrade-64 --api opentrade --connections 64 --pool 250000
bench mix-64 --api mix --connections 64 --seeded 1000 --pool 250000
for c in 1 16 256; do
  bench "pay-$c" --api pay --connections "$c"
  bench "lianbei-$c" --api lianbei --connections "$c" --seeded 1000
done
stop_server

echo "== $BIG_ORDERS stored orders"
# Seeded afresh by every run (about 20 s): the pay phases below add their orders to it, and a
# store kept from run to run would hold several million after a few runs.
rm -f "$WORK/big-$BIG_ORDERS".*
"$BIN" --database-url "sqlite://$WORK/big-$BIG_ORDERS.db" bench seed --orders "$BIG_ORDERS"
start_server "$WORK/big-$BIG_ORDERS.db"
bench pay-64-big --api pay --connections 64
# The lianbei phase measures the steady state that the 1-thousand-order run also measures:
# its read model (about 0.2 GB) read from the OS page cache, not from the disk. This machine
# drops file pages nobody touched for a while (DAMON reclaim, see BENCHMARKS.md), and a
# lookup of a dropped page waits for a random disk read (measured once: 500-2 300 lookups/s).
# So the file is read once, then an unmeasured phase touches the pages the lookups use.
cat "$WORK/big-$BIG_ORDERS.db" >/dev/null
"$BIN" bench --url "$URL" --api lianbei --connections 64 --seeded "$BIG_ORDERS" --duration "$SECS" \
  --no-ceiling --json >/dev/null
bench lianbei-64-big --api lianbei --connections 64 --seeded "$BIG_ORDERS"
echo "peak RSS of the server under load with $BIG_ORDERS orders: $(peak_rss) MiB"
stop_server
} 2>&1 | tee "$OUT/summary.txt"
