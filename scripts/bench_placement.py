#!/usr/bin/env python3
"""Benchmark: how anchor placement limits zone accuracy (evidence for docs/OPERATIONS.md).

Moves the demo store's receivers and reference beacons to a few placements and runs the
presence benchmark (``scripts/bench_presence.py``: same simulator, same scoring, correlated
shadowing) on each, for ShelfEdge and the best anchor-system method:

- ``wall``: one receiver per zone on the wall side of the zone (where the demo store's
  screens hung until 2026-12-01), one beacon near the zone's middle;
- ``centre``: one receiver and one beacon in the middle of the zone;
- ``centre + 2 beacons``: one receiver in the middle, two beacons at the quarter points of
  the zone's long axis;
- ``2 + 2 (demo store)``: two receivers (the zone device and a second adapter) and two
  beacons at the quarter points: the demo store's placement.

Each placement runs at ``presence.switch_ratio`` 4 (the default) and 12 (the demo store's).
Not part of the test suite. ``--write`` replaces its section of docs/PERFORMANCE.md.

    python scripts/bench_placement.py --minutes 60 --seeds 0 1 --write
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_presence import run, sim_config  # noqa: E402  (scripts/ is on sys.path when run)
from doc_section import write_section  # noqa: E402

from edge.config import AppConfig, load_config  # noqa: E402
from edge.config.models import Zone  # noqa: E402

DOC = ROOT / "docs" / "PERFORMANCE.md"
START, END = "<!-- placement-bench:start -->", "<!-- placement-bench:end -->"

Point = tuple[float, float]
# Where the demo store's receivers were until 2026-12-01: on the zone's wall side.
WALL_RECEIVERS: dict[str, Point] = {
    "entrance": (1.0, 1.0),
    "produce": (10.0, 0.5),
    "bakery": (18.0, 0.5),
    "checkout": (26.0, 0.5),
    "dairy": (0.5, 10.0),
    "coffee": (11.0, 12.5),
    "snacks": (18.5, 12.5),
    "beverages": (29.5, 10.0),
    "household": (5.0, 19.5),
    "pharmacy": (15.0, 19.5),
    "frozen": (25.0, 19.5),
}


def centre(zone: Zone) -> list[Point]:
    """The middle of the zone."""
    x, y, w, d = zone.rect
    return [(x + w / 2, y + d / 2)]


def quarters(zone: Zone) -> list[Point]:
    """The quarter points of the zone's long axis."""
    x, y, w, d = zone.rect
    if w >= d:
        return [(x + w / 4, y + d / 2), (x + 3 * w / 4, y + d / 2)]
    return [(x + w / 2, y + d / 4), (x + w / 2, y + 3 * d / 4)]


def wall(zone: Zone) -> list[Point]:
    """The zone's receiver on its wall side (the demo store's earlier placement)."""
    return [WALL_RECEIVERS[zone.id]]


RATIOS = (4.0, 12.0)
Placer = Callable[[Zone], list[Point]]
PLACEMENTS: dict[str, tuple[Placer, Placer]] = {
    "wall": (wall, centre),
    "centre": (centre, centre),
    "centre + 2 beacons": (centre, quarters),
    "2 + 2 (demo store)": (quarters, quarters),
}


def placed(base: AppConfig, receivers: Placer, beacons: Placer) -> AppConfig:
    """The demo store with its anchors moved (beacons reuse the store's own identities)."""
    store = base.store
    by_id = {b.id: b for b in store.beacons}
    new_beacons = []
    new_zones = []
    new_receivers = []
    template = store.receivers[0]
    for zone in store.zones:
        spots = beacons(zone)
        if len(zone.beacons) < len(spots):
            raise SystemExit(f"zone {zone.id}: {len(spots)} beacon spots, {len(zone.beacons)} ids")
        ids = zone.beacons[: len(spots)]
        new_beacons += [
            by_id[i].model_copy(update={"position": p}) for i, p in zip(ids, spots, strict=True)
        ]
        new_zones.append(zone.model_copy(update={"beacons": ids}))
        for i, p in enumerate(receivers(zone)):
            rid = f"rx-{zone.id}" + (f"-{i + 1}" if i else "")
            new_receivers.append(
                template.model_copy(update={"id": rid, "zone": zone.id, "position": p})
            )
    new_store = store.model_copy(
        update={"zones": new_zones, "beacons": new_beacons, "receivers": new_receivers}
    )
    return base.model_copy(update={"store": new_store})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--sigma", type=float, default=6.0)
    ap.add_argument("--write", action="store_true", help="update docs/PERFORMANCE.md")
    args = ap.parse_args()

    base = load_config(ROOT / "firmware_configs" / "stores" / "demo-store.yaml")
    lines = [
        "| placement | receivers / beacons per zone | switch ratio "
        "| ShelfEdge accuracy (BLE / app path) | ShelfEdge flaps/min | latency median / p90 s "
        "| best anchor method: accuracy | its flaps/min | fewest flaps of the anchor methods |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for (name, (rx, bc)), ratio in itertools.product(PLACEMENTS.items(), RATIOS):
        moved = placed(base, rx, bc)
        presence = moved.presence.model_copy(update={"switch_ratio": ratio})
        cfg = sim_config(moved.model_copy(update={"presence": presence}), args.sigma, "correlated")
        per_seed = [run(cfg, args.minutes, seed) for seed in args.seeds]
        rows = {m: [scores[m].row() for scores in per_seed] for m in per_seed[0]}

        def mean(
            method: str, key: str, rows: dict[str, list[dict[str, float | None]]] = rows
        ) -> float:
            return statistics.fmean(float(r[key] or 0.0) for r in rows[method])

        others = [m for m in rows if m != "ShelfEdge"]
        best = max(others, key=lambda m: mean(m, "accuracy"))
        calm = min(mean(m, "flaps") for m in others)
        n_rx = len(rx(base.store.zones[0]))
        n_bc = len(bc(base.store.zones[0]))
        lines.append(
            f"| {name} | {n_rx} / {n_bc} | {ratio:g} | {mean('ShelfEdge', 'accuracy'):.3f} "
            f"({mean('ShelfEdge', 'ble'):.3f} / {mean('ShelfEdge', 'app'):.3f}) "
            f"| {mean('ShelfEdge', 'flaps'):.2f} "
            f"| {mean('ShelfEdge', 'lat_med'):.1f} / {mean('ShelfEdge', 'lat_p90'):.1f} "
            f"| {best} {mean(best, 'accuracy'):.3f} "
            f"| {mean(best, 'flaps'):.2f} | {calm:.2f} |"
        )
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    if args.write:
        seeds = " ".join(str(s) for s in args.seeds)
        cmd = (
            f"python scripts/bench_placement.py --minutes {args.minutes:g} --seeds {seeds}"
            f"{'' if args.sigma == 6.0 else f' --sigma {args.sigma:g}'} --write"
        )
        note = (
            f"Correlated shadowing σ {args.sigma:g} dB; means over seeds {seeds}, "
            f"{args.minutes:g} simulated minutes each."
        )
        write_section(DOC, START, END, f"{START}\n{table}\n\n{note}  \nCommand: `{cmd}`\n{END}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
