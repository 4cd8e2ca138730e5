"""`shelfedge doctor`: every check reports a status; a corrupt outbox and a dead daemon fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import DEMO_STORE, running_demo

ENV = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
NAMES = ["config", "state dir", "outbox", "model", "bluez", "broker", "clock", "display", "daemon"]


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "doctor", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )


def _config(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEMO_STORE.read_text())
    (tmp_path / "state").mkdir(exist_ok=True)
    data["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "shelfedge.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_check_has_a_status(tmp_path: Path) -> None:
    res = _doctor("--config", str(DEMO_STORE))
    checks = json.loads(res.stdout)
    assert [c["name"] for c in checks] == NAMES
    assert all(c["status"] in {"ok", "warn", "fail", "skip"} for c in checks)
    by = {c["name"]: c for c in checks}
    assert by["config"]["status"] == "ok" and by["model"]["status"] == "ok"
    assert by["daemon"]["status"] == "fail" and res.returncode == 1  # nothing is running


def test_corrupt_outbox_fails_and_is_named(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    outbox = tmp_path / "state" / "outbox.sqlite3"
    outbox.write_bytes(b"not a database at all" * 50)
    res = _doctor("--config", str(cfg))
    by = {c["name"]: c for c in json.loads(res.stdout)}
    assert res.returncode == 1
    assert by["outbox"]["status"] == "fail" and str(outbox) in by["outbox"]["detail"]


def test_invalid_config_fails_first(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO_STORE.read_text().replace("cooldown_s: 180", "cooldown_s: soon"))
    res = _doctor("--config", str(bad))
    (check,) = json.loads(res.stdout)
    assert res.returncode == 1 and check["status"] == "fail" and "cooldown_s" in check["detail"]


@pytest.mark.timeout(120)
def test_daemon_check_passes_against_a_running_demo(tmp_path: Path) -> None:
    with running_demo(tmp_path / "out", "--minutes", "10", "--speed", "5", "--no-display") as sock:
        res = _doctor("--config", str(DEMO_STORE), "--socket", str(sock))
        by = {c["name"]: c for c in json.loads(res.stdout)}
        assert by["daemon"]["status"] == "ok", by["daemon"]
