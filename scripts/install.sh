#!/usr/bin/env bash
# Install or upgrade ShelfEdge on a device (idempotent: running it twice changes nothing).
#
#   sudo scripts/install.sh --config my-store.yaml       # first install
#   sudo scripts/install.sh                              # upgrade: keeps config and state
#   sudo scripts/install.sh --uninstall [--purge]        # remove (state kept unless --purge)
#   scripts/install.sh --prefix /tmp/img --config ...    # into a tree, touching nothing else
#
# Layout: venv under /opt/shelfedge/venv, config /etc/shelfedge/shelfedge.yaml (0640, group
# shelfedge), secrets /etc/shelfedge/secrets (0600), state /var/lib/shelfedge (0700), unit
# /etc/systemd/system/shelfedge.service (enabled and started). The config is validated first:
# when `shelfedge config validate` fails, nothing is changed.
#
# Options: --prefix DIR (or DESTDIR) installs below DIR and skips users, ownership and
# systemctl; --config FILE; --wheel FILE (install that wheel instead of this checkout);
# --skip-venv (leave the venv alone: image builders that install it themselves, and tests);
# --no-start (enable but do not start); --uninstall; --purge (with --uninstall: state too).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${DESTDIR:-}"
CONFIG=""
WHEEL=""
SKIP_VENV=0
START=1
UNINSTALL=0
PURGE=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --wheel) WHEEL="$2"; shift 2 ;;
    --skip-venv) SKIP_VENV=1; shift ;;
    --no-start) START=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$PURGE" -eq 1 ] && [ "$UNINSTALL" -eq 0 ]; then
  echo "install.sh: --purge only goes with --uninstall" >&2; exit 2
fi

OPT="$PREFIX/opt/shelfedge"
ETC="$PREFIX/etc/shelfedge"
STATE="$PREFIX/var/lib/shelfedge"
UNIT_DIR="$PREFIX/etc/systemd/system"
SYSTEM=1
[ -z "$PREFIX" ] || SYSTEM=0
say() { echo "install.sh: $*" >&2; }

if [ "$UNINSTALL" -eq 1 ]; then
  if [ "$SYSTEM" -eq 1 ]; then
    systemctl disable --now shelfedge.service 2>/dev/null || true
  fi
  rm -f "$UNIT_DIR/shelfedge.service"
  rm -rf "$OPT"
  if [ "$PURGE" -eq 1 ]; then
    rm -rf "$STATE" "$ETC"
    say "removed venv, unit, config and state"
  else
    say "removed venv and unit; kept $ETC and $STATE (use --purge to remove them)"
  fi
  if [ "$SYSTEM" -eq 1 ]; then
    systemctl daemon-reload || true
    if id shelfedge >/dev/null 2>&1; then userdel shelfedge || true; fi
  fi
  exit 0
fi

# 1. Validate before changing anything.
TARGET_CONFIG="$ETC/shelfedge.yaml"
SOURCE_CONFIG="${CONFIG:-$TARGET_CONFIG}"
if [ ! -f "$SOURCE_CONFIG" ]; then
  say "no config: give --config FILE for a first install"; exit 1
fi
PY="${SHELFEDGE_PYTHON:-}"
for candidate in "$OPT/venv/bin/python" "$ROOT/.venv/bin/python"; do
  [ -n "$PY" ] && break
  [ -x "$candidate" ] && PY="$candidate"
done
PY="${PY:-python3}"
if ! PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m edge config validate "$SOURCE_CONFIG"; then
  say "config invalid: nothing was changed"; exit 1
fi

# 2. User and groups (the ones BlueZ's D-Bus policy and the DRM nodes need).
if [ "$SYSTEM" -eq 1 ]; then
  if ! id shelfedge >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /var/lib/shelfedge --shell /usr/sbin/nologin shelfedge
  fi
  for group in bluetooth video render; do
    if getent group "$group" >/dev/null; then usermod -a -G "$group" shelfedge; fi
  done
fi

# 3. Directories and files, with their modes.
install -d -m 0755 "$OPT" "$UNIT_DIR"
install -d -m 0750 "$ETC"
install -d -m 0700 "$STATE"
if [ "$SOURCE_CONFIG" != "$TARGET_CONFIG" ]; then
  if [ -f "$TARGET_CONFIG" ] && cmp -s "$SOURCE_CONFIG" "$TARGET_CONFIG"; then
    :
  else
    [ ! -f "$TARGET_CONFIG" ] || cp -p "$TARGET_CONFIG" "$TARGET_CONFIG.bak"
    install -m 0640 "$SOURCE_CONFIG" "$TARGET_CONFIG"
  fi
fi
chmod 0640 "$TARGET_CONFIG"
[ -f "$ETC/secrets" ] || install -m 0600 /dev/null "$ETC/secrets"
chmod 0600 "$ETC/secrets"
install -d -m 0755 "$OPT/docs"
for doc in "$ROOT"/docs/*.md; do install -m 0644 "$doc" "$OPT/docs/"; done
install -m 0644 "$ROOT/systemd/shelfedge.service" "$UNIT_DIR/shelfedge.service"
if [ "$SYSTEM" -eq 1 ]; then
  chown -R root:shelfedge "$ETC"
  chown -R shelfedge:shelfedge "$STATE"
fi

# 4. The venv (upgraded in place; a stamp makes a re-run with the same source a no-op).
if [ "$SKIP_VENV" -eq 0 ]; then
  SOURCE="${WHEEL:-$ROOT}"
  STAMP="$OPT/venv/.installed-from"
  WANT="$SOURCE $(cd "$ROOT" && git rev-parse HEAD 2>/dev/null || echo unknown)"
  if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    [ -x "$OPT/venv/bin/python" ] || python3 -m venv "$OPT/venv"
    "$OPT/venv/bin/python" -m pip install -q --upgrade "$SOURCE"
    echo "$WANT" > "$STAMP"
  fi
fi

# 5. The unit.
if [ "$SYSTEM" -eq 1 ]; then
  systemctl daemon-reload
  systemctl enable shelfedge.service
  if [ "$START" -eq 1 ]; then systemctl restart shelfedge.service; fi
  say "installed; check it with: shelfedge doctor --config $TARGET_CONFIG"
else
  say "installed below $PREFIX (no users, ownership or systemctl touched)"
fi
