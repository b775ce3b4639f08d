#!/usr/bin/env bash
# Runs every cargo-fuzz target (or those named) for SECONDS each (default 60) and prints the
# executions per target. Crashes land in fuzz/artifacts/<target>/; keep each one as a regression
# input in fuzz/regressions/<target>/ (the stable twins in `cargo test` replay that folder).
#   fuzz/run.sh [SECONDS] [TARGET...]
# Needs the nightly toolchain and cargo-fuzz (scripts/setup.sh --fuzz installs cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O
status=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds+=("seeds/$t")
  [ -d "regressions/$t" ] && seeds+=("regressions/$t")
  log="target/run-$t.log"
  mkdir -p target
  echo "== $t for ${secs}s"
  if cargo +nightly fuzz run -O "$t" "corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$secs" -print_final_stats=1 -max_len=1100000 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log and artifacts/$t/)"
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  summary+=("$t: ${execs:-?} executions in ${secs}s, $result")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
