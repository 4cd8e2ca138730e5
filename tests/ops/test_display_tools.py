"""`shelfedge display test-pattern` and `display snapshot`, checked on rendered pixels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import DEMO_STORE, running_demo

ENV = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
BARS = [
    (255, 255, 255),
    (255, 255, 0),
    (0, 255, 255),
    (0, 255, 0),
    (255, 0, 255),
    (255, 0, 0),
    (0, 0, 255),
    (0, 0, 0),
]


def _cfg(tmp_path: Path, width: int = 640, height: int = 360) -> Path:
    data = yaml.safe_load(DEMO_STORE.read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["display"].update(width=width, height=height, fullscreen=False)
    path = tmp_path / "shelfedge.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _bar_colours(png: Path) -> list[tuple[int, int, int]]:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    surf = pygame.image.load(str(png))
    w, h = surf.get_size()
    # sample the middle of each of 8 equal columns, a quarter down (inside the bars)
    return [tuple(surf.get_at((w * (2 * i + 1) // 16, h // 4)))[:3] for i in range(8)]  # type: ignore[misc]


def test_test_pattern_without_a_daemon_draws_the_bars(tmp_path: Path) -> None:
    out = tmp_path / "pattern.png"
    res = subprocess.run(
        [sys.executable, "-m", "edge", "display", "test-pattern", "--config",
         str(_cfg(tmp_path)), "--seconds", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert _bar_colours(out) == BARS


@pytest.mark.timeout(120)
def test_snapshot_and_test_pattern_through_a_running_demo(tmp_path: Path) -> None:
    with running_demo(tmp_path / "out", "--minutes", "10", "--speed", "5") as sock:
        snap = tmp_path / "snap.png"
        res = subprocess.run(
            [sys.executable, "-m", "edge", "display", "snapshot", str(snap), "--socket", str(sock)],
            capture_output=True, text=True, timeout=60, env=ENV,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert _bar_colours(snap) != BARS  # the playlist, not the pattern
        pattern = tmp_path / "live-pattern.png"
        res = subprocess.run(
            [sys.executable, "-m", "edge", "display", "test-pattern", "--socket", str(sock),
             "--seconds", "5", "--out", str(pattern)],
            capture_output=True, text=True, timeout=60, env=ENV,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert _bar_colours(pattern) == BARS
