#!/usr/bin/env bash
# Runs Sluice's whole test suite: unit, property, integration and CLI tests.
# On a fresh Debian machine it first installs what the tests need (a C compiler for the
# bundled SQLite and zstd, cargo-nextest). Must run as root: the full-disk tests mount a
# tiny tmpfs.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -E 'test(files)'   # extra arguments go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v mount >/dev/null 2>&1 || need_apt+=(mount)
if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
if [ "$(id -u)" != 0 ]; then
  echo "error: the test suite needs root (the full-disk tests mount a tmpfs); run it with sudo" >&2
  exit 1
fi

bash scripts/test-services.sh

# Doc tests first, so the run ends with nextest's summary of every test.
cargo test --workspace --doc -q
cargo nextest run --workspace --no-fail-fast --profile ci "$@"
