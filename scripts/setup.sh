#!/usr/bin/env bash
# Installs what building and testing ReproVM needs on a fresh Debian machine.
# Idempotent and quick when everything is already there.
#
#   scripts/setup.sh          # build dependencies only
#   scripts/setup.sh --test   # plus what the test suite needs
#   scripts/setup.sh --fuzz   # plus cargo-fuzz for fuzz/run.sh (needs the nightly toolchain)
set -euo pipefail
want_test=""
[ "${1:-}" = "--test" ] && want_test=yes
if [ "${1:-}" = "--fuzz" ]; then
  rustup toolchain list | grep -q '^nightly' || { echo "setup: fuzzing needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
  command -v cargo-fuzz >/dev/null || cargo install -q --locked cargo-fuzz
fi

apt_pkgs=(libclang1-14 libclang-common-14-dev gcc g++ make curl)
if [ -n "$want_test" ]; then
  # bazel-bootstrap: the real Bazel client of the gRPC (REAPI) cache tests.
  apt_pkgs+=(nginx-extras restic ninja-build hyperfine ccache openssl systemd bazel-bootstrap)
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
if [ -n "$want_test" ]; then
  # Real servers for the remote-tier tests: S3 (moto), WebDAV (wsgidav), Azure Blob (azurite).
  py_missing=()
  command -v moto_server >/dev/null || py_missing+=("moto[server]")
  command -v schemathesis >/dev/null || py_missing+=(schemathesis)
  command -v wsgidav >/dev/null || py_missing+=(wsgidav cheroot)
  python3 -c "import azure.storage.blob" 2>/dev/null || py_missing+=(azure-storage-blob)
  if [ ${#py_missing[@]} -gt 0 ]; then
    echo "setup: pip install ${py_missing[*]}" >&2
    python3 -m pip install -q --root-user-action=ignore "${py_missing[@]}" 2>/dev/null || python3 -m pip install -q "${py_missing[@]}"
  fi
  if ! command -v azurite-blob >/dev/null; then
    echo "setup: npm install -g azurite" >&2
    npm install -g --silent azurite >/dev/null
  fi
  hash -r
fi
command -v cargo >/dev/null || { echo "setup: cargo (rustup) is required" >&2; exit 1; }
