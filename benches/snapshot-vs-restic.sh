#!/usr/bin/env bash
# reprovm snapshots vs restic on the same generated tree, same filesystem: first snapshot,
# unchanged re-snapshot, full restore. Prints a markdown table of medians and the
# reprovm/restic time ratio (below 1 = reprovm faster), plus the stored sizes.
#
#   benches/snapshot-vs-restic.sh                 # 2.5 GiB tree, median of 3 (about 10 minutes)
#   SIZE_MIB=4096 benches/snapshot-vs-restic.sh   # another tree size
#   QUICK=1 benches/snapshot-vs-restic.sh         # 64 MiB, one run (well under a minute)
#
# Everything lives on a fresh loop-mounted ext4 when run as root (not with QUICK).
# Tree (fixed seed): 60 % in four large files (text, random, zeros, a 4 MiB segment repeated with
# a few bytes changed per copy), 30 % in medium files of 2-6 MiB alternating text and random
# runs, 10 % in small text files of 4-22 KiB over nested directories (~20,000 at 2.5 GiB), plus
# a symlink and empty dirs. Both tools write to a fresh repository in the
# same directory as the tree; page cache is warm for both (the tree is read once before).
# restic runs with RESTIC_PASSWORD set (its encryption is part of its cost) and its default
# compression; reprovm uses its embedded store (zstd level 1, which leaves random data raw).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-/var/tmp/reprovm-target}
export CARGO_TARGET_DIR=$target
runs=${RUNS:-3}
size_mib=${SIZE_MIB:-2560}
if [ -n "${QUICK:-}" ]; then runs=1; size_mib=${SIZE_MIB:-64}; fi
if [ -z "${NO_BUILD:-}" ]; then (cd "$here" && cargo build --release -q -p reprovm); fi
reprovm=$target/release/reprovm
command -v restic >/dev/null || { echo "restic is not installed (scripts/setup.sh --test)" >&2; exit 1; }
export RESTIC_PASSWORD=bench-password RESTIC_PROGRESS_FPS=0

work=$(mktemp -d /var/tmp/reprovm-snapbench.XXXXXX)
loop=""
cleanup() {
  [ -n "$loop" ] && umount "$work" 2>/dev/null || true
  rm -rf "$work" "$work.img"
}
trap cleanup EXIT
# A fresh filesystem: on an aged one (this VM's root disk, after mass deletes), creating files
# costs the kernel more than restoring them (ext4's inode allocator in `recently_deleted`).
if [ -z "${QUICK:-}" ] && [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
  truncate -s $(( (size_mib * 6 >> 10) + 8 ))G "$work.img"
  mkfs.ext4 -q -F "$work.img"
  mount -o loop "$work.img" "$work" && loop=yes
fi
src=$work/src

echo "generating a ${size_mib} MiB tree in $src" >&2
python3 - "$src" "$size_mib" <<'EOF'
import os, random, sys
root, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261130)
total = mib << 20
words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10))) for _ in range(5000)]
def text(n):  # compressible, not repetitive: random words and line breaks
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choices(words, k=12)) + "\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]
def write(path, size, kind):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    seg = rng.randbytes(4 << 20) if kind == "repeat" else None
    with open(path, "wb") as f:
        i = 0
        while size > 0:
            k = min(size, 1 << 20)
            if kind == "text":
                b = text(k)
            elif kind == "random":
                b = rng.randbytes(k)
            elif kind == "zeros":
                b = bytes(k)
            elif kind == "mixed":  # alternating text and random 64 KiB runs
                b = b"".join(text(64 << 10) if j % 2 else rng.randbytes(64 << 10) for j in range((k + 65535) >> 16))[:k]
            else:  # repeated 4 MiB segment, a few bytes changed in each copy
                off = (i << 20) % len(seg)
                b = bytearray(seg[off:off + k])
                for _ in range(4):
                    b[rng.randrange(len(b))] = rng.randrange(256)
                b = bytes(b)
            f.write(b)
            size -= k
            i += 1
