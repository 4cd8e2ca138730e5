"""``shelfedge status``: the running daemon's view of itself, over the control socket."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def socket_path(args: argparse.Namespace) -> Path | None:
    """``--socket``, else the config's ``state_dir/control.sock`` (``--config`` or env)."""
    from edge.config import ENV_CONFIG, load_config

    if args.socket:
        return Path(args.socket)
    config = args.config or os.environ.get(ENV_CONFIG)
    if not config:
        return None
    return load_config(config).state_dir / "control.sock"


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return "-"
        d = d.get(k, "-")
    return "-" if d is None else d


def render(status: dict[str, Any], console: Console) -> None:
    """Print the status as tables (components, raw holdings, privacy)."""
    console.print(
        f"[bold]ShelfEdge {_get(status, 'version')}[/] site {_get(status, 'site')} "
        f"device {_get(status, 'device')}  up {_get(status, 'uptime_s')} s  "
        f"config {_get(status, 'config_hash')}  model {_get(status, 'model_id')}"
    )
    comps = Table(title="components")
    for col in ("name", "state", "restarts", "last error", "essential", "progress age s"):
        comps.add_column(col)
    for name, c in sorted((status.get("components") or {}).items()):
        comps.add_row(
            name,
            str(_get(c, "state")),
            str(_get(c, "restarts")),
            str(_get(c, "last_error")),
            "yes" if c.get("essential") else "no",
            str(_get(c, "last_progress_age_s")),
        )
    console.print(comps)
    raw = Table(title=f"raw holdings (total {_get(status, 'raw_total')} records)")
    for col in ("holder", "records", "oldest age s", "limit s"):
        raw.add_column(col)
    for name, h in sorted((status.get("raw_holdings") or {}).items()):
        raw.add_row(
            name, str(_get(h, "records")), str(_get(h, "oldest_age_s")), str(_get(h, "limit_s"))
        )
    console.print(raw)
    p = status.get("privacy") or {}
    console.print(
        f"privacy: ε/day {_get(p, 'epsilon_per_day')} (worst case enforced "
        f"{_get(p, 'epsilon_worst_case_per_day')}), spent today {_get(p, 'epsilon_spent_today')},"
        f" remaining {_get(p, 'epsilon_remaining_today')}, k {_get(p, 'k')}, "
        f"window {_get(p, 'window_s')} s, raw retention {_get(p, 'raw_retention_s')} s"
    )
    pending = status.get("pending_restart") or []
    if pending:
        console.print(f"[yellow]restart needed for: {', '.join(pending)}[/]")


def cmd_status(args: argparse.Namespace) -> int:
    """Entry point of ``shelfedge status``."""
    from edge.daemon.control import ControlError, request
    from edge.errors import ConfigError

    try:
        path = socket_path(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    if path is None:
        print("shelfedge status: give --socket PATH or --config PATH", file=sys.stderr)
        return EXIT_USAGE
    try:
        status = request(path, "status")
    except ControlError as exc:
        print(f"shelfedge status: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        render(status, Console())
    return EXIT_OK


def add_parser(sub: Any) -> None:
    """Register ``status`` on the CLI's sub-parsers."""
    p = sub.add_parser("status", help="the running daemon's status (control socket)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", help="config file (socket under its state_dir)")
    where.add_argument("--socket", help="control socket path")
    p.set_defaults(func=cmd_status)
