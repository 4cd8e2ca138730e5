"""scripts/utility_eval.py runs on a short day and produces every column (no assertions on
error values or timings: those are measurements, in docs/PERFORMANCE.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


@pytest.mark.timeout(600)
def test_utility_eval_runs_a_short_day_and_fills_every_column(tmp_path: Path) -> None:
    out = tmp_path / "utility.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "utility_eval.py"), "--traffic", "1",
         "--open", "8", "--close", "9", "--compare", "--draws", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=580, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    columns = ("traffic", "stat", "cells", "published", "median_err", "p90_err", "epsilon")
    rows = result["utility"]
    assert {r["stat"] for r in rows} >= {"footfall", "arrivals", "dwell", "transitions"}
    for row in rows:
        assert set(columns) <= set(row)
        assert row["cells"] > 0 and 0 <= row["published"] <= 1 and row["epsilon"] > 0
    for header in columns:
        assert header in proc.stdout  # the printed table has every column
    (run,) = result["runs"]
    assert run["epsilon_spent"] <= run["epsilon_worst_case_per_day"]
    designs = {r["design"] for r in result["compare"]}
    assert len(designs) >= 5 and any("windows" in d for d in designs)
