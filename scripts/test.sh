#!/usr/bin/env bash
# Runs every test: installs what the tests need, builds once in release mode
# (the same profile the server runs with), runs the workspace tests, then the
# smoke runs of the benchmarks. Long benchmarks, soak tests and fuzzing have
# their own commands (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
. scripts/env.sh
echo "== format"
cargo fmt --all -- --check
echo "== build"
cargo build --release --workspace --all-targets
echo "== tests"
cargo test --release --workspace --no-fail-fast
echo "== micro-benchmark smoke run (each criterion benchmark once)"
cargo test --release -p reprovm-benches --benches
echo "== benchmark smoke run (cas-server vs nginx)"
QUICK=1 benches/compare-nginx.sh
echo "== benchmark smoke run (snapshots vs restic)"
QUICK=1 NO_BUILD=1 benches/snapshot-vs-restic.sh
echo "== benchmark smoke run (task graph vs ninja)"
QUICK=1 NO_BUILD=1 benches/graph-vs-ninja.sh
echo "== benchmark smoke run (gRPC vs HTTP, same server)"
QUICK=1 NO_BUILD=1 benches/grpc-vs-http.sh
