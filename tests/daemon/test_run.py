"""`shelfedge run`: SIGHUP reload keeps the running config when the new one is invalid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import DEMO_STORE


def _wait_for(proc: subprocess.Popen[str], needle: str, lines: list[str], timeout: float) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} not seen; stderr:\n{''.join(lines)}")


@pytest.mark.timeout(60)
def test_reload_keeps_old_config_on_invalid_and_applies_valid(tmp_path: Path) -> None:
    text = (
        DEMO_STORE.read_text()
        .replace("state_dir: /var/lib/shelfedge", f"state_dir: {tmp_path / 'state'}")
        .replace("display:\n  screen:", "display:\n  enabled: false\n  screen:")
    )
    cfg = tmp_path / "shelfedge.yaml"
    cfg.write_text(text)
    env = {**os.environ, "SHELFEDGE_CONFIG": str(cfg)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "-v", "run"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        _wait_for(proc, "started: site=demo-site", lines, 30)
        cfg.write_text(text.replace("cooldown_s: 180", "cooldown_s: soon"))
        proc.send_signal(signal.SIGHUP)
        _wait_for(proc, "reload rejected, keeping the running config", lines, 10)
        _wait_for(proc, "policy.cooldown_s", lines, 5)
        assert proc.poll() is None
        cfg.write_text(text.replace("cooldown_s: 180", "cooldown_s: 60"))
        proc.send_signal(signal.SIGHUP)
        _wait_for(proc, "config reloaded", lines, 10)
        from edge.daemon.control import request

        running = request(tmp_path / "state" / "control.sock", "config")
        assert running["config"]["policy"]["cooldown_s"] == 60  # the new value is in force
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "state" / "outbox.sqlite3").exists()


def test_run_without_config_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHELFEDGE_CONFIG"}
    res = subprocess.run(
        [sys.executable, "-m", "edge", "run"], capture_output=True, text=True, env=env, timeout=30
    )
    assert res.returncode == 2
    assert "SHELFEDGE_CONFIG" in res.stderr
