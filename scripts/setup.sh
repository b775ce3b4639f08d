#!/usr/bin/env bash
# Installs what building and testing ReproVM needs on a fresh Debian machine.
# Idempotent and quick when everything is already there.
#
#   scripts/setup.sh          # build dependencies only
#   scripts/setup.sh --test   # plus what the test suite needs
set -euo pipefail
want_test=""
[ "${1:-}" = "--test" ] && want_test=yes

apt_pkgs=(libclang1-14 libclang-common-14-dev gcc g++ make curl)
if [ -n "$want_test" ]; then
  apt_pkgs+=(nginx-extras restic ninja-build hyperfine)
fi
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx from Debian starts a default site on port 80; the benchmarks run their own instance.
if [ -n "$want_test" ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now nginx >/dev/null 2>&1 || true
fi
command -v cargo >/dev/null || { echo "setup: cargo (rustup) is required" >&2; exit 1; }
