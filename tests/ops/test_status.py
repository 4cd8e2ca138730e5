"""``shelfedge status``: the real client against a real ControlServer, and the renderer."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from edge.config import ENV_CONFIG
from edge.daemon.control import ControlServer
from edge.errors import CommandRejected
from edge.ops.cli import main
from edge.ops.status import render
from tests.helpers import DEMO_STORE, ROOT

STATUS: dict[str, Any] = {
    "online": True,
    "version": "0.1.0",
    "site": "store-0042",
    "device": "shelf-07",
    "config_hash": "3f9a1c0de2b4",
    "model_id": "coupon-lr-31a555f0",
    "uptime_s": 3723.4,
    "components": {
        "mqtt": {
            "state": "backoff",
            "restarts": 2,
            "last_error": "ConnectionRefusedError",
            "essential": True,
            "ok": False,
            "detail": {},
        },
        "housekeeping": {
            "state": "running",
            "restarts": 0,
            "last_error": None,
            "essential": True,
            "ok": True,
            "detail": {},
        },
        "display": {"state": "failed", "restarts": 8, "last_error": "OSError", "essential": False},
    },
    "raw_holdings": {
        "presence.tracker": {"records": 3, "oldest_age_s": 4.2, "limit_s": 30.0},
        "decide.cooldowns": {"records": 11, "oldest_age_s": 12.5, "limit_s": 30.0},
    },
    "raw_total": 14,
    "privacy": {
        "epsilon_per_day": 1.0,
        "epsilon_spent_today": 0.25,
        "epsilon_remaining_today": 0.75,
        "k": 5,
        "window_s": 900,
        "raw_retention_s": 30,
    },
    "pending_restart": ["mqtt", "radio"],
    "health": {"ok": False},
}


class Daemon:
    """Answers ``status`` with STATUS, or refuses when ``refuse`` is set."""

    def __init__(self) -> None:
        self.refuse = False
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def dispatch(self, method: str, args: dict[str, Any]) -> Mapping[str, Any]:
        self.calls.append((method, args))
        if self.refuse:
            raise CommandRejected("unavailable", "status is not ready yet")
        return STATUS


@pytest.fixture
def daemon() -> Daemon:
    return Daemon()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def server(state_dir: Path, daemon: Daemon) -> AsyncIterator[ControlServer]:
    srv = ControlServer(state_dir / "control.sock", daemon.dispatch)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CONFIG, raising=False)


def _config_for(state_dir: Path, tmp_path: Path) -> Path:
    text = DEMO_STORE.read_text(encoding="utf-8")
    assert "state_dir: /var/lib/shelfedge" in text
    cfg = tmp_path / "store.yaml"
    cfg.write_text(text.replace("state_dir: /var/lib/shelfedge", f"state_dir: {state_dir}"))
    return cfg


async def _cli(*argv: str) -> int:
    """Run ``shelfedge`` in a worker thread (its client blocks; the server needs the loop)."""
    return await asyncio.to_thread(main, list(argv))


async def test_json_output_round_trips(
    server: ControlServer, daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli("status", "--json", "--socket", str(server.path)) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == STATUS
    assert out == json.dumps(STATUS, indent=2, sort_keys=True) + "\n"
    assert daemon.calls == [("status", {})]


async def test_socket_from_config_file(
    server: ControlServer, state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config_for(state_dir, tmp_path)
    assert await _cli("status", "--json", "--config", str(cfg)) == 0
    assert json.loads(capsys.readouterr().out)["site"] == "store-0042"


async def test_socket_from_env_config_and_socket_wins(
    server: ControlServer,
    state_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ENV_CONFIG, str(_config_for(state_dir, tmp_path)))
    assert await _cli("status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["device"] == "shelf-07"
    # --socket beats the environment's config.
    missing = tmp_path / "elsewhere.sock"
    assert await _cli("status", "--json", "--socket", str(missing)) == 1
    assert f"no daemon listening at {missing}" in capsys.readouterr().err


def test_no_daemon_exits_1_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state" / "control.sock"
    assert main(["status", "--socket", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        f"shelfedge status: no daemon listening at {path} (is shelfedge running?)"
    )


async def test_refusal_exits_1(
    server: ControlServer, daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.refuse = True
    assert await _cli("status", "--json", "--socket", str(server.path)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unavailable: status is not ready yet" in captured.err


def test_neither_socket_nor_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "--socket PATH or --config PATH" in err and ENV_CONFIG in err


def test_socket_and_config_together_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["status", "--socket", "a", "--config", "b"])
    assert info.value.code == 2


def test_invalid_config_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: [\n")
    assert main(["status", "--config", str(bad)]) == 1
    assert str(bad) in capsys.readouterr().err


def _rendered(status: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    render(status, Console(file=buf, width=120, color_system=None))
    return buf.getvalue()


def test_table_view_shows_components_holders_and_privacy() -> None:
    out = _rendered(STATUS)
    for word in ("store-0042", "shelf-07", "0.1.0", "3f9a1c0de2b4", "coupon-lr-31a555f0"):
        assert word in out
    assert "1h 02m 03s" in out
    for name in ("mqtt", "housekeeping", "display", "backoff", "failed", "ConnectionRefusedError"):
        assert name in out
    for holder in ("presence.tracker", "decide.cooldowns"):
        assert holder in out
    assert "total 14 records" in out
    assert "ε/day 1" in out and "spent today 0.25" in out and "remaining 0.75" in out
    assert "k 5" in out and "window 900 s" in out and "raw retention 30 s" in out
    assert "restart needed for: mqtt, radio" in out


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"components": None, "raw_holdings": [], "privacy": "x", "pending_restart": "mqtt"},
        {"components": {"mqtt": None, "odd": {"state": 5}}, "raw_holdings": {"h": {}}},
        {"uptime_s": "soon", "online": None, "raw_holdings": {"h": {"oldest_age_s": True}}},
    ],
)
def test_table_view_tolerates_missing_and_odd_keys(status: dict[str, Any]) -> None:
    out = _rendered(status)
    assert "ShelfEdge -" in out and "components" in out and "raw holdings" in out


def test_table_view_does_not_interpret_markup() -> None:
    out = _rendered({"site": "[bold]x[/bold]", "components": {"[red]c[/red]": {}}})
    assert "[bold]x[/bold]" in out and "[red]c[/red]" in out


async def test_installed_command_prints_the_table(server: ControlServer) -> None:
    env = {**os.environ, "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    env.pop(ENV_CONFIG, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge",
        "status",
        "--socket",
        str(server.path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    for name in ("presence.tracker", "decide.cooldowns", "mqtt", "housekeeping", "display"):
        assert name in text
    assert max(len(line) for line in text.splitlines()) <= 120
