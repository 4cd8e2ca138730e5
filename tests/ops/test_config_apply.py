"""`shelfedge config diff|apply` against a running daemon over its control socket."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge.daemon.service import ReloadResult
from tests.helpers import DEMO_STORE

ENV = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


def _write(path: Path, state: Path, **policy: object) -> Path:
    data = yaml.safe_load(DEMO_STORE.read_text())
    data["state_dir"] = str(state)
    data["display"]["enabled"] = False
    data["policy"].update(policy)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60, env=ENV
    )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    cfg = _write(tmp_path / "shelfedge.yaml", tmp_path / "state")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    sock = tmp_path / "state" / "control.sock"
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        yield cfg, sock
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _running(sock: Path) -> dict[str, object]:
    from edge.daemon.control import request

    return request(sock, "config")


@pytest.mark.timeout(90)
def test_diff_then_apply_live_then_invalid_is_refused(
    daemon: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg, sock = daemon
    new = _write(tmp_path / "new.yaml", tmp_path / "state", cooldown_s=42)
    diff = _cli("config", "diff", str(new), "--socket", str(sock), "--json")
    assert diff.returncode == 0, diff.stderr
    assert json.loads(diff.stdout) == [{"section": "policy", "effect": "applies live"}]
    applied = _cli("config", "apply", str(new), "--socket", str(sock), "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout) == [{"section": "policy", "effect": "applied live"}]
    assert _running(sock)["config"]["policy"]["cooldown_s"] == 42  # type: ignore[index]
    assert cfg.with_name("shelfedge.yaml.bak").exists()
    before = cfg.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(new.read_text().replace("cooldown_s: 42", "cooldown_s: soon"))
    refused = _cli("config", "apply", str(bad), "--socket", str(sock))
    assert refused.returncode == 1 and "nothing was changed" in refused.stderr
    assert cfg.read_text() == before
    assert _running(sock)["config"]["policy"]["cooldown_s"] == 42  # type: ignore[index]


@pytest.mark.timeout(60)
async def test_failed_reload_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.config import load_config
    from edge.daemon.app import Application, Features
    from edge.ops.configtool import cmd_apply

    cfg_path = _write(tmp_path / "shelfedge.yaml", tmp_path / "state")
    app = Application(
        load_config(cfg_path),
        config_path=cfg_path,
        features=Features(display=False, mqtt=False, model=False, autotick=False, control=True),
    )
    await app.start()
    sock = tmp_path / "state" / "control.sock"
    try:
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.05)

        async def failing_reload(*_a: object) -> ReloadResult:  # injected daemon-side failure
            return ReloadResult(False, error="injected failure")

        monkeypatch.setattr(app.service, "reload", failing_reload)
        original = cfg_path.read_text()
        new = _write(tmp_path / "new.yaml", tmp_path / "state", cooldown_s=7)
        args = argparse.Namespace(
            path=str(new), socket=str(sock), config=None, timeout=5.0, json=True
        )
        code = await asyncio.to_thread(cmd_apply, args)
        assert code == 1
        assert cfg_path.read_text() == original  # the previous file is back
        assert app.cfg.policy.cooldown_s != 7
    finally:
        await app.stop()
