#!/usr/bin/env bash
# Builds and starts cas-server on 127.0.0.1:8080 with an embedded store in ./cas-data.
# Extra arguments go to cas-server (e.g. --listen 0.0.0.0:8080 --data-dir /srv/cas).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
cargo build --release -p cas-server
exec "$CARGO_TARGET_DIR/release/cas-server" "$@"
