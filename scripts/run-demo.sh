#!/usr/bin/env bash
# Quick start: set up (first run only) and run the daemon on the simulated store.
# Arguments are passed to `shelfedge demo` (e.g. --minutes 30 --speed 120 --seed 7).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHELFEDGE_SYSTEM_PKGS="" bash "$ROOT/scripts/bootstrap.sh"
exec "$ROOT/.venv/bin/shelfedge" demo "$@"
