#!/usr/bin/env bash
# One-time (idempotent) developer set-up: system packages the tests need, a virtualenv in
# .venv with ShelfEdge installed in editable mode. Sourced by run-demo.sh and run-tests.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SHELFEDGE_VENV:-$ROOT/.venv}"
EXTRAS="${SHELFEDGE_EXTRAS:-test,dev,fleet}"

need_apt=()
want_system_pkgs="${SHELFEDGE_SYSTEM_PKGS:-}"
for pkg in $want_system_pkgs; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "bootstrap: installing system packages: ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: Python >= 3.11 is required ($PY is $("$PY" -V 2>&1))" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating virtualenv $VENV" >&2
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian/Raspberry Pi OS ship venv's ensurepip in a separate package.
    rm -rf "$VENV"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "bootstrap: installing python3-venv" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >&2
    "$PY" -m venv "$VENV"
  fi
fi
stamp="$VENV/.shelfedge-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$(cat "$stamp")" != "$EXTRAS" ]; then
  echo "bootstrap: installing shelfedge[$EXTRAS] into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  target="$ROOT"
  [ -z "$EXTRAS" ] || target="$ROOT[$EXTRAS]"
  "$VENV/bin/python" -m pip install -q -e "$target" >&2
  echo "$EXTRAS" > "$stamp"
fi
