#!/usr/bin/env bash
# Runs Sluice's whole test suite: unit, property, integration and CLI tests.
# On a fresh Debian machine it first installs what the tests need (a C compiler for the
# bundled SQLite and zstd, cargo-nextest, Python's venv module), and sets up the Python venv
# of the Kafka Connect clients tests/server_clients.rs drives the server with. Must run as
# root: the full-disk tests mount a tiny tmpfs.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -E 'test(files)'   # extra arguments go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v mount >/dev/null 2>&1 || need_apt+=(mount)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
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

# The clients of tests/server_clients.rs (scripts/server_clients.py): kafka-connect-py's `kc`
# and schemathesis, in a venv outside the repository that later runs reuse; pip runs only when
# the venv is new or a pin below changed.
PYENV=/var/tmp/sluice-pyenv
PY_PINS="kafka-connect-py==1.0.0 schemathesis==4.32.5 pyyaml==6.0.4"
if ! "$PYENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "creating the Python venv $PYENV"
  rm -rf "$PYENV"
  python3 -m venv "$PYENV"
fi
if [ "$(cat "$PYENV/.sluice-pins" 2>/dev/null)" != "$PY_PINS" ]; then
  echo "installing into $PYENV: $PY_PINS"
  # shellcheck disable=SC2086 # one word per pin
  "$PYENV/bin/python" -m pip install -q --disable-pip-version-check $PY_PINS
  echo "$PY_PINS" >"$PYENV/.sluice-pins"
fi
export SLUICE_PYTHON="$PYENV/bin/python"
export PATH="$PYENV/bin:$PATH"

# Doc tests first, so the run ends with nextest's summary of every test.
cargo test --workspace --doc -q
cargo nextest run --workspace --no-fail-fast --profile ci "$@"
