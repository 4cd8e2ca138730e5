"""``shelfedge calibrate``: reference beacons as the running daemon hears them, for a walk.

Per beacon and receiver: sightings per second, RSSI median and IQR, the distance the path-loss
model estimates against the configured one; missing and weak beacons are flagged. Zone
occupancy is shown as counts ≥ k only — never an individual phone. ``--record FILE`` writes the
beacon-only samples as JSON lines (the presence-replay input).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"reference beacons, last {result['seconds']:.0f} s")
    for col in ("beacon", "receiver", "status", "per s", "RSSI median", "IQR", "est m", "cfg m"):
        table.add_column(col)
    colour = {"ok": "green", "weak": "yellow", "missing": "red"}
    for row in result["beacons"]:
        table.add_row(
            Text(str(row["beacon"])),
            Text(str(row.get("receiver") or "-")),
            Text(row["status"], style=colour.get(row["status"], "")),
            *(str(row.get(k, "-")) for k in ("per_s", "rssi_median", "rssi_iqr")),
            *(str(row.get(k, "-")) for k in ("distance_est_m", "distance_cfg_m")),
        )
    console = Console()
    console.print(table)
    zones = result.get("zones") or {}
    shown = ", ".join(f"{z}: {n}" for z, n in sorted(zones.items())) or "none"
    console.print(f"zones with at least k = {result.get('k')} opted-in phones: {shown}")


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Entry point of ``shelfedge calibrate``."""
    from edge.daemon.control import ControlError, request
    from edge.ops.status import socket_path

    sock = socket_path(args)
    if sock is None:
        print("shelfedge calibrate: give --socket or --config", file=sys.stderr)
        return EXIT_USAGE
    time.sleep(args.seconds)  # a fresh window of the walk
    try:
        result = request(
            sock, "calibrate", {"seconds": args.seconds, "record": bool(args.record)}, timeout=15
        )
    except ControlError as exc:
        print(f"shelfedge calibrate: {exc}", file=sys.stderr)
        return EXIT_INVALID
    samples = result.pop("samples", None)
    if args.record and samples is not None:
        with Path(args.record).open("a") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        _render(result)
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``calibrate``."""
    p = sub.add_parser("calibrate", help="live reference-beacon view for a calibration walk")
    p.add_argument("--seconds", type=float, default=10.0, help="window to measure (10)")
    p.add_argument("--record", help="append beacon-only samples to this JSON-lines file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", help="the daemon's config (to find its control socket)")
    where.add_argument("--socket", help="the daemon's control socket")
    p.set_defaults(func=cmd_calibrate)
