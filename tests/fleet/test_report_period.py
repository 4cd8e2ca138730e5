"""A ``period`` release through the fleet side: validated, stored once with its cells, and
preferred over the day release for the heatmap, which names the days it sums."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from edge.fleet.messages import parse_aggregate
from edge.fleet.store import open_store
from tests.fleet.day import Day, simulate_day
from tests.helpers import DEMO_STORE


def _period_message(day: Day) -> dict[str, Any]:
    """A contract period release over the simulated day: 7 × its footfall (k applied)."""
    assert day.day is not None
    date = day.day["day"]
    values = {z: {"visitors": 7 * n if 7 * n >= 5 else None} for z, n in day.footfall.items()}
    return {
        "release": "period",
        "id": str(uuid.uuid4()),
        "site": day.site,
        "device": day.device,
        "first_day": date,
        "last_day": date,
        "days": [date],
        "period_start": day.day["period_start"],
        "period_end": day.day["period_end"],
        "partial": True,
        "stats": {
            "footfall": {
                "epsilon": 0.7,
                "epsilon_per_day": 0.7,
                "sensitivity": 296,
                "noise_scale": 422.857143,
                "values": values,
            }
        },
        "cells": len(values),
        "cells_suppressed": sum(v["visitors"] is None for v in values.values()),
        "privacy": {
            "k": 5,
            "epsilon": 0.7,
            "epsilon_per_day": 0.7,
            "noise": "discrete_laplace",
            "tokens_per_person": 74,
            "tokens_per_person_per_day": 74,
        },
    }


def test_a_period_release_is_stored_and_drawn_in_preference_to_the_day(tmp_path: Path) -> None:
    day = simulate_day(tmp_path, close_h=12)
    period = _period_message(day)
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    store = open_store(db)
    try:
        for m in [*day.messages(), period]:
            topic = f"shelfedge/v1/{m['site']}/{m['device']}/agg"
            assert store.add_aggregate(parse_aggregate(topic, json.dumps(m).encode()))
        topic = f"shelfedge/v1/{day.site}/{day.device}/agg"
        assert not store.add_aggregate(parse_aggregate(topic, json.dumps(period).encode()))
        rows = [c for c in store.cells(day.site, None, None) if c.release == "period"]
        (agg,) = [r for r in store.aggregates(day.site, None, None) if r.release == "period"]
    finally:
        store.close()
    assert agg.epsilon == 0.7 and agg.k == 5
    assert {(c.stat, c.zone) for c in rows} == {("footfall", z) for z in day.footfall}
    assert all(c.epsilon == 0.7 for c in rows)
    out = tmp_path / "report"
    res = subprocess.run(
        [sys.executable, "-m", "edge", "fleet", "report", "--db", db, "--site", day.site,
         "--config", str(DEMO_STORE), "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "heatmap.json").read_text())
    shown = {z: m["value"] for z, m in meta["zones"].items()}
    assert shown == {z: v["visitors"] for z, v in period["stats"]["footfall"]["values"].items()}
    assert f"summed over 1 day(s), {period['days'][0]} – {period['days'][0]}" in meta["title"]
    assert meta["caption"].startswith("ε = 0.7 per person (1 release)")
