#!/usr/bin/env bash
# HTTP input (Treasure Data postback, one JSON record per request, keep-alive, one
# request in flight per connection) against a release build: the durable config
# (benches/configs/http.toml: file buffer, fdatasync before each 200) and, right after
# it on the same load, the memory-buffer config (benches/configs/http-memory.toml: the
# non-durable upper bound of the same HTTP path). After each durable run `load verify`
# checks that every request answered 200 is in the output file, once.
# Usage: benches/http.sh [seconds-per-run] [rounds] [conns...]   (default: 10 2 256)
# Prints one markdown table row per connection count and round; the full JSON reports
# are appended to /tmp/tidepool-bench-http.runs.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
ROUNDS=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
CONNS=${*:-256}
ADDR=127.0.0.1:28080
cargo build --release --bins --examples -q
BIN=target/release/tidepool
LOAD=target/release/examples/load
WORK=/tmp/tidepool-bench-http
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
# The error count, with the kinds when there are any.
errs() { python3 -c "import json,sys; j=json.loads(sys.argv[1]); print(f\"{j['errors']} {j['errors_by_kind']}\" if j['errors'] else 0)" "$1"; }

start() { # config
  rm -rf "$WORK"; mkdir -p "$WORK"
  $BIN -c "$1" 2>"$WORK.log" & pid=$!
  until grep -q "listening on" "$WORK.log" 2>/dev/null; do sleep 0.1; done
}

stop() {
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

# Waits (up to 60 s) until `load verify` finds every 200 of run $1 in the output file.
verified() { # run
  local i
  for i in $(seq 600); do
    if $LOAD verify --run "$1" --acked "$WORK.acked" --file "$WORK"/data/out/*.jsonl >/dev/null 2>&1; then
      echo "yes"; return
    fi
    sleep 0.1
  done
  echo "NO: $($LOAD verify --json --run "$1" --acked "$WORK.acked" --file "$WORK"/data/out/*.jsonl 2>&1 | tr '\n' ' ')"
}

echo "| conns | durable req/s | memory-buffer req/s | ratio | durable p50 / p99 | memory p50 / p99 | errors (durable / memory) | every 200 in the file |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    run="http-$round-$c"
    start benches/configs/http.toml
    d=$($LOAD http --addr "$ADDR" --conns "$c" --duration "$DUR" --seq "$run" --acked-out "$WORK.acked" --json)
    ok=$(verified "$run")
    stop
    start benches/configs/http-memory.toml
    m=$($LOAD http --addr "$ADDR" --conns "$c" --duration "$DUR" --seq "$run" --json)
    stop
    printf '%s\n%s\n' "$d" "$m" >> "$WORK.runs.jsonl" # the full reports, durable then memory
    dr=$(field "$d" requests_per_sec); mr=$(field "$m" requests_per_sec)
    printf '| %s | %s | %s | %.2f | %s / %s ms | %s / %s ms | %s / %s | %s |\n' "$c" "$dr" "$mr" \
      "$(python3 -c "print($dr/max($mr,1))")" "$(field "$d" ack_p50_ms)" "$(field "$d" ack_p99_ms)" \
      "$(field "$m" ack_p50_ms)" "$(field "$m" ack_p99_ms)" "$(errs "$d")" "$(errs "$m")" "$ok"
  done
done
