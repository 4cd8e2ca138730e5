"""``shelfedge doctor``: one line per check of what the appliance needs, with a hint on failure.

Every check works without the daemon where it can (config, state dir, outbox, model, D-Bus,
broker, clock, display); the last one asks the running daemon over its control socket. Checks
never print raw data. Exit 1 when any check fails (a warning does not fail).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edge.config.models import AppConfig

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
MIN_FREE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: ``ok``, ``warn``, ``fail`` or ``skip``."""

    name: str
    status: str
    detail: str
    hint: str = ""


def _config(path: str) -> tuple[Check, AppConfig | None]:
    from edge.config import load_config
    from edge.errors import ConfigError

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        first = exc.problems[0].render(exc.path) if exc.problems else str(exc)
        return Check("config", "fail", first, "shelfedge config validate PATH lists all"), None
    secret = cfg.mqtt.password_file
    if secret is not None:
        try:
            mode = secret.stat().st_mode & 0o777
        except OSError:
            return Check("config", "fail", f"{secret} missing", "create it, mode 0600"), cfg
        if mode & 0o077:
            return Check("config", "fail", f"{secret} is {oct(mode)}", f"chmod 600 {secret}"), cfg
    return Check("config", "ok", f"{path}: site {cfg.site}, device {cfg.device}"), cfg


def _state_dir(cfg: AppConfig) -> Check:
    d = cfg.state_dir
    if not d.exists():
        return Check("state dir", "fail", f"{d} missing", "scripts/install.sh creates it")
    if not os.access(d, os.W_OK):
        return Check("state dir", "fail", f"{d} not writable", "run as the shelfedge user")
    free = shutil.disk_usage(d).free
    if free < MIN_FREE_BYTES:
        return Check("state dir", "warn", f"{free // 2**20} MiB free", "free space on the disk")
    return Check("state dir", "ok", f"{d}, {free // 2**20} MiB free")


