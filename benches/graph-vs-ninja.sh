#!/usr/bin/env bash
# reprovm vs ninja on the same task graph (benches/src/bin/graphgen.rs: LAYERS x WIDTH tasks, each
# `touch $out` with 2 inputs from the layer before): the full build with -j2 from nothing, and the
# no-op rebuild right after. Both tools in one hyperfine run per case; the no-op pinned to one
# core (`taskset -c 0` around hyperfine and its children), the full build on both cores. Prints
# hyperfine's table, a markdown table of medians with the reprovm/ninja ratio, and reprovm's
# peak RSS (GNU time) for both cases.
#
#   benches/graph-vs-ninja.sh                   # 5 x 2,000 = 10,000 tasks; 3 full builds, 10 no-ops each
#   RUNS=5 NOOP_RUNS=20 benches/graph-vs-ninja.sh
#   QUICK=1 benches/graph-vs-ninja.sh           # 2 x 100 tasks, one run of each (the test script)
#   LAYERS=5 WIDTH=200 benches/graph-vs-ninja.sh
#
# Each tool works in its own fresh directory under /var/tmp; a full build starts from no outputs
# and no state (ninja: no .ninja_log; reprovm: no .reprovm, so a fresh embedded store too).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-/var/tmp/reprovm-target}
export CARGO_TARGET_DIR=$target
layers=${LAYERS:-5} width=${WIDTH:-2000} runs=${RUNS:-3} noop_runs=${NOOP_RUNS:-10} warmup=2
if [ -n "${QUICK:-}" ]; then layers=${LAYERS:-2} width=${WIDTH:-100} runs=1 noop_runs=1 warmup=1; fi
if [ -z "${NO_BUILD:-}" ]; then
  (cd "$here" && cargo build --release -q -p reprovm && cargo build --release -q -p reprovm-benches --bin graphgen)
fi
reprovm=${REPROVM:-$target/release/reprovm}  # REPROVM=path: another build
for tool in ninja hyperfine taskset; do
  command -v $tool >/dev/null || { echo "$tool is not installed (scripts/setup.sh --test)" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/reprovm-graphbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
n="$work/ninja" r="$work/reprovm"
"$target/release/graphgen" --layers "$layers" --width "$width" "$n" >&2
"$target/release/graphgen" --layers "$layers" --width "$width" "$r" >/dev/null
tasks=$((layers * width))
outs=$(seq -s ' ' -f 'l%g' 1 "$layers")

ninja_cmd="ninja -C $n -j2"
rvm_cmd="$reprovm -j2 --no-progress --cache-dir $r/.reprovm $r/manifest.rvm"

echo "== full build, -j2 ($tasks tasks, $runs runs)" >&2
hyperfine -N --runs "$runs" --export-json "$work/full.json" \
  --prepare "sh -c 'cd $n && rm -rf $outs .ninja_log .ninja_deps'" -n ninja "$ninja_cmd" \
  --prepare "sh -c 'cd $r && rm -rf $outs .reprovm'" -n reprovm "$rvm_cmd"

# Leave both trees built, then check that a rebuild really has nothing to do.
$ninja_cmd >/dev/null
$rvm_cmd >/dev/null
$ninja_cmd | grep -q 'no work to do' || { echo "ninja: the no-op rebuilt something" >&2; exit 1; }
summary=$($rvm_cmd | tail -1)
case $summary in
  "Summary: 0 ran, $tasks cached"*) ;;
  *) echo "reprovm: the no-op is not all cached: $summary" >&2; exit 1 ;;
esac

echo "== no-op ($tasks tasks, $noop_runs runs, one core)" >&2
taskset -c 0 hyperfine -N --warmup "$warmup" --runs "$noop_runs" --export-json "$work/noop.json" \
  -n ninja "$ninja_cmd" -n reprovm "$rvm_cmd"

rss() { # peak RSS in MiB of reprovm ARGS
  /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>&1
  echo $(($(cat "$work/rss") / 1024))
}
rss_noop=$(rss $rvm_cmd)
(cd "$r" && rm -rf $outs .reprovm)
rss_full=$(rss $rvm_cmd)

python3 - "$work/full.json" "$work/noop.json" "$tasks" "$rss_full" "$rss_noop" <<'EOF'
import json, sys
full, noop, tasks, rss_full, rss_noop = sys.argv[1:]
print(f"\n{tasks} tasks; medians; {sum(1 for _ in open('/proc/cpuinfo') if _.startswith('processor'))} cores.\n")
print("| case | ninja | reprovm | reprovm/ninja | reprovm peak RSS |")
print("|---|---:|---:|---:|---:|")
for name, path, rss in (("full build, -j2", full, rss_full), ("no-op", noop, rss_noop)):
    res = {r["command"]: r for r in json.load(open(path))["results"]}
    a, b = res["ninja"]["median"], res["reprovm"]["median"]
    fmt = (lambda s: f"{s * 1000:.1f} ms") if a < 1 else (lambda s: f"{s:.2f} s")
    print(f"| {name} | {fmt(a)} | {fmt(b)} | {b / a:.2f} | {rss} MiB |")
EOF
