"""``shelfedge demo``: the daemon on the simulated store, with evaluation and a summary.

The simulator drives a ``SimClock``; its advertisements and app reports go through the same
``Application`` entry points as the BLE scanner and the MQTT bus. Ground truth is used only
here, to score zone accuracy; nothing of it reaches the daemon.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from edge.config import AppConfig, load_config
from edge.events import Advertisement

from .app import Application, Features
from .clock import SimClock

_LOGGER = logging.getLogger(__name__)
DEMO_CONFIG = Path(__file__).with_name("demo-store.yaml")
STEP_S = 1.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``shelfedge demo`` was asked to do."""

    minutes: float = 60.0
    speed: float = 60.0  # simulated seconds per wall second; 0 = as fast as possible
    seed: int = 0
    out: Path = Path("demo-out")
    config: Path | None = None
    snapshot_every_min: float = 5.0
    display: bool = True


def demo_config(opts: DemoOptions) -> AppConfig:
    """The demo store config with state under the output folder and no broker."""
    cfg = load_config(opts.config or DEMO_CONFIG)
    mqtt = cfg.mqtt.model_copy(update={"enabled": False})
    radio = cfg.radio.model_copy(update={"enabled": False})
    return cfg.model_copy(update={"state_dir": opts.out / "state", "mqtt": mqtt, "radio": radio})


class _Progress:
    """A live one-line progress display (a fresh line every few minutes when not a TTY)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last_line_min = -1.0

    def update(self, sim_min: float, total_min: float, fields: dict[str, Any]) -> None:
        text = f"[{sim_min:5.1f}/{total_min:.0f} min] " + "  ".join(
            f"{k} {v}" for k, v in fields.items()
        )
        if self._tty:
            self._stream.write("\r\x1b[2K" + text)
            self._stream.flush()
        elif sim_min - self._last_line_min >= 5.0 or sim_min >= total_min:
            self._last_line_min = sim_min
            self._stream.write(text + "\n")
            self._stream.flush()

    def done(self) -> None:
        if self._tty:
            self._stream.write("\n")


async def run_demo(opts: DemoOptions, stream: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the simulated store through the daemon; return (and write) the summary."""
    from edge.sim import AppReport, StoreSimulator

    cfg = demo_config(opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    frames_dir = opts.out / "frames"
    frames_dir.mkdir(exist_ok=True)
    sim = StoreSimulator(cfg, seed=opts.seed)
    clock = SimClock(sim.start_ts)
    app = Application(
        cfg,
        clock=clock,
        features=Features(display=opts.display, mqtt=False, model=True, autotick=False),
        holdout_salt=random.Random(opts.seed).randbytes,
    )
    # The demo plays the central server too: it installs the site day keys (set_keys).
    app.set_keys(sim.day_keys(), version=1)
    await app.start()
    wall_start = time.monotonic()
    end = sim.start_ts + opts.minutes * 60.0
    progress = _Progress(stream)
    correct = total = 0
    detected: set[int] = set()
    frames: list[str] = []
    next_snapshot = sim.start_ts
    first_cue_snapshot = False
    t = sim.start_ts
    try:
        while t < end:
            t = min(t + STEP_S, end)
            for item in sim.advance(t):
                clock.set(item.ts)
                if isinstance(item, Advertisement):
                    app.on_advertisement(item)
                elif isinstance(item, AppReport):
                    app.on_app_payload(item.payload)
            clock.set(t)
            app.tick(t)
            await app.flush_windows()
            for token in app.tracker.live_tokens():
                est = app.tracker.zone_of(token)
                shopper = sim.shopper_of(token)
                if shopper is not None:
                    detected.add(shopper)
                truth = sim.true_zone(token, t)
                if est is not None and truth is not None:
                    total += 1
                    correct += int(est == truth)
            await app.drain()  # the simulator must not outrun the decision stage
            if app.display is not None and (
                t >= next_snapshot or (not first_cue_snapshot and app.offers_made > 0)
            ):
                if t >= next_snapshot:
                    next_snapshot += opts.snapshot_every_min * 60.0
                else:
                    first_cue_snapshot = True
                    await asyncio.sleep(0.3)  # let the renderer show the cue
                name = f"frame-{len(frames):03d}-{app.engine.local_time(t):%H%M%S}.png"
                path = await asyncio.to_thread(app.display.snapshot, frames_dir / name)
                frames.append(str(path))
            sim_min = (t - sim.start_ts) / 60.0
            progress.update(
                sim_min,
                opts.minutes,
                {
                    "shoppers": sim.stats.shoppers,
                    "in-store": sim.live_shoppers(),
                    "phones": app.raw_holdings().tokens,
                    "offers": app.offers_made,
                    "windows": app.windows_written,
                    "zone-acc": f"{correct / total:.1%}" if total else "-",
                },
            )
            if opts.speed > 0:
                target = wall_start + (t - sim.start_ts) / opts.speed
                delay = target - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
    finally:
        if app.display is not None:
            name = f"frame-{len(frames):03d}-final.png"
            try:
                frames.append(str(await asyncio.to_thread(app.display.snapshot, frames_dir / name)))
            except Exception as exc:  # a failed snapshot must not lose the summary
                _LOGGER.error("final snapshot failed: %s", exc)
        await app.stop()
        progress.done()
    raw = app.raw_holdings()
    stats = sim.stats
    summary: dict[str, Any] = {
        "shoppers": stats.shoppers,
        "opted_in": stats.opted_in,
        "opted_in_detected": len(detected),
        "zone_accuracy": round(correct / total, 4) if total else 0.0,
        "zone_samples": total,
        "offers": app.offers_made,
        "offers_model_ranked": app.offers_model_ranked,
        "windows_written": app.windows_written,
        "raw_records_after_shutdown": raw.total,
        "simulated_minutes": opts.minutes,
        "wall_seconds": round(time.monotonic() - wall_start, 2),
        "seed": opts.seed,
        "model_id": app.model_id,
        "decision_reasons": dict(app.engine.reasons),
        "ingest": app.ingest.counters.as_dict(),
        "cells_suppressed": app.aggregator.cells_suppressed_total,
        "frames": frames,
        "events_dropped": app.events_dropped,
        "outbox": str(cfg.state_dir / "outbox.sqlite3"),
    }
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
