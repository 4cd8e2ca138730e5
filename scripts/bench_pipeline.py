#!/usr/bin/env python3
"""Benchmark: CPU cost per simulated radio item through the daemon's stages.

Generates a simulated store hour once, then replays the same items through (1) a bare
dispatch loop (the baseline: the interpreter floor of touching each item), (2) the ingest
gate, (3) ingest + presence, (4) the whole ``Application`` (ingest, presence, decisions with
the TFLite model, aggregates, outbox; no display, no broker). Reports µs per item, medians of
``--repeat`` runs, and ratios against the baseline measured in the same run; with
``--write`` updates its section of docs/PERFORMANCE.md. Not part of the test suite.

    python scripts/bench_pipeline.py --minutes 60 --repeat 3 --write
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from doc_section import write_section  # noqa: E402  (scripts/ is on sys.path when run)

from edge.config import AppConfig, load_config  # noqa: E402
from edge.daemon.app import Application, Features  # noqa: E402
from edge.daemon.clock import SimClock  # noqa: E402
from edge.daemon.service import SetKeys  # noqa: E402
from edge.events import Advertisement, Sighting  # noqa: E402
from edge.presence import PresenceTracker  # noqa: E402
from edge.radio import DayKeys, Ingest  # noqa: E402
from edge.sim import AppReport, StoreSimulator  # noqa: E402

DOC = ROOT / "docs" / "PERFORMANCE.md"
START, END = "<!-- pipeline-bench:start -->", "<!-- pipeline-bench:end -->"


def generate(cfg: AppConfig, minutes: float, seed: int) -> tuple[StoreSimulator, list[Any]]:
    sim = StoreSimulator(cfg, seed=seed)
    items = list(sim.advance(sim.start_ts + minutes * 60))
    return sim, items


def bench_baseline(items: list[Any]) -> float:
    n = 0
    t0 = time.perf_counter()
    for it in items:
        if isinstance(it, Advertisement):
            n += 1
        elif isinstance(it, AppReport):
            n += 2
    return time.perf_counter() - t0


def bench_ingest(cfg: AppConfig, keys: dict[str, str], items: list[Any]) -> float:
    ing = Ingest(cfg, DayKeys.from_hex(keys))
    sink: list[Sighting] = []
    t0 = time.perf_counter()
    for it in items:
        if isinstance(it, Advertisement):
            ing.advertisement(it)
        else:
            ing.app_payload(it.payload, sink.append)
    return time.perf_counter() - t0


def bench_presence(cfg: AppConfig, keys: dict[str, str], items: list[Any]) -> float:
    ing = Ingest(cfg, DayKeys.from_hex(keys))
    tracker = PresenceTracker(cfg, lambda ev: None)
    last_tick = 0.0
    t0 = time.perf_counter()
    for it in items:
        if isinstance(it, Advertisement):
            r = ing.advertisement(it)
            if isinstance(r, Sighting):
                tracker.sighting(r)
        else:
            ing.app_payload(it.payload, tracker.sighting)
        if it.ts - last_tick >= 1.0:
            last_tick = it.ts
            tracker.tick(it.ts)
    return time.perf_counter() - t0


async def _app(
    cfg: AppConfig, sim: StoreSimulator, keys: dict[str, str], items: list[Any]
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = cfg.model_copy(update={"state_dir": Path(tmp)})
        clock = SimClock(sim.start_ts)
        app = Application(
            cfg,
            clock=clock,
            features=Features(display=False, mqtt=False, autotick=False, control=False),
        )
        await app.start()
        await app.service.set_keys(SetKeys(version=1, keys=keys))
        last_tick = 0.0
        t0 = time.perf_counter()
        for it in items:
            clock.set(it.ts)
            if isinstance(it, Advertisement):
                app.on_advertisement(it)
            else:
                app.on_app_payload(it.payload)
            if it.ts - last_tick >= 1.0:
                last_tick = it.ts
                app.tick(it.ts)
                await app.flush_windows()
                await app.drain()
        await app.drain()
        elapsed = time.perf_counter() - t0
        assert app.decisions.dropped == 0, "decision queue overflowed: the measurement is invalid"
        await app.stop()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="update docs/PERFORMANCE.md")
    ap.add_argument(
        "--config",
        type=Path,
        default=ROOT / "firmware_configs" / "stores" / "demo-store.yaml",
        help="store config to simulate (default: the demo store)",
    )
    args = ap.parse_args()

    cfg = load_config(args.config)
    t0 = time.perf_counter()
    sim, items = generate(cfg, args.minutes, args.seed)
    gen_s = time.perf_counter() - t0
    keys = sim.day_keys()
    n = len(items)
    print(f"{n} items for {args.minutes:g} simulated minutes (generated in {gen_s:.2f} s)")

    runs: dict[str, list[float]] = {"baseline": [], "ingest": [], "presence": [], "app": []}
    for _ in range(args.repeat):
        runs["baseline"].append(bench_baseline(items))
        runs["ingest"].append(bench_ingest(cfg, keys, items))
        runs["presence"].append(bench_presence(cfg, keys, items))
        runs["app"].append(asyncio.run(_app(cfg, sim, keys, items)))
    med = {k: statistics.median(v) * 1e6 / n for k, v in runs.items()}
    labels = {
        "baseline": "bare dispatch loop over the items (baseline)",
        "ingest": "ingest gate (decode, verify tag, resolve beacon, drop)",
        "presence": "ingest + presence (zones, dwell, retention)",
        "app": "whole Application (+ decisions with TFLite, aggregates, outbox)",
    }
    rows = [
        f"| {labels[k]} | {med[k]:.3f} | {med[k] / med['baseline']:.1f}× |"
        for k in ("baseline", "ingest", "presence", "app")
    ]
    table = "\n".join(["| stage | µs per item (median) | × baseline |", "|---|---:|---:|", *rows])
    print(table)
    if args.write:
        section = (
            f"{START}\n## Pipeline cost per radio item\n\n"
            f"Command: `python scripts/bench_pipeline.py --minutes {args.minutes:g} "
            f"--repeat {args.repeat} --write`  \n"
            f"Machine: {platform.machine()}, {platform.python_implementation()} "
            f"{platform.python_version()}, {platform.system()}; "
            f"{n} items (advertisements heard per receiver + app reports) of the demo store, "
            f"seed {args.seed}; medians of {args.repeat} runs.\n\n{table}\n\n"
            "An item is one advertisement as one receiver heard it, or one app report batch. "
            "The daemon's whole pipeline must stay a rounding error next to a BLE radio's "
            "~3,000 advertisements/s (BRIEF §9 target: ≤ 10 µs per advertisement).\n"
            f"{END}"
        )
        write_section(DOC, START, END, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
