"""``shelfedge config diff`` and ``config apply``: change a running appliance's config safely.

``diff`` compares a file with the running config section by section and says, per changed
section, whether it applies live or needs a restart. ``apply`` validates the file, writes it
atomically over the daemon's config (keeping a ``.bak``), asks the daemon to reload over the
control socket, and restores the previous file when the daemon reports failure or does not
answer in time (exit 1). Nothing here ever sees raw data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _socket(args: argparse.Namespace) -> Path | None:
    from edge.ops.status import socket_path

    return socket_path(args)


def _load(path: str) -> dict[str, Any] | None:
    from edge.config import load_config
    from edge.errors import ConfigError

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None
    data: dict[str, Any] = cfg.model_dump(mode="json")
    data["mqtt"].pop("password", None)
    return data


def changes(new: dict[str, Any], running: dict[str, Any], live: list[str]) -> list[dict[str, str]]:
    """Changed top-level sections, each with ``applies live`` or ``needs restart``."""
    out = []
    for section in sorted(set(new) | set(running)):
        if new.get(section) != running.get(section):
            how = "applies live" if section in live else "needs restart"
            out.append({"section": section, "effect": how})
    return out


def _print(rows: list[dict[str, str]], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("section")
    table.add_column("effect")
    for row in rows:
        table.add_row(row["section"], row["effect"])
    Console().print(table if rows else "no changes")


def cmd_diff(args: argparse.Namespace) -> int:
    """Entry point of ``shelfedge config diff``."""
    from edge.daemon.control import ControlError, request

    sock = _socket(args)
    if sock is None:
        print("shelfedge config diff: give --socket or --config of the daemon", file=sys.stderr)
        return EXIT_USAGE
    new = _load(args.path)
    if new is None:
        return EXIT_INVALID
    try:
        running = request(sock, "config")
    except ControlError as exc:
        print(f"shelfedge config diff: {exc}", file=sys.stderr)
        return EXIT_INVALID
    _print(changes(new, running["config"], running["live_sections"]), args.json, args.path)
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    """Entry point of ``shelfedge config apply``."""
    from edge.daemon.control import ControlError, request

    sock = _socket(args)
    if sock is None:
        print("shelfedge config apply: give --socket or --config of the daemon", file=sys.stderr)
        return EXIT_USAGE
    if _load(args.path) is None:
        print("shelfedge config apply: invalid; nothing was changed", file=sys.stderr)
        return EXIT_INVALID
    try:
        running = request(sock, "config", timeout=args.timeout)
    except ControlError as exc:
        print(f"shelfedge config apply: {exc}; nothing was changed", file=sys.stderr)
        return EXIT_INVALID
    if not running.get("path"):
        print("shelfedge config apply: the daemon runs without a config file", file=sys.stderr)
        return EXIT_INVALID
    target = Path(running["path"])
    backup = target.with_name(target.name + ".bak")
    shutil.copy2(target, backup)
    tmp = target.with_name(target.name + ".new")
    shutil.copyfile(args.path, tmp)
    os.chmod(tmp, target.stat().st_mode & 0o777)
    os.replace(tmp, target)  # atomic: the daemon sees the old file or the new one
    try:
        result = request(sock, "reload", timeout=args.timeout)
    except ControlError as exc:
        result = {"ok": False, "error": str(exc)}
    if not result.get("ok"):
        os.replace(backup, target)
        print(
            f"shelfedge config apply: reload failed ({result.get('error')}); "
            f"{target} restored from the backup",
            file=sys.stderr,
        )
        return EXIT_INVALID
    rows = [{"section": s, "effect": "applied live"} for s in result.get("applied", [])]
    rows += [{"section": s, "effect": "needs restart"} for s in result.get("restart_needed", [])]
    _print(rows, args.json, f"applied {args.path} → {target} (backup {backup.name})")
    return EXIT_OK


def add_parsers(csub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``config diff`` and ``config apply``."""
    for name, func, help_ in (
        ("diff", cmd_diff, "compare a file with the running config, section by section"),
        (
            "apply",
            cmd_apply,
            "validate, write atomically with a backup, reload; roll back on failure",
        ),
    ):
        p = csub.add_parser(name, help=help_)
        p.add_argument("path")
        where = p.add_mutually_exclusive_group()
        where.add_argument("--config", help="the daemon's config (to find its control socket)")
        where.add_argument("--socket", help="the daemon's control socket")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the daemon")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
