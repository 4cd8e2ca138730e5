"""`shelfedge fleet report` from a database filled by a simulated day."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.fleet.messages import parse_aggregate
from edge.fleet.store import open_store
from tests.fleet.day import Day, simulate_day
from tests.helpers import DEMO_STORE


def _fill(db: str, day: Day) -> None:
    store = open_store(db)
    try:
        for m in day.messages():
            topic = f"shelfedge/v1/{m['site']}/{m['device']}/agg"
            assert store.add_aggregate(parse_aggregate(topic, json.dumps(m).encode()))
    finally:
        store.close()


def _report(db: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "fleet", "report", "--db", db, "--site", "demo-site",
         "--config", str(DEMO_STORE), "--out", str(out), *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _colour_value(rgb: np.ndarray, colormap: str, vmin: float, vmax: float) -> float:
    """Invert the colormap: the value whose colour is nearest to the pixel."""
    from matplotlib import colormaps

    lut = colormaps[colormap](np.linspace(0, 1, 1024))[:, :3] * 255
    idx = int(np.argmin(((lut - rgb[:3]) ** 2).sum(axis=1)))
    return vmin + (vmax - vmin) * idx / 1023


@pytest.mark.timeout(180)
def test_report_from_a_simulated_day(db_url: str, tmp_path: Path) -> None:
    day = simulate_day(tmp_path)
    _fill(db_url, day)
    out = tmp_path / "report"
    res = _report(db_url, out, "--from", "2027-01-15", "--to", "2027-01-16")
    assert res.returncode == 0, res.stderr
    files = ("heatmap.png", "dwell.png", "hours.png", "footfall.csv", "dwell.csv", "hours.csv",
             "cells.csv", "releases.csv", "index.html", "heatmap.json")  # fmt: skip
    for name in files:
        assert (out / name).stat().st_size > 0, name
    for png in ("heatmap.png", "dwell.png", "hours.png"):
        pixels = np.asarray(Image.open(out / png).convert("L"), dtype=float)
        assert pixels.var() > 100.0, f"{png} looks blank"
    index = (out / "index.html").read_text()
    for png in ("heatmap.png", "dwell.png", "hours.png"):
        assert f'src="{png}"' in index
    assert index.count("<area ") == 11

    meta = json.loads((out / "heatmap.json").read_text())
    assert re.fullmatch(r"ε = [\d.]+ per person \(\d+ releases?\), k = 5, suppressed \d+% of cells",
                        meta["caption"])  # fmt: skip
    image = np.asarray(Image.open(out / "heatmap.png").convert("RGB"))
    shown: dict[str, float] = {}
    published: dict[str, tuple[int, float]] = {}
    for zone, z in meta["zones"].items():
        if z["value"] is None:
            continue
        x, y = z["sample"]
        shown[zone] = _colour_value(image[y, x].astype(float), meta["colormap"],
                                    meta["vmin"], meta["vmax"])  # fmt: skip
        published[zone] = (z["value"], z["sd"])
    compared = 0
    for a, b in itertools.combinations(published, 2):
        (va, sa), (vb, sb) = published[a], published[b]
        if abs(va - vb) <= 3 * math.hypot(sa, sb):
            continue  # within the noise: their order says nothing
        compared += 1
        truth = day.footfall[a] > day.footfall[b]
        assert (shown[a] > shown[b]) == truth, (a, b, shown[a], shown[b], day.footfall)
    assert compared >= 15  # the check is not vacuous


def test_report_on_windows_only_and_clear_errors(tmp_path: Path) -> None:
    day = simulate_day(tmp_path, close_h=12)
    day.day = None  # only the 15-minute windows the device publishes today
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    _fill(db, day)
    res = _report(db, tmp_path / "out")
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "out" / "heatmap.json").read_text())
    assert "releases), k = 5" in meta["caption"]
    empty = _report(db, tmp_path / "none", "--from", "2030-01-01")
    assert empty.returncode == 1 and "no aggregates" in empty.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "edge", "fleet", "report", "--db", db, "--site", "demo-site",
         "--config", str(tmp_path / "missing.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1 and "missing.yaml" in bad.stderr and "Traceback" not in bad.stderr
    when = _report(db, tmp_path / "x", "--from", "yesterday")
    assert when.returncode == 1 and "--from" in when.stderr
