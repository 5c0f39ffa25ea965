#!/usr/bin/env bash
# MQTT input throughput against a local Mosquitto: N queued QoS 1 messages drained by
# mosquitto_sub (the broker's own client) and by tidepool (file buffer, fsync before
# each PUBACK), both from a persistent session, in the same run.
# Usage: benches/mqtt.sh [messages] [max_inflight_messages]   (needs mosquitto, bc, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}; INFL=${2:-0}
cargo build --release --bins -q
BIN=$PWD/target/release/tidepool
D=$(mktemp -d /tmp/tidepool-mqtt.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"; }
trap cleanup EXIT
cat > "$D/m.conf" <<C
listener 18830 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages $INFL
C
[ "$(id -u)" = 0 ] && echo "user root" >> "$D/m.conf"
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
$MOSQUITTO -c "$D/m.conf" 2>/dev/null & pids+=($!)
sleep 0.5
seq 1 "$N" | awk '{printf "{\"seq\":%d,\"temp\":21.5,\"device\":\"d1\",\"heap\":4096}\n",$1}' > "$D/payloads"
(cd "$D" && split -l 10000 payloads chunk.)
# mosquitto_pub -l with one huge input loses messages here; chunks of 10k lines do not.
publish() { for f in "$D"/chunk.*; do mosquitto_pub -h 127.0.0.1 -p 18830 -q 1 -t bench/d1 -l < "$f"; done; }
cat > "$D/tp.toml" <<T
[server]
data_dir = "$D/data"
[api]
listen = "127.0.0.1:24299"
[[source]]
type = "mqtt"
broker = "127.0.0.1:18830"
topics = ["bench/#"]
qos = 1
client_id = "tpbench"
[[match]]
pattern = "**"
outputs = ["sink"]
[output.sink]
type = "null"
buffer = { type = "file" }
T
# Register both persistent sessions, then leave so the broker queues for both.
mosquitto_sub -h 127.0.0.1 -p 18830 -c -i subbench -q 1 -t 'bench/#' -W 1 >/dev/null 2>&1 || true
$BIN -c "$D/tp.toml" run 2>"$D/tp.log" & tp=$!
until grep -q "subscribed to" "$D/tp.log"; do sleep 0.1; done
kill -9 "$tp"; wait "$tp" 2>/dev/null || true
rate() { echo "$N/($2-$1)" | bc; }
t0=$(date +%s.%N); publish; t1=$(date +%s.%N)
echo "publish: $N QoS 1 messages with mosquitto_pub: $(rate "$t0" "$t1") msg/s"
t0=$(date +%s.%N)
got=$(mosquitto_sub -h 127.0.0.1 -p 18830 -c -i subbench -q 1 -t 'bench/#' -C "$N" -W 100 | wc -l)
t1=$(date +%s.%N)
echo "mosquitto_sub drained $got: $(rate "$t0" "$t1") msg/s"
t0=$(date +%s.%N)
$BIN -c "$D/tp.toml" run 2>>"$D/tp.log" & pids+=($!)
while true; do
  # The API may not listen yet: a refused curl must not end the script (set -e).
  a=$(curl -s http://127.0.0.1:24299/metrics 2>/dev/null | awk '/^tidepool_mqtt_acks_total/ {print $NF}' || true)
  [ -n "$a" ] && [ "$a" -ge "$N" ] && break
  sleep 0.05
done
t1=$(date +%s.%N)
echo "tidepool drained $a, each PUBACK after fsync: $(rate "$t0" "$t1") msg/s (startup included)"
