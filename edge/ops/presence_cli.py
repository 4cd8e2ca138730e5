"""``shelfedge presence eval``: replay a recorded walk against a store config and score it.

A technician's check after a calibration walk (or anyone's, on a simulator trace from
``shelfedge demo --record-trace``): does the daemon's tracker put the walker in the zone the
walker was really in? Prints accuracy, flaps per minute and the latency after a true zone
change, per zone too; ``--json`` prints one object. Only aggregates are printed — never a
token, an address or an RSSI value.

Exit codes: 0 evaluated (malformed lines are reported on stderr with their line numbers,
counted and skipped); 1 the trace cannot be read, the config is invalid, or the trace has no
usable line; 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
SHOW_PROBLEMS = 10


def _render(result: dict[str, Any], trace: str) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(v: object) -> str:
        return f"{v:.1%}" if isinstance(v, float) else "-"

    def num(v: object, unit: str = "") -> str:
        return "-" if v is None else f"{v}{unit}"

    console = Console()
    table = Table(title=f"presence replay of {trace}", show_header=False)
    rows = [
        ("lines read / malformed", f"{result['lines']} / {result['malformed_lines']}"),
        ("walks", str(result["walks"])),
        ("scored sightings", str(result["samples"])),
        ("zone accuracy (per sighting)", pct(result["accuracy"]) if result["samples"] else "-"),
        (
            "zone accuracy (per phone-second)",
            pct(result["accuracy_per_second"]) if result["samples_per_second"] else "-",
        ),
        ("sightings with truth but no estimate", str(result["no_estimate"])),
        ("flaps per minute", num(result["flaps_per_min"])),
        ("latency after a zone change, median", num(result["latency_median_s"], " s")),
        ("latency after a zone change, p90", num(result["latency_p90_s"], " s")),
        ("zone changes caught", str(result["zone_changes_caught"])),
    ]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    if result["per_zone"]:
        zones = Table(title="per true zone")
        for col in ("zone", "sightings", "accuracy", "most often taken for"):
            zones.add_column(col)
        for zone, row in result["per_zone"].items():
            zones.add_row(
                zone, str(row["samples"]), pct(row["accuracy"]), row["most_confused_with"] or "-"
            )
        console.print(zones)
    hints = []
    ing = result["ingest"]
    if ing.get("dropped_unknown_beacon"):
        hints.append(f"{ing['dropped_unknown_beacon']} sightings of beacons not in the config")
    if ing.get("dropped_unverified"):
        hints.append(f"{ing['dropped_unverified']} token frames did not verify (site day keys?)")
    if result["dropped_unknown_anchor"]:
        hints.append(
            f"{result['dropped_unknown_anchor']} sightings of anchors in no zone "
            "(list each beacon in its zone's `beacons`)"
        )
    if result["unknown_beacon_ids"]:
        hints.append("beacon samples of unknown ids: " + ", ".join(result["unknown_beacon_ids"]))
    for hint in hints:
        console.print(f"[yellow]note:[/yellow] {hint}")


def cmd_presence_eval(args: argparse.Namespace) -> int:
    """Entry point of ``shelfedge presence eval``."""
    from edge.config import ENV_CONFIG, load_config
    from edge.errors import ConfigError
    from edge.presence.replay import replay
    from edge.presence.trace import read_trace

    config = args.config or os.environ.get(ENV_CONFIG)
    if not config:
        print(f"shelfedge presence eval: give --config PATH or set {ENV_CONFIG}", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        print(f"{config}: invalid config", file=sys.stderr)
        return EXIT_INVALID
    path = Path(args.trace)
    try:
        trace = read_trace(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        print(f"{path}: cannot read the trace ({reason})", file=sys.stderr)
        return EXIT_INVALID
    for problem in trace.problems[:SHOW_PROBLEMS]:
        print(f"{path}:{problem.line}: {problem.message}", file=sys.stderr)
    if len(trace.problems) > SHOW_PROBLEMS:
        print(
            f"{path}: … and {len(trace.problems) - SHOW_PROBLEMS} more malformed lines",
            file=sys.stderr,
        )
    if not trace.lines:
        what = "is empty" if not trace.read else "has no usable line"
        print(f"{path}: the trace {what}", file=sys.stderr)
        return EXIT_INVALID
    result = replay(cfg, trace)
    if trace.problems:
        print(f"{path}: {len(trace.problems)} malformed lines skipped", file=sys.stderr)
    if not result["samples"]:
        print(f"{path}: no sighting with a ground-truth zone and an estimate", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        _render(result, str(path))
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``presence eval``."""
    p = sub.add_parser("presence", help="presence tools (replay a recorded walk)")
    psub = p.add_subparsers(dest="presence_command", metavar="SUBCOMMAND")
    ev = psub.add_parser(
        "eval",
        help="replay a trace (JSON lines) through the tracker and score it against its truth",
        description="Exit codes: 0 evaluated (malformed lines reported and skipped), "
        "1 unreadable trace, invalid config or no usable line, 2 usage error.",
    )
    ev.add_argument("trace", metavar="TRACE.jsonl", help="the trace (see docs/OPERATIONS.md)")
    ev.add_argument("--config", help="the store config (default: $SHELFEDGE_CONFIG)")
    ev.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    ev.set_defaults(func=cmd_presence_eval)