def _outbox(cfg: AppConfig) -> Check:
    path = cfg.state_dir / "outbox.sqlite3"
    if not path.exists():
        return Check("outbox", "ok", "no outbox yet (created at first start)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            result = db.execute("PRAGMA integrity_check").fetchone()[0]
            pending = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Check("outbox", "fail", f"{path}: {exc}", "the daemon moves it aside at start")
    if result != "ok":
        return Check("outbox", "fail", f"{path}: {result}", "the daemon moves it aside at start")
    return Check("outbox", "ok", f"{path}: integrity ok, {pending} pending")


def _model(cfg: AppConfig) -> Check:
    from edge.errors import ModelError

    try:
        from edge.decide.scorer import CouponScorer

        scorer = CouponScorer.load(cfg.model.path, cfg.model.card)
    except (ModelError, ImportError) as exc:
        return Check("model", "fail", str(exc), "reinstall, or update_model from central")
    return Check("model", "ok", f"{scorer.model_id} (hash, card, shapes, canaries checked)")


def _bluez(cfg: AppConfig) -> Check:
    bus = Path("/run/dbus/system_bus_socket")
    missing = "warn" if not cfg.radio.enabled else "fail"
    if not bus.exists():
        return Check("bluez", missing, "no system D-Bus socket", "install and start dbus, bluez")
    busctl = shutil.which("busctl")
    if busctl is None:
        return Check("bluez", "warn", "D-Bus present; busctl missing, adapter not checked")
    res = subprocess.run(
        [busctl, "--system", "tree", "org.bluez"], capture_output=True, text=True, timeout=10
    )
    adapters = [ln.split("/")[-1] for ln in res.stdout.split() if ln.startswith("/org/bluez/hci")]
    if res.returncode != 0 or not adapters:
        return Check("bluez", missing, "org.bluez has no adapter", "systemctl start bluetooth")
    return Check("bluez", "ok", f"adapters: {', '.join(sorted(set(adapters)))}")


def _broker(cfg: AppConfig) -> Check:
    m = cfg.mqtt
    if not m.enabled:
        return Check("broker", "skip", "mqtt.enabled is false")
    try:
        with socket.create_connection((m.host, m.port), timeout=5) as sock:
            if m.tls is not None:
                import ssl

                ctx = ssl.create_default_context(cafile=str(m.tls.ca))
                if m.tls.cert is not None:
                    ctx.load_cert_chain(
                        str(m.tls.cert), None if m.tls.key is None else str(m.tls.key)
                    )
                with ctx.wrap_socket(sock, server_hostname=m.host):
                    pass
    except (OSError, ValueError) as exc:
        hint = "check mqtt.host/port, the network and the TLS files"
        return Check("broker", "fail", f"{m.host}:{m.port}: {type(exc).__name__}: {exc}", hint)
    tls = "TLS handshake ok" if m.tls is not None else "no TLS"
    refused = _mqtt_connect(cfg)
    if refused is not None:
        return Check("broker", "fail", f"{m.host}:{m.port}: {refused}", "check credentials/ACL")
    status = "warn" if m.insecure else "ok"
    hint = "configure mqtt.tls (docs/broker.md)" if m.insecure else ""
    return Check("broker", status, f"{m.host}:{m.port} reachable, {tls}, CONNECT accepted", hint)


def _mqtt_connect(cfg: AppConfig) -> str | None:
    """An MQTT 5 CONNECT with the device's credentials; None when accepted, else why not."""
    import threading

    from edge.bus.session import make_client

    m = cfg.mqtt
    done = threading.Event()
    outcome: list[str | None] = []
    client = make_client(cfg, f"shelfedge-doctor-{os.getpid()}")

    def on_connect(_c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        outcome.append(None if not getattr(rc, "is_failure", False) else f"CONNACK {rc}")
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(m.host, m.port, keepalive=10)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    client.loop_start()
    try:
        if not done.wait(5.0):
            return "no CONNACK within 5 s"
        return outcome[0]
    finally:
        client.disconnect()
        client.loop_stop()


def _clock() -> Check:
    tdc = shutil.which("timedatectl")
    if tdc is None:
        return Check("clock", "warn", "timedatectl missing: synchronisation unknown")
    res = subprocess.run(
        [tdc, "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True
    )
    value = res.stdout.strip()
    if res.returncode != 0 or not value:
        return Check("clock", "warn", "cannot read the NTP state", "is systemd-timesyncd running?")
    if value != "yes":
        return Check("clock", "fail", "not synchronised", "windows and retention need NTP")
    return Check("clock", "ok", "NTP synchronised")


def _display(cfg: AppConfig) -> Check:
    if not cfg.display.enabled:
        return Check("display", "skip", "display.enabled is false")
    driver = os.environ.get("SDL_VIDEODRIVER", "kmsdrm")
    if driver == "dummy":
        return Check("display", "ok", "SDL dummy driver (no panel)")
    cards = sorted(str(p) for p in Path("/dev/dri").glob("card*")) if driver == "kmsdrm" else []
    if driver == "kmsdrm" and not cards:
        return Check("display", "fail", "no /dev/dri/card*", "is the panel connected, KMS on?")
    return Check("display", "ok", f"{driver}: {', '.join(cards) or 'available'}")


def _daemon(sock: Path) -> Check:
    from edge.daemon.control import ControlError, request

    try:
        status = request(sock, "status", timeout=5.0)
    except ControlError as exc:
        return Check("daemon", "fail", str(exc), "systemctl status shelfedge")
    comps = status.get("components", {})
    failed = [n for n, c in comps.items() if c.get("state") == "failed"]
    if failed:
        return Check(
            "daemon", "fail", f"failed components: {', '.join(failed)}", "journalctl -u shelfedge"
        )
    return Check("daemon", "ok", f"up {status.get('uptime_s')} s, {len(comps)} components running")


def run_checks(config: str, sock: Path | None) -> list[Check]:
    """Every check, in order."""
    first, cfg = _config(config)
    checks = [first]
    if cfg is None:
        return checks
    steps: list[Callable[[], Check]] = [
        lambda: _state_dir(cfg),
        lambda: _outbox(cfg),
        lambda: _model(cfg),
        lambda: _bluez(cfg),
        lambda: _broker(cfg),
        _clock,
        lambda: _display(cfg),
        lambda: _daemon(sock or cfg.state_dir / "control.sock"),
    ]
    for step in steps:
        try:
            checks.append(step())
        except Exception as exc:  # a check that breaks is a finding, not a crash
            checks.append(Check(step.__name__, "fail", type(exc).__name__, "report this"))
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    """Entry point of ``shelfedge doctor``."""
    from edge.config import ENV_CONFIG

    config = args.config or os.environ.get(ENV_CONFIG)
    if not config:
        print("shelfedge doctor: give --config PATH or set SHELFEDGE_CONFIG", file=sys.stderr)
        return EXIT_USAGE
    checks = run_checks(config, Path(args.socket) if args.socket else None)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        colour = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
        table = Table(title="shelfedge doctor")
        for col in ("check", "status", "detail", "hint"):
            table.add_column(col)
        for c in checks:
            table.add_row(c.name, Text(c.status, style=colour[c.status]), Text(c.detail), c.hint)
        Console().print(table)
    return EXIT_INVALID if any(c.status == "fail" for c in checks) else EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``doctor``."""
    p = sub.add_parser("doctor", help="check everything the appliance needs")
    p.add_argument("--config", help="config file (default: $SHELFEDGE_CONFIG)")
    p.add_argument("--socket", help="control socket (default: state_dir/control.sock)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_doctor)
