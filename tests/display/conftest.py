"""Fixtures for the display tests: dummy SDL video, small configs, a settable clock.

SDL's driver is chosen when pygame's display initialises, so it is forced to ``dummy`` here,
before any test imports pygame. ``run_display`` starts a controller and stops it after the
test; ``shoot`` snapshots the current frame and returns it as an (height, width, 3) array.
"""

from __future__ import annotations

import datetime as dt
import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pygame
import pytest

from edge.config.models import AppConfig
from edge.display import DisplayController

TZ = "Europe/Berlin"
# Monday 23 November 2026, 10:00 in Berlin.
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo(TZ)).timestamp()

Image = npt.NDArray[np.uint8]


class FakeClock:
    """A wall clock the test sets; the render thread reads it every frame."""

    def __init__(self, t: float = MONDAY_10) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def campaign(cid: str = "coffee", **kw: Any) -> dict[str, Any]:
    """A campaign as config data."""
    data: dict[str, Any] = {
        "id": cid,
        "category": "coffee",
        "zone": "coffee",
        "headline": "2 for 1 on single-origin beans",
        "body": "Freshly roasted in Leipzig.",
        "url": f"https://coupons.example.com/c/{cid}",
        "colour": "#6b3e26",
    }
    data.update(kw)
    return data


def make_cfg(
    width: int = 640,
    height: int = 360,
    rotation: int = 0,
    *,
    campaigns: list[dict[str, Any]] | None = None,
    **display: Any,
) -> AppConfig:
    """A small valid config: one zone, the given campaigns, a small fast display."""
    disp: dict[str, Any] = {
        "width": width,
        "height": height,
        "rotation": rotation,
        "fps": 60,
        "slide_s": 1000,
        "offer_cue_s": 1000,
        "fullscreen": False,
    }
    disp.update(display)
    return AppConfig.model_validate(
        {
            "site": "test-site",
            "device": "test-device",
            "timezone": TZ,
            "store": {
                "name": "Test Market",
                "size": [10, 10],
                "zones": [{"id": "coffee", "name": "Coffee", "rect": [0, 0, 5, 5]}],
            },
            "campaigns": [campaign()] if campaigns is None else campaigns,
            "display": disp,
        }
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def run_display() -> Iterator[Callable[..., DisplayController]]:
    started: list[DisplayController] = []

    def _run(cfg: AppConfig, clock: Callable[[], float] | None = None) -> DisplayController:
        ctl = DisplayController(cfg, clock=clock or FakeClock(), windowed=None)
        started.append(ctl)
        ctl.start()
        return ctl

    yield _run
    for ctl in started:
        ctl.stop()


def load_png(path: Path) -> Image:
    """A PNG as an (height, width, 3) uint8 array."""
    surf = pygame.image.load(str(path))
    return np.ascontiguousarray(pygame.surfarray.array3d(surf).transpose(1, 0, 2))


@pytest.fixture
def shoot(tmp_path: Path) -> Callable[..., Image]:
    counter = [0]

    def _shoot(ctl: DisplayController, *, raw: bool = False) -> Image:
        counter[0] += 1
        path = ctl.snapshot(tmp_path / f"frame-{counter[0]}.png", raw=raw)
        return load_png(path)

    return _shoot


@pytest.fixture
def fonts() -> Iterator[None]:
    """pygame's font module in the test thread (for the text and scene unit tests)."""
    pygame.font.init()
    yield
    pygame.font.quit()
