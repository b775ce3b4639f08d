#!/usr/bin/env bash
# One A/B cell: start a cas-server binary on a fresh store, run loadgen against it, print
# "ops/s server-µs/op client-µs/op", stop the server. Used to compare two builds of the server
# in one session (run them alternately, several times, and take medians):
#
#   benches/ab.sh /tmp/cas-before put 4KiB 64 20000
#   benches/ab.sh "$CARGO_TARGET_DIR/release/cas-server" put 4KiB 64 20000
#
# Server on core 0, load generator on core 1; the store goes in $AB_DIR (default /var/tmp).
set -euo pipefail
target=${CARGO_TARGET_DIR:-/var/tmp/reprovm-target}
bin=$1 op=$2 size=$3 conns=$4 n=$5
dir=$(mktemp -d "${AB_DIR:-/var/tmp}/ab.XXXXXX")
CAS_LOG_LEVEL=warn taskset -c 0 "$bin" --listen 127.0.0.1:18491 --data-dir "$dir/cas" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:18491/health >/dev/null && break; sleep 0.1; done
sync
taskset -c 1 "$target/release/loadgen" --url "http://127.0.0.1:18491/v1/blobs/{digest}" --op "$op" --size "$size" \
  -c "$conns" -n "$n" --seed "$RANDOM" --server-pid "$pid" --clk-tck "$(getconf CLK_TCK)" --json |
  python3 -c "import json,sys; j=json.load(sys.stdin); print(j['ops_per_sec'], round(j['server_cpu_s']/j['requests']*1e6,1), round(j['client_cpu_s']/j['requests']*1e6,1))"
