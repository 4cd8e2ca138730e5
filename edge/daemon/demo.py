"""``shelfedge demo``: the daemon on the simulated store, with evaluation and a summary.

The simulator drives a ``SimClock``; its advertisements and app reports go through the same
``Application`` entry points as the BLE scanner and the MQTT bus. Ground truth is used only
here, to score zone accuracy; nothing of it reaches the daemon.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from edge.config import AppConfig, load_config
from edge.events import Advertisement
from edge.presence.scoring import ZoneScorer
from edge.presence.trace import SimTraceRecorder

from .app import Application, Features
from .clock import SimClock
from .evaluation import DemoEvaluation
from .service import Screenshot, SetKeys

_LOGGER = logging.getLogger(__name__)
DEMO_CONFIG = Path(__file__).with_name("demo-store.yaml")
STEP_S = 1.0
BROKER_DRAIN_S = 30.0


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
    record_trace: Path | None = None  # the simulator's trace with ground truth (JSON lines)


def demo_config(opts: DemoOptions) -> AppConfig:
    """The demo store config with state under the output folder and no radio.

    When the config enables ``mqtt``, the demo publishes its windows, state and offers to
    that broker as ``run`` does (times in the payloads are the simulated clock's)."""
    cfg = load_config(opts.config or DEMO_CONFIG)
    radio = cfg.radio.model_copy(update={"enabled": False})
    return cfg.model_copy(update={"state_dir": opts.out / "state", "radio": radio})


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
    # Each run simulates the same day on a fresh device: a ledger left by an earlier run
    # would (rightly) refuse to publish the same window slots again.
    for stale in cfg.state_dir.glob("privacy-ledger.sqlite3*"):
        stale.unlink()
    frames_dir = opts.out / "frames"
    frames_dir.mkdir(exist_ok=True)
    sim = StoreSimulator(cfg, seed=opts.seed)
    recorder = None if opts.record_trace is None else SimTraceRecorder(opts.record_trace, sim)
    clock = SimClock(sim.start_ts)
    tz = ZoneInfo(cfg.timezone)
    app = Application(
        cfg,
        clock=clock,
        features=Features(display=opts.display, mqtt=cfg.mqtt.enabled, model=True, autotick=False),
        holdout_salt=random.Random(opts.seed).randbytes,
    )
    service = app.service
    await app.start()
    # The demo plays the central server too: it installs the site day keys (set_keys).
    await service.set_keys(SetKeys(version=1, keys=sim.day_keys()))
    wall_start = time.monotonic()
    end = sim.start_ts + opts.minutes * 60.0
    progress = _Progress(stream)
    headline = ZoneScorer()  # every live token each second (rotation tails included)
    detected: set[int] = set()
    frames: list[str] = []
    next_snapshot = sim.start_ts
    first_cue_snapshot = False
    t = sim.start_ts

    evaluation = DemoEvaluation(sim, sim.start_ts)

    async def snapshot(name: str) -> None:
        result = await service.screenshot(Screenshot(str(frames_dir / name)))
        frames.append(result.path)

    try:
        while t < end:
            t = min(t + STEP_S, end)
            for item in sim.advance(t):
                clock.set(item.ts)
                if recorder is not None:
                    recorder.item(item)
                if isinstance(item, Advertisement):
                    app.on_advertisement(item)
                elif isinstance(item, AppReport):
                    app.on_app_payload(item.payload)
            clock.set(t)
            app.tick(t)
            await app.flush_windows()
            live = app.live_zones()
            holdings = app.registry.holdings(clock.monotonic())
            raw_age = max(
                (h.oldest_age_s for h in holdings.values() if not h.limit_s),
                default=0.0,
            )
            evaluation.observe(t, live, raw_age)
            for token, est in live.items():
                shopper = sim.shopper_of(token)
                if shopper is not None:
                    detected.add(shopper)
                headline.tally(sim.true_zone(token, t), est)
            await app.drain()  # the simulator must not outrun the decision stage
            if app.display is not None and (
                t >= next_snapshot or (not first_cue_snapshot and app.counters.offers > 0)
            ):
                if t >= next_snapshot:
                    next_snapshot += opts.snapshot_every_min * 60.0
                else:
                    first_cue_snapshot = True
                    await asyncio.sleep(0.3)  # let the renderer show the cue
                await snapshot(
                    f"frame-{len(frames):03d}-{dt.datetime.fromtimestamp(t, tz):%H%M%S}.png"
                )
            sim_min = (t - sim.start_ts) / 60.0
            progress.update(
                sim_min,
                opts.minutes,
                {
                    "shoppers": sim.stats.shoppers,
                    "in-store": sim.live_shoppers(),
                    "phones": len(live),
                    "offers": app.counters.offers,
                    "windows": 0 if app.spool is None else app.spool.written,
                    "zone-acc": f"{headline.ok / headline.scored:.1%}" if headline.scored else "-",
                },
            )
            if opts.speed > 0:
                target = wall_start + (t - sim.start_ts) / opts.speed
                delay = target - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
    finally:
        if app.display is not None:
            try:
                await snapshot(f"frame-{len(frames):03d}-final.png")
            except Exception as exc:  # a failed snapshot must not lose the summary
                _LOGGER.error("final snapshot failed: %s", type(exc).__name__)
        # With a broker: what the outbox holds goes out before the summary (bounded wait).
        outbox_pending = await app.drain_outbox(BROKER_DRAIN_S)
        if recorder is not None:
            recorder.close()
        status = await service.status()
        await app.stop()
        progress.done()
    local = status["local"]
    stats = sim.stats
    summary: dict[str, Any] = {
        "shoppers": stats.shoppers,
        "opted_in": stats.opted_in,
        "opted_in_detected": len(detected),
        "zone_accuracy": headline.accuracy(),
        "zone_samples": headline.scored,
        "offers": app.counters.offers,
        "offers_model_ranked": app.counters.offers_model_ranked,
        "windows_written": 0 if app.spool is None else app.spool.written,
        "windows_withheld": local["windows_withheld"],
        "raw_records_after_shutdown": app.raw_total(),
        **evaluation.summary(),
        "raw_holders": sorted(app.registry.names()),
        "simulated_minutes": opts.minutes,
        "wall_seconds": round(time.monotonic() - wall_start, 2),
        "seed": opts.seed,
        "model_id": status["model_id"],
        "decision_reasons": local["decision_reasons"],
        "ingest": local["ingest"],
        "cells_suppressed": local["cells_suppressed"],
        "epsilon": {
            k: status["privacy"][k]
            for k in ("epsilon_per_day", "epsilon_spent_today", "epsilon_remaining_today")
        },
        "frames": frames,
        "events_dropped": local["events_dropped"],
        "outbox": str(cfg.state_dir / "outbox.sqlite3"),
        "broker": f"{cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.enabled else None,
        "outbox_pending_at_end": outbox_pending,
        "control_socket": str(cfg.state_dir / "control.sock"),
    }
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