# 60 %: four large files (text, random, zeros, repeated segments)
for kind in ("text", "random", "zeros", "repeat"):
    write(f"{root}/large/{kind}.bin", total * 15 // 100, kind)
# 30 %: medium mixed files of 2-6 MiB
left, i = total * 30 // 100, 0
while left > 0:
    size = min(left, rng.randint(2 << 20, 6 << 20))
    write(f"{root}/medium/m{i:03}.bin", size, "mixed")
    left -= size
    i += 1
# 10 %: small text files of 4-22 KiB over nested directories
left, i = total - total * 90 // 100, 0
while left > 0:
    size = min(left, rng.randint(4 << 10, 22 << 10))
    write(f"{root}/small/d{i % 16:02}/e{i % 7}/f{i:05}.txt", size, "text")
    left -= size
    i += 1
os.makedirs(f"{root}/empty/nested", exist_ok=True)
os.symlink("../large/random.bin", f"{root}/small/link")
EOF
files=$(find "$src" -type f | wc -l)
cat "$src"/large/*.bin >/dev/null  # warm the page cache for both tools alike

now() { date +%s.%N; }
# times[<op>_<tool>] accumulates one figure per run.
declare -A times
record() { times[$1]="${times[$1]:-} $2"; }
declare -A rss  # rss[<op>]: reprovm's largest peak RSS (KiB) over the runs
timed() { # timed KEY CMD... : runs CMD, records its seconds under KEY (and reprovm's peak RSS)
  local key=$1 t0
  shift
  t0=$(now)
  /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; echo "failed: $*" >&2; exit 1; }
  record "$key" "$(echo "$(now) - $t0" | bc)"
  local kib
  kib=$(tail -1 "$work/rss")
  [ "${rss[$key]:-0}" -ge "$kib" ] || rss[$key]=$kib
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for run in $(seq 1 "$runs"); do
  echo "run $run of $runs" >&2
  cache=$work/reprovm-$run repo=$work/restic-$run
  rm -rf "$cache" "$repo" "$work/out-r" "$work/out-s"
  restic init --repo "$repo" -q >/dev/null

  timed first_reprovm "$reprovm" snapshot create "$src" --name bench --cache-dir "$cache"
  timed first_restic restic backup --repo "$repo" -q "$src"
  timed again_reprovm "$reprovm" snapshot create "$src" --name bench --cache-dir "$cache"
  timed again_restic restic backup --repo "$repo" -q "$src"
  timed restore_reprovm "$reprovm" snapshot restore bench "$work/out-r" --cache-dir "$cache"
  timed restore_restic restic restore latest --repo "$repo" -q --target "$work/out-s"
  # Both restores must be exact.
  diff -r "$src" "$work/out-r" >/dev/null || { echo "reprovm restore differs" >&2; exit 1; }
  diff -r "$src" "$work/out-s$src" >/dev/null || { echo "restic restore differs" >&2; exit 1; }
  size_reprovm=$(du -sb "$cache/cas" | cut -f1)
  size_restic=$(du -sb "$repo" | cut -f1)
  [ "$run" = "$runs" ] || rm -rf "$cache" "$repo"
done

echo
echo "Tree: ${size_mib} MiB, $files files; median of $runs run(s); $(nproc) cores; restic $(restic version | awk '{print $2}'); fresh loop-mounted ext4: ${loop:-no}."
echo
echo "| operation | reprovm (s) | restic (s) | reprovm/restic | reprovm peak RSS |"
echo "|---|---:|---:|---:|---:|"
for op in first again restore; do
  r=$(echo "${times[${op}_reprovm]}" | median)
  s=$(echo "${times[${op}_restic]}" | median)
  ratio=$(echo "scale=2; $r / $s" | bc)
  case $op in
    first) label="first snapshot" ;;
    again) label="unchanged re-snapshot" ;;
    restore) label="full restore" ;;
  esac
  printf '| %s | %.2f | %.2f | %.2f | %d MiB |\n' "$label" "$r" "$s" "$ratio" "$((${rss[${op}_reprovm]} / 1024))"
done
echo
echo "Stored: reprovm $((size_reprovm >> 20)) MiB, restic $((size_restic >> 20)) MiB."
