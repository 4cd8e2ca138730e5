"""``shelfedge status``: the running daemon's view of itself, over the control socket.

The socket is ``--socket PATH``; else ``{state_dir}/control.sock`` of the config named by
``--config PATH`` or ``$SHELFEDGE_CONFIG``. Output is a rich table view, or with ``--json``
the daemon's answer as indented, key-sorted JSON. Exit codes: 0 ok, 1 the daemon is
unreachable or refused (or the config is invalid), 2 usage.

The renderer tolerates missing or oddly typed keys (shown as ``-``): the status shape may
grow, and an older daemon may send less.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
SOCKET_NAME = "control.sock"
DASH = "-"
_STATE_STYLE = {
    "running": "green",
    "starting": "cyan",
    "backoff": "yellow",
    "failed": "bold red",
    "stopped": "dim",
}


def socket_path(args: argparse.Namespace) -> Path | None:
    """``--socket``, else the config's ``state_dir/control.sock``; ``None`` if neither.

    Raises ``ConfigError`` when the config cannot be loaded.
    """
    from edge.config import ENV_CONFIG, load_config

    if args.socket:
        return Path(args.socket)
    config = args.config or os.environ.get(ENV_CONFIG)
    if not config:
        return None
    return load_config(config).state_dir / SOCKET_NAME


# -- rendering --------------------------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _fmt(value: Any) -> str:
    """A scalar as short text: ``-`` for missing, yes/no, floats to 2 decimals."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value) or DASH
    return str(value)


def _unit(value: Any, unit: str) -> str:
    """``value unit``, or just ``-`` when the value is missing."""
    text = _fmt(value)
    return text if text == DASH else f"{text} {unit}"


def _duration(value: Any) -> str:
    """Seconds as ``12.3 s``, ``4m 05s``, ``2h 03m 04s`` or ``3d 04h 05m``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return DASH
    if value < 60:
        return f"{_fmt(float(value))} s"
    s = int(value)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h:02d}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    return f"{m}m {s:02d}s"


def _cell(value: Any, style: str = "") -> Text:
    """Table cell as plain ``Text`` (no markup: names come from the daemon)."""
    from rich.text import Text

    return Text(_fmt(value), style=style)


def _over_limit(holding: Mapping[str, Any]) -> bool:
    age, limit = holding.get("oldest_age_s"), holding.get("limit_s")
    if isinstance(age, bool) or isinstance(limit, bool):
        return False
    return isinstance(age, int | float) and isinstance(limit, int | float) and age > limit


def render(status: Mapping[str, Any], console: Console) -> None:
    """Print ``status`` as a header, component and raw-holding tables, privacy line."""
    from rich.table import Table
    from rich.text import Text

    status = _map(status)
    online = status.get("online")
    head = Text()
    head.append(f"ShelfEdge {_fmt(status.get('version'))}", style="bold")
    head.append(f"  site {_fmt(status.get('site'))}  device {_fmt(status.get('device'))}  ")
    if isinstance(online, bool):
        head.append("online" if online else "offline", style="green" if online else "red")
    else:
        head.append(f"online {DASH}")
    console.print(head)
    console.print(
        Text(
            f"up {_duration(status.get('uptime_s'))}  "
            f"config {_fmt(status.get('config_hash'))}  model {_fmt(status.get('model_id'))}"
        )
    )

    comps = Table(title="components", title_justify="left")
    for col in ("name", "state", "restarts", "last error", "essential", "progress age s"):
        comps.add_column(col, justify="right" if col in ("restarts", "progress age s") else "left")
    for name, comp in sorted(_map(status.get("components")).items()):
        c = _map(comp)
        state = c.get("state")
        comps.add_row(
            _cell(name),
            _cell(state, _STATE_STYLE.get(str(state), "")),
            _cell(c.get("restarts")),
            _cell(c.get("last_error")),
            _cell(c.get("essential")),
            _cell(c.get("last_progress_age_s")),
        )
    console.print(comps)

    total = status.get("raw_total")
    raw = Table(title=f"raw holdings (total {_fmt(total)} records)", title_justify="left")
    for col in ("holder", "records", "oldest age s", "limit s"):
        raw.add_column(col, justify="left" if col == "holder" else "right")
    for name, holding in sorted(_map(status.get("raw_holdings")).items()):
        h = _map(holding)
        style = "bold red" if _over_limit(h) else ""
        raw.add_row(
            _cell(name),
            _cell(h.get("records")),
            _cell(h.get("oldest_age_s"), style),
            _cell(h.get("limit_s")),
        )
    console.print(raw)

    p = _map(status.get("privacy"))
    console.print(
        Text(
            f"privacy: ε/day {_fmt(p.get('epsilon_per_day'))}  "
            f"spent today {_fmt(p.get('epsilon_spent_today'))}  "
            f"remaining {_fmt(p.get('epsilon_remaining_today'))}  k {_fmt(p.get('k'))}  "
            f"window {_unit(p.get('window_s'), 's')}  "
            f"raw retention {_unit(p.get('raw_retention_s'), 's')}"
        )
    )
    pending = status.get("pending_restart")
    if isinstance(pending, list) and pending:
        console.print(Text(f"restart needed for: {_fmt(pending)}", style="yellow"))


# -- command ----------------------------------------------------------------------------


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
        from edge.config import ENV_CONFIG

        print(
            f"shelfedge status: give --socket PATH or --config PATH (or set {ENV_CONFIG})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from rich.console import Console

    console = Console()
    while True:
        try:
            status = request(path, "status", {})
        except ControlError as exc:
            print(f"shelfedge status: {exc}", file=sys.stderr)
            return EXIT_INVALID
        if args.json:
            print(json.dumps(status, indent=2, sort_keys=True), flush=True)
        else:
            if args.watch:
                console.clear()
            render(status, console)
        if not args.watch:
            return EXIT_OK
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``status`` on the CLI's sub-parsers."""
    p = sub.add_parser("status", help="the running daemon's status (over the control socket)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument(
        "--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--config", metavar="PATH", help="config file; its state_dir holds control.sock"
    )
    where.add_argument("--socket", metavar="PATH", help="control socket path")
    p.set_defaults(func=cmd_status)
