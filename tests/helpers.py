"""Shared test helpers (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from edge.config import AppConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO_STORE = ROOT / "firmware_configs" / "stores" / "demo-store.yaml"


def demo_config(**updates: object) -> AppConfig:
    """The demo store config, with top-level fields replaced."""
    cfg = load_config(DEMO_STORE)
    return cfg.model_copy(update=updates) if updates else cfg


@contextlib.contextmanager
def running_demo(out: Path, *args: str, wait_s: float = 60.0) -> Iterator[Path]:
    """Run `shelfedge demo --out OUT ARGS…` in the background; yield its control socket."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    sock = out / "state" / "control.sock"
    demo = subprocess.Popen(
        [sys.executable, "-m", "edge", "demo", "--out", str(out), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + wait_s
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        yield sock
    finally:
        demo.terminate()
        demo.wait(timeout=30)
