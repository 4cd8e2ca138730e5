"""The ``shelfedge`` command line (BRIEF §10 names; exit codes 0 ok, 1 invalid, 2 usage)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from edge import __version__

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
EXIT_RESTART = 75  # the `restart` command: systemd's Restart=on-failure starts the daemon again
T = TypeVar("T")


def _cmd_config_validate(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.errors import ConfigError

    try:
        cfg = load_config(args.path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        n = len(exc.problems)
        print(f"{args.path}: invalid ({n} problem{'s' if n != 1 else ''})", file=sys.stderr)
        return EXIT_INVALID
    print(
        f"{args.path}: ok (site {cfg.site}, device {cfg.device}, {len(cfg.store.zones)} zones, "
        f"{len(cfg.store.beacons)} beacons, {len(cfg.campaigns)} campaigns)"
    )
    return EXIT_OK


def _cmd_config_schema(args: argparse.Namespace) -> int:
    from edge.config import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from edge.daemon.demo import DemoOptions, run_demo
    from edge.errors import ConfigError

    if args.minutes <= 0 or args.speed < 0:
        print("shelfedge demo: --minutes must be > 0 and --speed >= 0", file=sys.stderr)
        return EXIT_USAGE
    if args.record_trace:
        try:
            Path(args.record_trace).open("w").close()
        except OSError as exc:
            print(f"{args.record_trace}: cannot write the trace ({exc.strerror})", file=sys.stderr)
            return EXIT_INVALID
    opts = DemoOptions(
        minutes=args.minutes,
        speed=args.speed,
        seed=args.seed,
        out=Path(args.out),
        config=Path(args.config) if args.config else None,
        display=not args.no_display,
        record_trace=Path(args.record_trace) if args.record_trace else None,
    )
    try:
        summary = _run_with_signals(run_demo(opts))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    if summary is None:
        print("demo interrupted; outbox closed cleanly", file=sys.stderr)
        return EXIT_OK
    _print_summary(summary, opts.out)
    return EXIT_OK


def _run_with_signals(coro: Coroutine[Any, Any, T]) -> T | None:
    """Run a coroutine; SIGTERM/SIGINT cancel it so its ``finally`` shuts down cleanly."""

    async def main() -> T | None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return None

    return asyncio.run(main())


def _print_summary(summary: dict[str, object], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ShelfEdge demo summary", show_header=False)
    keys = [
        ("shoppers", "shoppers simulated"),
        ("opted_in", "opted-in shoppers"),
        ("opted_in_detected", "opted-in shoppers detected"),
        ("zone_accuracy", "zone accuracy vs ground truth"),
        ("zone_accuracy_still", "  … while standing"),
        ("zone_accuracy_moving", "  … while walking"),
        ("coverage", "opted-in shopper-seconds with an estimate"),
        ("offers", "offers made"),
        ("offers_model_ranked", "offers ranked by the model"),
        ("windows_written", "aggregate windows written"),
        ("cells_suppressed", "aggregate cells suppressed (< k)"),
        ("raw_records_after_shutdown", "raw records in memory after shutdown"),
        ("max_raw_age_running_s", "oldest raw record seen while running (s)"),
        ("wall_seconds", "wall-clock seconds"),
    ]
    for key, label in keys:
        value = summary.get(key)
        if key.startswith(("zone_accuracy", "coverage")) and isinstance(value, float):
            value = f"{value:.1%}"
        table.add_row(label, str(value))
    table.add_row("frames", f"{len(summary.get('frames', []))} PNG in {out / 'frames'}")  # type: ignore[arg-type]
    table.add_row("summary", str(out / "summary.json"))
    Console(stderr=False).print(table)


def _cmd_run(args: argparse.Namespace) -> int:
    from edge.config import ENV_CONFIG, load_config
    from edge.daemon.app import Application
    from edge.errors import ConfigError

    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        print(f"shelfedge run: give --config PATH or set {ENV_CONFIG}", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    app = Application(cfg, config_path=Path(path))

    async def main() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload.set)
        await app.run_forever(stop, reload)

    asyncio.run(main())
    if app.restart_requested:  # non-zero on purpose: Restart=on-failure starts us again
        return EXIT_RESTART
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="shelfedge", description="ShelfEdge retail shelf appliance"
    )
    parser.add_argument("--version", action="version", version=f"shelfedge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (what the systemd unit starts)")
    run.add_argument("--config", help="config file (default: $SHELFEDGE_CONFIG)")
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="run the daemon on the simulated store")
    demo.add_argument("--minutes", type=float, default=60.0, help="simulated minutes (60)")
    demo.add_argument(
        "--speed", type=float, default=60.0, help="times real time (60); 0 = as fast as possible"
    )
    demo.add_argument("--seed", type=int, default=0, help="simulation seed (0)")
    demo.add_argument("--out", default="demo-out", help="folder for frames and results")
    demo.add_argument("--config", help="store config (default: the built-in demo store)")
    demo.add_argument("--no-display", action="store_true", help="do not render frames")
    demo.add_argument(
        "--record-trace", metavar="FILE", help="write the simulator's trace with ground truth"
    )
    demo.set_defaults(func=_cmd_demo)

    from edge.ops.status import add_parser as add_status

    add_status(sub)
    from edge.fleet.cli import add_parser as add_fleet
    from edge.ops.doctor import add_parser as add_doctor

    add_doctor(sub)
    from edge.ops.display import add_parser as add_display

    add_display(sub)
    from edge.ops.calibrate import add_parser as add_calibrate

    add_calibrate(sub)
    from edge.radio.decode_cli import add_parser as add_frames

    add_frames(sub)
    from edge.ops.presence_cli import add_parser as add_presence

    add_presence(sub)

    add_fleet(sub)

    config = sub.add_parser("config", help="technician config tools")
    csub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    validate = csub.add_parser("validate", help="check a config file (exit 0 ok, 1 invalid)")
    validate.add_argument("path")
    validate.set_defaults(func=_cmd_config_validate)
    from edge.ops.configtool import add_parsers as add_config_tools

    add_config_tools(csub)
    schema = csub.add_parser("schema", help="print the config JSON Schema")
    schema.set_defaults(func=_cmd_config_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``shelfedge`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The daemon logs its start/stop/reload lines at INFO (the journal keeps them).
    base = logging.INFO if getattr(args, "command", None) == "run" else logging.WARNING
    logging.basicConfig(
        level=max(logging.DEBUG, base - 10 * min(args.verbose, 2)),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    result: int = func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
