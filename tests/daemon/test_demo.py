"""End to end: the demo runs the daemon on the simulated store and leaves sane outputs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.contract.aggregate import cells, parse

ENV = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


def _colours(png: Path) -> int:
    import pygame

    surf = pygame.image.load(str(png))
    w, h = surf.get_size()
    seen = {tuple(surf.get_at((x, y)))[:3] for x in range(0, w, 7) for y in range(0, h, 7)}
    return len(seen)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object], str]:
    out = tmp_path_factory.mktemp("demo")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge",
            "demo",
            "--minutes",
            "20",
            "--speed",
            "0",
            "--seed",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out, json.loads((out / "summary.json").read_text()), res.stdout


@pytest.mark.timeout(320)
def test_summary_numbers_are_sane(demo_run: tuple[Path, dict[str, object], str]) -> None:
    _, s, stdout = demo_run
    for key in (
        "shoppers",
        "opted_in",
        "opted_in_detected",
        "zone_accuracy",
        "offers",
        "windows_written",
        "raw_records_after_shutdown",
    ):
        assert key in s, key
    assert isinstance(s["shoppers"], int) and s["shoppers"] > 20
    assert 0 < s["opted_in"] < s["shoppers"]  # type: ignore[operator]
    assert 0 < s["opted_in_detected"] <= s["opted_in"]  # type: ignore[operator]
    # seed 3, 20 simulated minutes, correlated shadowing (the demo default) gives 0.9125
    # (deterministic on this code); ±0.02 admits platform noise in float sums, not another
    # tracker or placement: the same tracker on the demo store's earlier placement (one
    # receiver at the wall, one beacon per zone) gives 0.7927 / 0.8439 / 0.5074 and fails
    # every pin below (docs/TESTING.md)
    assert abs(s["zone_accuracy"] - 0.9125) <= 0.02  # type: ignore[operator]
    # the split a single accuracy hides (seeded values, same run; tolerances documented in
    # docs/TESTING.md): standing is easier, walking is where a tracker is tested
    assert abs(s["zone_accuracy_still"] - 0.9603) <= 0.02  # type: ignore[operator]
    assert abs(s["zone_accuracy_moving"] - 0.6694) <= 0.05  # type: ignore[operator]
    latency = s["zone_change_latency_s"]
    assert latency["changes"] > 100 and 2.0 <= latency["median"] <= 5.0  # type: ignore[index]
    assert s["coverage"] >= 0.97  # type: ignore[operator]
    assert s["first_detection_s_median"] <= 5.0  # type: ignore[operator]
    assert s["max_raw_age_running_s"] <= 32.0  # raw_retention_s + one tick + rounding
    assert s["offers"] > 0  # type: ignore[operator]
    assert s["offers_model_ranked"] > 0  # type: ignore[operator]
    assert s["windows_written"] >= 1  # the day release (partial) flushed at shutdown
    assert s["raw_records_after_shutdown"] == 0
    assert "zone accuracy" in stdout


@pytest.mark.timeout(320)
def test_frames_are_rendered_and_not_blank(demo_run: tuple[Path, dict[str, object], str]) -> None:
    out, s, _ = demo_run
    frames = sorted((out / "frames").glob("*.png"))
    assert len(frames) >= 3
    assert len(s["frames"]) == len(frames)  # type: ignore[arg-type]
    for png in frames:
        assert _colours(png) > 5, f"{png.name} looks blank"


@pytest.mark.timeout(320)
def test_outbox_holds_aggregate_windows(demo_run: tuple[Path, dict[str, object], str]) -> None:
    out, s, _ = demo_run
    # read-only: a missing outbox fails here instead of being created empty
    db = sqlite3.connect(f"file:{out / 'state' / 'outbox.sqlite3'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        table = next(n for n in names if "outbox" in n)
        rows = db.execute(f"SELECT topic, payload FROM {table}").fetchall()
    finally:
        db.close()
    assert len(rows) == s["windows_written"]
    for topic, payload in rows:
        assert topic == "agg"
        msg = parse(json.loads(payload))  # any release, through the contract
        assert msg.privacy.k == 5
        published = [c.value for c in cells(msg) if not c.suppressed]
        assert all(v is not None and v >= 5 for v in published)


@pytest.mark.timeout(60)
def test_sigterm_exits_cleanly_with_outbox_intact(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge",
            "demo",
            "--minutes",
            "60",
            "--speed",
            "60",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 40
        db_path = tmp_path / "state" / "outbox.sqlite3"
        while not db_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3.0)  # mid-run
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert elapsed < 5.0
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


@pytest.mark.timeout(120)
def test_a_normal_start_prints_no_library_noise(tmp_path: Path) -> None:
    """No TFLite banner, no SDL runtime-dir error: a technician reads any such line as a fault."""
    env = {k: v for k, v in ENV.items() if k != "XDG_RUNTIME_DIR"}
    res = subprocess.run(
        [sys.executable, "-m", "edge", "demo", "--minutes", "1", "--speed", "0", "--out",
         str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    noise = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("[")]
    assert noise == [], noise
