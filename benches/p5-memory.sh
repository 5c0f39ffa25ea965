#!/usr/bin/env bash
# P5: tidepool's resident memory idle, and with N idle TLS connections (handshake done,
# no data), as Mbed devices that keep a connection open between readings.
# Usage: benches/p5-memory.sh [connections]   (needs `ulimit -n` above the count)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
cargo build --release --bins -q
rm -rf /tmp/tidepool-p5
target/release/tidepool -c benches/configs/memory.toml 2>/tmp/tidepool-p5.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until grep -q "source #2" /tmp/tidepool-p5.log 2>/dev/null; do sleep 0.1; done
idle=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
python3 - "$N" <<'PY' &
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile="/tmp/tidepool-p5/certs/ca.pem")
conns = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", 25228)), server_hostname="127.0.0.1")
         for _ in range(int(sys.argv[1]))]
print("open", len(conns), flush=True)
time.sleep(30)
PY
client=$!
until [ "$(ls /proc/$pid/fd | wc -l)" -ge "$N" ]; do sleep 0.5; done
sleep 2
busy=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
kill $client 2>/dev/null || true
echo "idle RSS: $((idle / 1024)) MiB; with $N idle TLS connections: $((busy / 1024)) MiB; per connection: $(( (busy - idle) * 1024 / N )) bytes"
