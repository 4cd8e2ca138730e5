"""``shelfedge display snapshot`` / ``display test-pattern``: check a mounted screen.

Both talk to the running daemon over its control socket. ``test-pattern`` also works without
a daemon: it opens the screen itself (from the config's ``display`` section), shows the
pattern for ``--seconds`` and can write it to a PNG.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Write the running daemon's current screen to OUT.png."""
    from edge.daemon.control import ControlError, request
    from edge.ops.status import socket_path

    sock = socket_path(args)
    if sock is None:
        print("shelfedge display snapshot: give --socket or --config", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = request(sock, "snapshot_png", timeout=15.0)
    except ControlError as exc:
        print(f"shelfedge display snapshot: {exc}", file=sys.stderr)
        return EXIT_INVALID
    Path(args.out).write_bytes(base64.b64decode(result["png_base64"]))
    print(f"{args.out}: {result['bytes']} bytes")
    return EXIT_OK


def _standalone(args: argparse.Namespace) -> int:
    import os

    from edge.config import ENV_CONFIG, load_config
    from edge.display import DisplayController
    from edge.errors import ConfigError, ShelfEdgeError

    config = args.config or os.environ.get(ENV_CONFIG)
    if not config:
        print("shelfedge display test-pattern: no daemon; give --config", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    ctl = DisplayController(cfg)
    try:
        ctl.start()
        ctl.show_test_pattern(args.seconds)
        time.sleep(0.3)  # a frame or two
        if args.out:
            ctl.snapshot(Path(args.out))
            print(f"{args.out}: test pattern written")
        if os.environ.get("SDL_VIDEODRIVER") != "dummy":
            time.sleep(max(0.0, args.seconds - 0.3))
    except ShelfEdgeError as exc:
        print(f"shelfedge display test-pattern: {exc}", file=sys.stderr)
        return EXIT_INVALID
    finally:
        ctl.stop()
    return EXIT_OK


def cmd_test_pattern(args: argparse.Namespace) -> int:
    """Show the test pattern on the running daemon's screen, or open the screen directly."""
    from edge.daemon.control import ControlError, request
    from edge.ops.status import socket_path

    sock = socket_path(args) if (args.socket or args.config) else None
    if sock is not None and sock.exists():
        try:
            request(sock, "test_pattern", {"seconds": args.seconds})
            if args.out:
                time.sleep(0.3)
                result = request(sock, "snapshot_png", timeout=15.0)
                Path(args.out).write_bytes(base64.b64decode(result["png_base64"]))
                print(f"{args.out}: test pattern written")
            return EXIT_OK
        except ControlError as exc:
            if not str(exc).startswith("no daemon listening"):
                print(f"shelfedge display test-pattern: {exc}", file=sys.stderr)
                return EXIT_INVALID
    return _standalone(args)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``display snapshot`` and ``display test-pattern``."""
    display = sub.add_parser("display", help="screen tools")
    dsub = display.add_subparsers(dest="display_command", metavar="SUBCOMMAND")
    snap = dsub.add_parser("snapshot", help="write the running daemon's screen to a PNG")
    snap.add_argument("out")
    pattern = dsub.add_parser("test-pattern", help="colour bars, resolution, rotation arrow")
    pattern.add_argument("--seconds", type=float, default=30.0)
    pattern.add_argument("--out", help="also write the pattern to this PNG")
    for p, func in ((snap, cmd_snapshot), (pattern, cmd_test_pattern)):
        where = p.add_mutually_exclusive_group()
        where.add_argument("--config", help="config file (finds the socket, or opens the screen)")
        where.add_argument("--socket", help="the daemon's control socket")
        p.set_defaults(func=func)
