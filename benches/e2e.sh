#!/usr/bin/env bash
# End-to-end scenarios against a release build, each next to the raw ack-only sink
# measured in the same run. Usage: benches/e2e.sh [seconds-per-run] [rounds] [scenario...]
# (scenarios: P0 P1 P3 P4 P6; default all). Prints one markdown table row per scenario
# and round (ratio = tidepool / sink; peak RSS = the daemon's VmHWM at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
ROUNDS=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
ONLY=" ${*:-P0 P1 P3 P4 P6} "
INFLIGHT=${INFLIGHT:-8}
cargo build --release --bins --examples -q
BIN=target/release/tidepool
LOAD=target/release/examples/load
WORK=/tmp/tidepool-bench
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

mkdir -p "$WORK"
$LOAD sink --listen 127.0.0.1:24299 2>/dev/null & pids+=($!)
$LOAD td-mock > "$WORK.mock-url" 2> "$WORK.mock-rows" & pids+=($!)
until grep -q "listening on" "$WORK.mock-url" 2>/dev/null; do sleep 0.1; done
export TD_MOCK_URL; TD_MOCK_URL=$(awk '{print $NF}' "$WORK.mock-url")

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
lines() { cat "$WORK"/data/out/*.jsonl 2>/dev/null | wc -l; }
store_rows() {
  $BIN -c benches/configs/store.toml query -d bench --json "select count(*) from cpu_info" 2>/dev/null \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['rows'][0][0])" 2>/dev/null || echo 0
}
mock_rows() { tail -n 1 "$WORK.mock-rows" 2>/dev/null | awk '{print $2} END {if (NR == 0) print 0}'; }
delivered() { # scenario
  case "$1" in
    P3-store) store_rows ;;
    P4-td) echo $(( $(mock_rows) - MOCK_BASE )) ;;
    *) lines ;;
  esac
}

run_scenario() { # name config
  local name=$1 cfg=$2
  case "$ONLY" in *" ${name%%-*} "*) ;; *) return 0 ;; esac
  rm -rf "$WORK/data" "$WORK/certs"; mkdir -p "$WORK"
  MOCK_BASE=$(mock_rows); MOCK_BASE=${MOCK_BASE:-0}
  $BIN -c "$cfg" 2>"$WORK.log" & local pid=$!
  until grep -q "listening on" "$WORK.log" 2>/dev/null; do sleep 0.1; done
  local sink tp
  sink=$($LOAD run --addr 127.0.0.1:24299 --conns 2 --batch 1000 --duration "$DUR" --inflight "$INFLIGHT" --json)
  tp=$($LOAD run --addr 127.0.0.1:24227 --conns 2 --batch 1000 --duration "$DUR" --inflight "$INFLIGHT" --json)
  local drained="-"
  if [ "$name" != "P0-null" ]; then
    local want t0; want=$(field "$tp" acked); t0=$(date +%s.%N)
    while [ "$(delivered "$name")" -lt "$want" ]; do sleep 0.05; done
    drained=$(python3 -c "import time,sys; print(f'{time.time()-float(sys.argv[1]):.2f} s')" "$t0")
  fi
  local rss; rss=$(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local s t; s=$(field "$sink" events_per_sec); t=$(field "$tp" events_per_sec)
  printf '| %s | %.1f M | %.2f M | %.2f | %s / %s ms | %s | %s |\n' "$name" \
    "$(python3 -c "print($s/1e6)")" "$(python3 -c "print($t/1e6)")" \
    "$(python3 -c "print($t/$s)")" "$(field "$tp" ack_p50_ms)" "$(field "$tp" ack_p99_ms)" "$drained" "$rss"
}

echo "| scenario | raw sink events/s | tidepool events/s | ratio | tidepool ack p50 / p99 | all events delivered after the load ended | peak RSS |"
echo "|---|---|---|---|---|---|---|"
for _ in $(seq "$ROUNDS"); do
  run_scenario P0-null benches/configs/null.toml
  run_scenario P1-durable-file benches/configs/durable-file.toml
  run_scenario P3-store benches/configs/store.toml
  run_scenario P4-td benches/configs/td.toml
  run_scenario P6-filtered-file benches/configs/filtered-file.toml
done
