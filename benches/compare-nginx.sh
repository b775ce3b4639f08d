#!/usr/bin/env bash
# cas-server vs nginx (WebDAV PUT, sendfile GET) on the same machine, same
# filesystem, same load generator. Prints a markdown table of medians and the
# cas-server/nginx ratio.
#
#   benches/compare-nginx.sh            # full run (a few minutes)
#   QUICK=1 benches/compare-nginx.sh    # smoke run (seconds), used by the tests
#
# For stable figures (see BENCHMARKS.md) run as root: data goes on a fresh
# loop-mounted ext4, the server is pinned to core 0 and the load generator to core 1.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-/var/tmp/reprovm-target}
export CARGO_TARGET_DIR=$target
runs=${RUNS:-3}
if [ -n "${QUICK:-}" ]; then runs=1; fi
(cd "$here" && cargo build --release -q -p cas-server -p reprovm-benches)
bin=$target/release
command -v nginx >/dev/null || { echo "nginx is not installed (apt-get install nginx-extras)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/reprovm-bench.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
loop=""
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  [ -n "${cas_pid:-}" ] && kill "$cas_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "$loop" ] && umount "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${QUICK:-}" ] && [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
  truncate -s 48G "$work/fs.img"
  mkfs.ext4 -q -F "$work/fs.img"
  mount -o loop "$work/fs.img" "$mnt" && loop=yes
fi
pin_server=""; pin_load=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_server="taskset -c 0"; pin_load="taskset -c 1"; fi

mkdir -p "$mnt/nginx/dav" "$mnt/nginx/tmp" "$mnt/cas"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_max_body_size 0;
  client_body_temp_path $mnt/nginx/tmp;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:18481;
    root $mnt/nginx;
    location /dav/ {
      dav_methods PUT DELETE;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
    }
  }
}
CONF
$pin_server nginx -c "$work/nginx.conf" -g 'daemon on;'
CAS_LOG_LEVEL=warn $pin_server "$bin/cas-server" --listen 127.0.0.1:18480 --data-dir "$mnt/cas" >"$work/cas.out" 2>"$work/cas.err" &
cas_pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18480/health >/dev/null && curl -s -o /dev/null http://127.0.0.1:18481/ && break; sleep 0.1; done

# Pre-touch memory so first-touch page faults on this VM do not skew the first run.
python3 -c "b = bytearray(1 << 30); b[::4096] = b'x' * (len(b) // 4096)" 2>/dev/null || true

# scenario: size concurrency requests
if [ -n "${QUICK:-}" ]; then
  scenarios=("4KiB 8 200" "1MiB 8 16" "8MiB 1 3")
else
  scenarios=("4KiB 64 20000" "1MiB 8 800" "256MiB 1 6")
fi
clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
# nginx's requests are served by its worker, not the master whose pid is in the pid file.
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
seed=1
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# CPU columns: server and load generator CPU per request (µs) during the measured phase, so that
# cells bound by the load generator (client CPU near 1 core-second per second) are visible.
printf '| blob size | conns | op | nginx ops/s | cas-server ops/s | nginx MB/s | cas-server MB/s | cas/nginx | server µs/op nginx | server µs/op cas | client µs/op nginx | client µs/op cas |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for sc in "${scenarios[@]}"; do
  read -r size conc n <<<"$sc"
  for op in put get; do
    declare -A ops mbs scpu ccpu
    for name in nginx cas; do
      if [ "$name" = nginx ]; then
        url="http://127.0.0.1:18481/dav/{digest}"; pid=$nginx_worker
      else
        url="http://127.0.0.1:18480/v1/blobs/{digest}"; pid=$cas_pid
      fi
      vals=(); mbv=(); sv=(); cv=()
      for _ in $(seq "$runs"); do
        seed=$((seed + 1))
        sync
        out=$($pin_load "$bin/loadgen" --url "$url" --op $op --size "$size" -c "$conc" -n "$n" --seed $seed \
          --server-pid "$pid" --clk-tck "$clk_tck" --json)
        field() { echo "$out" | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }
        vals+=("$(field 'j["ops_per_sec"]')")
        mbv+=("$(field 'j["mb_per_sec"]')")
        sv+=("$(field 'round(j["server_cpu_s"] / j["requests"] * 1e6, 1)')")
        cv+=("$(field 'round(j["client_cpu_s"] / j["requests"] * 1e6, 1)')")
      done
      ops[$name]=$(printf '%s\n' "${vals[@]}" | median)
      mbs[$name]=$(printf '%s\n' "${mbv[@]}" | median)
      scpu[$name]=$(printf '%s\n' "${sv[@]}" | median)
      ccpu[$name]=$(printf '%s\n' "${cv[@]}" | median)
    done
    ratio=$(python3 -c "print(f'{${ops[cas]}/${ops[nginx]}:.2f}')")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$size" "$conc" "$op" "${ops[nginx]}" "${ops[cas]}" \
      "${mbs[nginx]}" "${mbs[cas]}" "$ratio" "${scpu[nginx]}" "${scpu[cas]}" "${ccpu[nginx]}" "${ccpu[cas]}"
  done
done
echo
echo "runs per cell: $runs (median); loop-mounted ext4: ${loop:-no}; pinning: ${pin_server:-none}"
hwm() { awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$1/status" 2>/dev/null; }
echo "peak RSS over the whole run: cas-server $(hwm "$cas_pid"), nginx worker $(hwm "$nginx_worker")"
