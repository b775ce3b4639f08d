#!/usr/bin/env bash
# Soak test (not in CI): 64 clients for 10 minutes of mixed PUT/GET/blobs:missing against a fresh
# cas-server; prints progress with the server's RSS and fails on any error or growing RSS.
#   benches/soak.sh                 # 600 s, 64 clients
#   SECS=60 CLIENTS=16 benches/soak.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/reprovm-target}
(cd "$here" && cargo build --release -q -p cas-server -p reprovm-benches --bin cas-server --bin soak)
bin=$CARGO_TARGET_DIR/release
work=$(mktemp -d /var/tmp/reprovm-soak.XXXXXX)
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
CAS_LOG_LEVEL=warn "$bin/cas-server" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$work/out")
[ -n "$url" ] || { cat "$work/err"; exit 1; }
echo "cas-server $url (pid $pid), data in $work"
"$bin/soak" --url "$url" --pid "$pid" --clients "${CLIENTS:-64}" --secs "${SECS:-600}" --every "${EVERY:-30}"
echo "data dir: $(du -sh "$work/data" | cut -f1); server log lines at warn+: $(wc -l <"$work/err")"
