#!/usr/bin/env bash
# Quick start: set up (first run only: mosquitto, virtualenv) and run the whole test suite.
# With no arguments it first runs the lint and type gate (scripts/lint.sh: ruff check, ruff
# format --check, mypy --strict; any finding fails the run) and the coupon-model parity tests
# under tflite_runtime in a venv of their own (tflite-runtime 2.14 needs Python <= 3.11 and
# NumPy < 2). Arguments are passed to pytest (e.g. -k outbox -x) and skip those extra steps.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHELFEDGE_SYSTEM_PKGS="mosquitto postgresql dbus-daemon" bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy

if [ "$#" -eq 0 ]; then
  echo "== lint and types =="
  "$ROOT/scripts/lint.sh"
  echo "== coupon model parity under tflite_runtime (own venv) =="
  PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  if "$PY" -c 'import sys; sys.exit(not ((3, 9) <= sys.version_info[:2] <= (3, 11)))'; then
    PYTHON="$PY" bash "$ROOT/scripts/test_tflite_runtime.sh"
  else
    echo "skipped: tflite-runtime 2.14 needs Python 3.9-3.11 ($PY is $("$PY" -V 2>&1))"
  fi
  echo "== main test suite =="
fi
exec "$ROOT/.venv/bin/python" -m pytest "$@"
