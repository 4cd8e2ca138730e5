#!/usr/bin/env bash
# Lint and type gate, run by ./scripts/run-tests.sh (and so by CI) before the tests:
#   ruff check, ruff format --check, mypy --strict on edge/ and the training code.
# Any finding fails it (exit 1). Extra paths given as arguments are checked as well (the
# lint-gate test uses this to prove a deliberate type error fails the gate).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SHELFEDGE_VENV:-$ROOT/.venv}"
status=0
echo "== ruff check ==" >&2
"$VENV/bin/ruff" check . "$@" || status=1
echo "== ruff format --check ==" >&2
"$VENV/bin/ruff" format --check . "$@" || status=1
echo "== mypy --strict ==" >&2
"$VENV/bin/mypy" --strict --explicit-package-bases edge scripts/training "$@" || status=1
if [ "$status" -ne 0 ]; then
  echo "lint: FAILED (fix the findings above)" >&2
fi
exit "$status"
