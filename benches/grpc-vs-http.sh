#!/usr/bin/env bash
# cas-server's gRPC face (REAPI ByteStream and batch calls) against its HTTP face, same server,
# same store, same load generator. Prints a markdown table of medians.
#
#   benches/grpc-vs-http.sh            # full run (a few minutes)
#   QUICK=1 benches/grpc-vs-http.sh    # smoke run (seconds), used by scripts/test.sh
#
# Small blobs go the way Bazel sends them: many per BatchUpdateBlobs/BatchReadBlobs call
# (64 per call here), and one per HTTP request; large ones by ByteStream and HTTP PUT/GET.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-/var/tmp/reprovm-target}
export CARGO_TARGET_DIR=$target
runs=${RUNS:-3}
if [ -n "${QUICK:-}" ]; then runs=1; fi
[ -n "${NO_BUILD:-}" ] || (cd "$here" && cargo build --release -q -p cas-server -p reprovm-benches)
bin=$target/release

work=$(mktemp -d /var/tmp/reprovm-grpc-bench.XXXXXX)
cleanup() {
  [ -n "${cas_pid:-}" ] && kill "$cas_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
pin_server=""; pin_load=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin_server="taskset -c 0"; pin_load="taskset -c 1"; fi
CAS_LOG_LEVEL=warn $pin_server "$bin/cas-server" --listen 127.0.0.1:0 --data-dir "$work/cas" >"$work/cas.out" 2>"$work/cas.err" &
cas_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/cas.out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's|^listening on http://||p' "$work/cas.out" | head -1)
[ -n "$addr" ] || { echo "cas-server did not start" >&2; cat "$work/cas.err" >&2; exit 1; }

# scenario: size concurrency http-requests grpc-calls batch
if [ -n "${QUICK:-}" ]; then
  scenarios=("4KiB 8 256 4 64" "1MiB 4 16 16 1" "16MiB 1 2 2 1")
else
  scenarios=("4KiB 16 16384 256 64" "64KiB 16 4096 256 16" "1MiB 8 800 800 1" "64MiB 1 8 8 1")
fi
clk_tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
seed=1
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() { # op url n batch size conc -> "blobs/s MB/s server-µs/blob"
  local op=$1 url=$2 n=$3 batch=$4 size=$5 conc=$6 vals=() mbv=() sv=() out
  for _ in $(seq "$runs"); do
    seed=$((seed + 1))
    out=$($pin_load "$bin/loadgen" --url "$url" --op "$op" --size "$size" -c "$conc" -n "$n" --batch "$batch" \
      --seed $seed --server-pid "$cas_pid" --clk-tck "$clk_tck" --json)
    field() { echo "$out" | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }
    vals+=("$(field 'round(j["ops_per_sec"] * j["batch"], 1)')")
    mbv+=("$(field 'j["mb_per_sec"]')")
    sv+=("$(field 'round(j["server_cpu_s"] / (j["requests"] * j["batch"]) * 1e6, 1)')")
  done
  echo "$(printf '%s\n' "${vals[@]}" | median) $(printf '%s\n' "${mbv[@]}" | median) $(printf '%s\n' "${sv[@]}" | median)"
}
printf '| blob size | conns | direction | HTTP blobs/s | gRPC blobs/s | HTTP MB/s | gRPC MB/s | gRPC/HTTP | gRPC call | server µs/blob HTTP | server µs/blob gRPC |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for sc in "${scenarios[@]}"; do
  read -r size conc n_http n_grpc batch <<<"$sc"
  for dir in upload download; do
    if [ "$dir" = upload ]; then hop=put; else hop=get; fi
    if [ "$batch" -gt 1 ]; then
      [ "$dir" = upload ] && gop=batch-update || gop=batch-read
      call="Batch×$batch"
    else
      [ "$dir" = upload ] && gop=bs-write || gop=bs-read
      call="ByteStream"
    fi
    read -r h_ops h_mb h_cpu <<<"$(measure $hop "http://$addr/v1/blobs/{digest}" "$n_http" 1 "$size" "$conc")"
    read -r g_ops g_mb g_cpu <<<"$(measure $gop "grpc://$addr" "$n_grpc" "$batch" "$size" "$conc")"
    ratio=$(python3 -c "print(f'{$g_ops/$h_ops:.2f}')")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$size" "$conc" "$dir" "$h_ops" "$g_ops" "$h_mb" "$g_mb" "$ratio" "$call" "$h_cpu" "$g_cpu"
  done
done
echo
echo "runs per cell: $runs (median); pinning: ${pin_server:-none}"
awk '/VmHWM/ {printf "cas-server peak RSS over the whole run: %.0f MiB\n", $2 / 1024}' "/proc/$cas_pid/status" 2>/dev/null || true
