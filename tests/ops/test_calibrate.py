"""`shelfedge calibrate --json --seconds 5` against a running demo: every beacon, no phone."""

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


@pytest.mark.timeout(120)
def test_calibrate_lists_every_beacon_and_no_phone(tmp_path: Path) -> None:
    with running_demo(tmp_path / "out", "--minutes", "10", "--speed", "2", "--no-display") as sock:
        record = tmp_path / "walk.jsonl"
        res = subprocess.run(
            [sys.executable, "-m", "edge", "calibrate", "--json", "--seconds", "5",
             "--socket", str(sock), "--record", str(record)],
            capture_output=True, text=True, timeout=60, env=ENV,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        result = json.loads(res.stdout)
        configured = {b["id"] for b in yaml.safe_load(DEMO_STORE.read_text())["store"]["beacons"]}
        assert {row["beacon"] for row in result["beacons"]} == configured
        heard = [r for r in result["beacons"] if r["status"] != "missing"]
        assert heard and all(r["per_s"] > 0 and r["distance_est_m"] > 0 for r in heard)
        assert all(n >= result["k"] for n in result["zones"].values())
        # nothing per phone: no token-like hex strings, no per-phone keys
        text = res.stdout
        assert "token" not in text and "address" not in text
        lines = record.read_text().splitlines()
        assert lines and set(json.loads(lines[0])) == {"ts", "beacon", "receiver", "rssi"}
        assert {json.loads(ln)["beacon"] for ln in lines} <= configured
