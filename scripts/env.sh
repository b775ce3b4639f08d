# Sourced by the scripts: one target directory outside the clone, reused across
# clones and runs on the same machine (a cold RocksDB build takes ~13 minutes).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/reprovm-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
