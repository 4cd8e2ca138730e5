"""``shelfedge fleet keygen`` / ``send`` / ``listen`` / ``report``: the reference central side.

On the command line; ``listen`` and ``report`` register their own options.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _cmd_keygen(args: argparse.Namespace) -> int:
    from . import keys

    path = Path(args.out)
    try:
        key = keys.generate(path)
    except FileExistsError:
        print(f"shelfedge fleet keygen: {path} exists; not overwriting a key", file=sys.stderr)
        return EXIT_INVALID
    print(f"private key: {path} (mode 0600; keep it on the central server only)")
    print("add to the device config:")
    print("commands:\n  trusted_keys:")
    print(f'    {args.kid}: "{keys.public_b64(key)}"')
    return EXIT_OK


def _load_args(args: argparse.Namespace) -> dict[str, Any] | None:
    text = Path(args.args_file).read_text() if args.args_file else (args.args or "{}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        print(f"shelfedge fleet send: --args is not JSON: {exc}", file=sys.stderr)
        return None
    if not isinstance(data, dict):
        print("shelfedge fleet send: --args must be a JSON object", file=sys.stderr)
        return None
    return data


def _cmd_send(args: argparse.Namespace) -> int:
    from . import keys
    from .send import Target, send

    if bool(args.device) == bool(args.all):
        print("shelfedge fleet send: give --device D or --all", file=sys.stderr)
        return EXIT_USAGE
    cmd_args = _load_args(args)
    if cmd_args is None:
        return EXIT_USAGE
    try:
        key = keys.load(Path(args.key))
    except (OSError, ValueError) as exc:
        print(f"shelfedge fleet send: cannot load key {args.key}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    target = Target(args.host, args.port, args.site, None if args.all else args.device)
    batches = [cmd_args]
    if args.model:
        from .model_upload import model_update_args

        if args.name != "update_model" or not args.card or "version" not in cmd_args:
            print(
                "shelfedge fleet send: --model needs update_model, --card and "
                "--args '{\"version\": N}'",
                file=sys.stderr,
            )
            return EXIT_USAGE
        card = json.loads(Path(args.card).read_text())
        batches = model_update_args(
            Path(args.model).read_bytes(),
            card,
            int(cmd_args["version"]),
            chunk_bytes=args.chunk_bytes,
        )
    try:
        for batch in batches:  # chunks go one at a time: each waits for its ack
            env, acks = send(
                target, key, args.kid, args.name, batch, timeout_s=args.timeout, expect=args.expect
            )
            if not acks or any(a.get("status") != "ok" for a in acks):
                break
    except OSError as exc:
        print(f"shelfedge fleet send: broker {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps({"command": env["id"], "acks": acks}, indent=2, sort_keys=True))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{args.name} {env['id']} → {target.device or 'all'}")
        for col in ("status", "code", "message", "result"):
            table.add_column(col)
        for ack in acks:
            result = json.dumps(ack.get("result"), sort_keys=True)
            table.add_row(
                str(ack.get("status")),
                str(ack.get("code")),
                str(ack.get("message") or ""),
                result if len(result) < 200 else result[:197] + "…",
            )
        Console().print(table)
    if not acks:
        print(f"shelfedge fleet send: no ack within {args.timeout:.0f} s", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK if all(a.get("status") == "ok" for a in acks) else EXIT_INVALID


def add_parser(sub: Any) -> None:
    """Register ``fleet`` and its sub-commands."""
    fleet = sub.add_parser("fleet", help="reference central side: commands and aggregates")
    fsub = fleet.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND")
    keygen = fsub.add_parser("keygen", help="write an Ed25519 key pair for signing commands")
    keygen.add_argument("--out", default="central-ed25519.pem", help="private key file")
    keygen.add_argument("--kid", default="central-1", help="key id for the device config")
    keygen.set_defaults(func=_cmd_keygen)
    send = fsub.add_parser("send", help="sign and send a command, print the acks")
    send.add_argument("name", help="command name, e.g. status, set_keys, forget")
    send.add_argument("--site", required=True)
    where = send.add_mutually_exclusive_group()
    where.add_argument("--device", help="one device id")
    where.add_argument("--all", action="store_true", help="every device of the site")
    send.add_argument("--args", help="command args as a JSON object")
    send.add_argument("--args-file", help="command args from a JSON file")
    send.add_argument("--key", default="central-ed25519.pem", help="private key file")
    send.add_argument("--kid", default="central-1", help="key id the devices trust")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=1883)
    send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for acks")
    send.add_argument("--expect", type=int, help="with --all: acks to wait for")
    send.add_argument("--json", action="store_true", help="machine-readable output")
    send.add_argument("--model", help="update_model: the .tflite file to upload (chunked)")
    send.add_argument("--card", help="update_model: the model's card (JSON)")
    send.add_argument("--chunk-bytes", type=int, default=24 * 1024, help="update_model chunk size")
    send.set_defaults(func=_cmd_send)
    from .listen import add_listen_parser
    from .report import add_report_parser

    add_listen_parser(fsub)
    add_report_parser(fsub)
