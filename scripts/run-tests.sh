#!/usr/bin/env bash
# Quick start: set up (first run only: mosquitto, virtualenv) and run the whole test suite.
# Arguments are passed to pytest (e.g. -k outbox -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHELFEDGE_SYSTEM_PKGS="mosquitto dbus" bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy
exec "$ROOT/.venv/bin/python" -m pytest "$@"
