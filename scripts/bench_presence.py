#!/usr/bin/env python3
"""Benchmark: zone accuracy, flaps and latency of ShelfEdge's tracker against the anchor systems.

Runs the demo store simulator (correlated shadowing unless ``--iid``) at each ``--sigma`` and
feeds the same verified sightings (the real ingest gate) to ``PresenceTracker`` and to the
anchor systems' methods (``edge.presence.baselines``). Every simulated second, each opted-in
shopper's current token is scored against the ground truth (the zone containing the shopper,
or the nearest zone centre in an aisle):

- accuracy: share of shopper-seconds with an estimate whose estimate is the true zone
  (also split by path: BLE = Android token adverts heard by receivers, app = iOS sightings
  of reference beacons alone);
- flaps per minute: changes of the estimate to a zone that is not the true zone then, per
  tracked minute (``changes/min`` counts every change; the truth changes about 1.3 times a
  minute);
- latency: from a true zone change to the first right estimate, median and p90.

Not part of the test suite. ``--write`` replaces its section of docs/PERFORMANCE.md.

    python scripts/bench_presence.py --minutes 60 --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from doc_section import write_section  # noqa: E402  (scripts/ is on sys.path when run)

from edge.config import AppConfig, load_config  # noqa: E402
from edge.events import Advertisement, Sighting  # noqa: E402
from edge.presence import PresenceTracker  # noqa: E402
from edge.presence.baselines import BASELINES  # noqa: E402
from edge.radio import DayKeys, Ingest  # noqa: E402
from edge.sim import Platform, StoreSimulator  # noqa: E402
from edge.sim import advertise as air  # noqa: E402

DOC = ROOT / "docs" / "PERFORMANCE.md"
START, END = "<!-- presence-bench:start -->", "<!-- presence-bench:end -->"


class Method(Protocol):
    def sighting(self, s: Sighting) -> object: ...
    def zone_of(self, token: bytes) -> str | None: ...
    def tick(self, now: float) -> object: ...


@dataclass
class Score:
    ok: int = 0
    n: int = 0
    ok_by: dict[str, int] = field(default_factory=lambda: {"ble": 0, "app": 0})
    n_by: dict[str, int] = field(default_factory=lambda: {"ble": 0, "app": 0})
    seconds: int = 0
    flaps: int = 0
    changes: int = 0
    latencies: list[float] = field(default_factory=list)
    last_est: dict[int, str] = field(default_factory=dict)
    pending: dict[int, float] = field(default_factory=dict)
    cpu_s: float = 0.0
    fed: int = 0

    def row(self) -> dict[str, float | None]:
        minutes = max(self.seconds, 1) / 60.0
        lat = sorted(self.latencies)
        return {
            "accuracy": self.ok / self.n if self.n else 0.0,
            "ble": self.ok_by["ble"] / self.n_by["ble"] if self.n_by["ble"] else None,
            "app": self.ok_by["app"] / self.n_by["app"] if self.n_by["app"] else None,
            "flaps": self.flaps / minutes,
            "changes": self.changes / minutes,
            "lat_med": statistics.median(lat) if lat else None,
            "lat_p90": lat[min(len(lat) - 1, int(0.9 * (len(lat) - 1) + 0.5))] if lat else None,
            "coverage": self.n / max(self.seconds, 1),
        }


def sim_config(base: AppConfig, sigma: float, model: str) -> AppConfig:
    sim = base.simulator.model_copy(update={"shadowing_sigma_db": sigma, "shadowing": model})
    return base.model_copy(update={"simulator": sim})


def run(cfg: AppConfig, minutes: float, seed: int) -> dict[str, Score]:
    sim = StoreSimulator(cfg, seed=seed)
    ingest = Ingest(cfg, DayKeys.from_hex(sim.day_keys()))
    methods: dict[str, Method] = {"ShelfEdge": PresenceTracker(cfg, lambda ev: None)}
    methods.update({name: cls(cfg) for name, cls in BASELINES.items()})
    scores = {name: Score() for name in methods}
    feeders: list[tuple[Score, Callable[[Sighting], object]]] = [
        (scores[n], m.sighting) for n, m in methods.items()
    ]
    sightings: list[Sighting] = []
    truth_prev: dict[int, str] = {}
    zones = sim.zones
    t = sim.start_ts
    end = t + minutes * 60.0
    while t < end:
        t += 1.0
        sightings.clear()
        for item in sim.advance(t):
            if isinstance(item, Advertisement):
                out = ingest.advertisement(item)
                if isinstance(out, Sighting):
                    sightings.append(out)
            else:
                ingest.app_payload(item.payload, sightings.append)
        for score, feed in feeders:
            t0 = time.perf_counter()
            for s in sightings:
                feed(s)
            score.cpu_s += time.perf_counter() - t0
            score.fed += len(sightings)
        for m in methods.values():
            m.tick(t)
        epoch = air.rpi_interval(t)
        changed: set[int] = set()
        live: list[tuple[int, bytes, str, str]] = []
        for shopper in sim.shoppers_in_store():
            if not shopper.opted_in:
                continue
            truth = shopper.path.zone(t, zones)
            if truth is None:
                continue
            prev = truth_prev.get(shopper.id)
            if prev is not None and prev != truth:
                changed.add(shopper.id)
            truth_prev[shopper.id] = truth
            path = "app" if shopper.platform is Platform.IOS else "ble"
            live.append((shopper.id, air.rpi(shopper.key, epoch), truth, path))
        for name, m in methods.items():
            sc = scores[name]
            for sid, token, truth, path in live:
                sc.seconds += 1
                if sid in changed:
                    sc.pending[sid] = t
                est = m.zone_of(token)
                if est is None:
                    continue
                sc.n += 1
                sc.n_by[path] += 1
                right = est == truth
                sc.ok += right
                sc.ok_by[path] += right
                last = sc.last_est.get(sid)
                if last is not None and last != est:
                    sc.changes += 1
                    sc.flaps += not right
                sc.last_est[sid] = est
                if right and sid in sc.pending:
                    sc.latencies.append(t - sc.pending.pop(sid))
    return scores


def fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sigma", type=float, nargs="+", default=[4.0, 6.0, 8.0])
    ap.add_argument("--iid", action="store_true", help="i.i.d. shadowing instead (comparison)")
    ap.add_argument("--write", action="store_true", help="update docs/PERFORMANCE.md")
    ap.add_argument(
        "--config",
        type=Path,
        default=ROOT / "edge" / "daemon" / "demo-store.yaml",
        help="store config to simulate (default: the demo store)",
    )
    args = ap.parse_args()

    base = load_config(args.config)
    model = "iid" if args.iid else "correlated"
    header = (
        "| shadowing | σ dB | method | accuracy | BLE path | app path (beacons only) "
        "| flaps/min | changes/min | latency median / p90 s | µs per sighting |"
    )
    lines = [header, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for sigma in args.sigma:
        scores = run(sim_config(base, sigma, model), args.minutes, args.seed)
        for name, sc in scores.items():
            r = sc.row()
            lines.append(
                f"| {model} | {sigma:g} | {name} | {fmt(r['accuracy'], '.3f')} "
                f"| {fmt(r['ble'], '.3f')} | {fmt(r['app'], '.3f')} "
                f"| {fmt(r['flaps'], '.2f')} | {fmt(r['changes'], '.2f')} "
                f"| {fmt(r['lat_med'], '.0f')} / {fmt(r['lat_p90'], '.0f')} "
                f"| {sc.cpu_s * 1e6 / max(1, sc.fed):.2f} |"
            )
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    if args.write:
        cmd = "python scripts/bench_presence.py --minutes {:g} --seed {}{}{} --write".format(
            args.minutes,
            args.seed,
            " --sigma " + " ".join(f"{s:g}" for s in args.sigma)
            if args.sigma != [4.0, 6.0, 8.0]
            else "",
            " --iid" if args.iid else "",
        )
        section = f"{START}\n{table}\n\nCommand: `{cmd}`\n{END}"
        write_section(DOC, START, END, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
