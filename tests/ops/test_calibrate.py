"""`shelfedge calibrate --json --seconds 5` against a running demo: every beacon, no phone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import DEMO_STORE

ENV = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


@pytest.mark.timeout(120)
def test_calibrate_lists_every_beacon_and_no_phone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sock = out / "state" / "control.sock"
    demo = subprocess.Popen(
        [sys.executable, "-m", "edge", "demo", "--minutes", "10", "--speed", "2",
         "--no-display", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
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
    finally:
        demo.terminate()
        demo.wait(timeout=30)
