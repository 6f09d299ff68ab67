#!/usr/bin/env bash
# CI for the Python client (python/): a virtual environment with the package and its
# test extras, the release binaries the tests run (broker, client, chat), then ruff,
# mypy --strict and pytest against the real broker. Exits non-zero on any failure,
# including pytest collecting no test (its exit code 5).
#
# Usage: scripts/python-ci.sh        (CI=true makes a missing broker fail, not skip)
#   PYTHON=python3.12 scripts/python-ci.sh   choose the interpreter (default python3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV="$ROOT/target/py-venv"
PY=${PYTHON:-python3}

echo "== python: venv at target/py-venv ($($PY --version))"
mkdir -p "$ROOT/target"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check './python[test]'
# A venv kept from an earlier run may hold an older build of the same version.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --force-reinstall ./python

echo "== python: cargo build --release --bin broker --bin client --bin chat"
cargo build --release --bin broker --bin client --bin chat
export PUBSUB_BROKER="$ROOT/target/release/broker"

cd "$ROOT/python"
echo "== python: ruff check"
"$VENV/bin/ruff" check --no-cache .
"$VENV/bin/ruff" format --check --no-cache .
echo "== python: mypy --strict"
"$VENV/bin/mypy" --strict --no-incremental --cache-dir=/dev/null
echo "== python: pytest"
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "python-ci: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
