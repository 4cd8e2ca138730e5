"""Utility of the published aggregates against the simulator's truth (issue 18).

Runs a simulated trading day (the demo store's counting hours) through the real daemon
pipeline (ingest, presence, decisions, the day release with noise, k and the ε ledger) at
the demo store's traffic and at multiples of it, and compares every published statistic with
the simulator's exact figures for opted-in shoppers:

- footfall[zone]: visits of opted-in shoppers to the zone in the hours, a visit being a stay
  of at least ``VISIT_MIN_S`` (30 s) in the zone by the ground-truth position sampled every 2 s
  (the device's definition: docs/ANALYTICS.md); a stay still open at closing does not count;
- arrivals[hour]: opted-in shoppers arriving in that hour;
- dwell[zone][bucket] and transitions[from][to]: the device counts a capped sample (one stay
  and one move per token), so these are compared as shares (a bucket's share of its zone,
  a move's share of all moves), not as counts.

Per statistic it reports cells, the share published (noisy count ≥ k), median and p90
relative error of published cells, and ε. The device publishes footfall in the period
release (edge/privacy/period.py): the one simulated day gives a one-day period (published at
the stop, ``partial``); ``--compare`` scores a ``privacy.period_days`` period by replaying this
day's presence events through the device's own PeriodAggregator once per day of the period
(D copies of one simulated day, so labelled: an estimate of a week like this day), against D ×
this day's truth. ``--compare`` also replays the day's presence
events into alternative release designs (ε splits, caps, the 15-minute windows) with
``--draws`` noise draws each, which is how the default design was chosen (docs/PRIVACY.md).
The presence events are held in this script's RAM for the replay; the device never keeps them.

    .venv/bin/python scripts/utility_eval.py --traffic 1 3 --compare --out docs/utility.json
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.config import AppConfig, load_config  # noqa: E402
from edge.contract.aggregate import DayMessage, PeriodMessage, parse  # noqa: E402
from edge.daemon.app import Application, Features  # noqa: E402
from edge.daemon.clock import SimClock  # noqa: E402
from edge.daemon.service import SetKeys  # noqa: E402
from edge.events import Advertisement, PresenceEvent  # noqa: E402
from edge.privacy.aggregates import DWELL_LABELS, WindowAggregator, dwell_bucket  # noqa: E402
from edge.privacy.budget import Budget  # noqa: E402
from edge.privacy.daily import DEFAULT_DESIGN, VISIT_MIN_S, DayAggregator, DayDesign  # noqa: E402
from edge.privacy.ledger import EpsilonLedger  # noqa: E402
from edge.privacy.noise import DiscreteLaplace  # noqa: E402
from edge.privacy.period import PeriodAggregator  # noqa: E402
from edge.privacy.release import close_all  # noqa: E402
from edge.sim import AppReport, StoreSimulator  # noqa: E402

DEMO = ROOT / "firmware_configs" / "stores" / "demo-store.yaml"
COLUMNS = ("traffic", "stat", "cells", "published", "median_err", "p90_err", "epsilon")
TRUTH_STEP_S = 2.0


@dataclass
class Truth:
    """Exact figures for opted-in shoppers during the counting hours."""

    footfall: Counter[str] = field(default_factory=Counter)
    arrivals: Counter[str] = field(default_factory=Counter)
    dwell: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass
class DayRun:
    """One simulated day: the config, the published message, the truth, the events seen."""

    cfg: AppConfig
    message: DayMessage
    period: PeriodMessage | None  # the one-day period published at the stop (footfall)
    truth: Truth
    events: list[tuple[str, Any]]
    spent: float
    worst_case: float
    shoppers: int
    opted_in: int
    wall_s: float


def day_config(traffic: float, open_h: int, close_h: int, out: Path) -> AppConfig:
    """The demo store at ``traffic`` × its arrivals, counting ``open_h``-``close_h``."""
    cfg = load_config(DEMO)
    start = cfg.simulator.start.replace(hour=open_h, minute=0)
    sim = cfg.simulator.model_copy(
        update={"start": start, "arrivals_per_hour": cfg.simulator.arrivals_per_hour * traffic}
    )
    privacy = cfg.privacy.model_copy(update={"release": "day", "day_hours": (open_h, close_h)})
    return cfg.model_copy(
        update={
            "simulator": sim,
            "privacy": privacy,
            "state_dir": out,
            "mqtt": cfg.mqtt.model_copy(update={"enabled": False}),
            "radio": cfg.radio.model_copy(update={"enabled": False}),
        }
    )


async def run_day(cfg: AppConfig, seed: int) -> DayRun:
    """Drive the daemon through the counting hours; collect truth and the day message."""
    sim = StoreSimulator(cfg, seed=seed)
    tz = ZoneInfo(cfg.timezone)
    day = dt.datetime.fromtimestamp(sim.start_ts, tz).date()
    open_h, close_h = cfg.privacy.day_hours
    open_ts = dt.datetime.combine(day, dt.time(open_h), tz).timestamp()
    close_ts = open_ts + (close_h - open_h) * 3600
    clock = SimClock(sim.start_ts)
    app = Application(
        cfg,
        clock=clock,
        features=Features(display=False, mqtt=False, model=True, autotick=False, control=False),
    )
    events: list[tuple[str, Any]] = []
    agg = app.aggregator
    presence, offer, holdout = agg.presence, agg.offer, agg.holdout

    def rec_presence(ev: PresenceEvent) -> None:
        events.append(("presence", ev))
        presence(ev)

    def rec_offer(token: bytes, coupon: str, ts: float) -> None:
        events.append(("offer", (token, coupon, ts)))
        offer(token, coupon, ts)

    def rec_holdout(token: bytes, ts: float) -> None:
        events.append(("holdout", (token, ts)))
        holdout(token, ts)

    agg.presence, agg.offer, agg.holdout = rec_presence, rec_offer, rec_holdout  # type: ignore[method-assign]
    await app.start()
    await app.service.set_keys(SetKeys(version=1, keys=sim.day_keys()))
    truth = Truth()
    seen: dict[int, str | None] = {}  # shopper id → last true zone
    stay_start: dict[int, float] = {}
    live: dict[int, Any] = {}
    wall = time.monotonic()
    t = sim.start_ts
    next_truth = t
    end = close_ts + 60.0
    while t < end:
        t += 1.0
        for item in sim.advance(t):
            clock.set(item.ts)
            if isinstance(item, Advertisement):
                app.on_advertisement(item)
            elif isinstance(item, AppReport):
                app.on_app_payload(item.payload)
        clock.set(t)
        app.tick(t)
        await app.flush_windows()
        await app.drain()
        if t >= next_truth and open_ts <= t < close_ts:
            next_truth = t + TRUTH_STEP_S
            _observe(sim, t, tz, open_ts, truth, seen, stay_start, live)
    figures = agg.privacy_figures(close_ts - 1)
    await app.stop()
    rows = _outbox_payloads(cfg)
    parsed = [parse(p) for p in rows]
    messages = [m for m in parsed if isinstance(m, DayMessage)]
    periods = [m for m in parsed if isinstance(m, PeriodMessage)]
    if not messages:
        raise SystemExit("no day release was published")
    return DayRun(
        cfg=cfg,
        message=messages[0],
        period=periods[0] if periods else None,
        truth=truth,
        events=events,
        spent=figures.spent_today,
        worst_case=figures.epsilon_worst_case_per_day,
        shoppers=sim.stats.shoppers,
        opted_in=sim.stats.opted_in,
        wall_s=round(time.monotonic() - wall, 1),
    )


def _outbox_payloads(cfg: AppConfig) -> list[bytes]:
    import sqlite3

    db = sqlite3.connect(f"file:{cfg.state_dir / 'outbox.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT payload FROM outbox WHERE topic = 'agg' ORDER BY seq")
        return [bytes(r[0]) for r in rows]
    finally:
        db.close()


def _observe(
    sim: StoreSimulator,
    t: float,
    tz: ZoneInfo,
    open_ts: float,
    truth: Truth,
    seen: dict[int, str | None],
    stay_start: dict[int, float],
    live: dict[int, Any],
) -> None:
    """Sample every opted-in shopper's true zone; close stays that ended since last time."""
    present = set()
    for shopper in sim.shoppers_in_store():
        if not shopper.opted_in:
            continue
        zone = shopper.path.zone(t, sim.zones)
        sid = shopper.id
        present.add(sid)
        if sid not in seen:
            seen[sid] = None
            live[sid] = shopper
            if shopper.arrival >= open_ts:
                hour = dt.datetime.fromtimestamp(shopper.arrival, tz).hour
                truth.arrivals[f"{hour:02d}"] += 1
        last = seen[sid]
        if zone is None or zone == last:
            continue
        if last is not None:
            truth.moves[last, zone] += 1
            truth.dwell[last][DWELL_LABELS[dwell_bucket(t - stay_start[sid])]] += 1
            _visit(truth, last, t - stay_start[sid])
        seen[sid] = zone
        stay_start[sid] = t
    for sid in [s for s in live if s not in present]:  # left the store: the last stay ends
        shopper = live.pop(sid)
        last = seen[sid]
        if last is not None:
            _visit(truth, last, shopper.departure - stay_start[sid])


def _visit(truth: Truth, zone: str, seconds: float) -> None:
    """A footfall visit: a stay of at least ``VISIT_MIN_S`` (the device's definition)."""
    truth.footfall[zone] += 0  # keep the key
    if seconds >= VISIT_MIN_S:
        truth.footfall[zone] += 1


# -- scoring ---------------------------------------------------------------------------------


def _rel(pub: float, true: float) -> float:
    return abs(pub - true) / true


def _shares(counts: dict[Any, float]) -> dict[Any, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def score(values: dict[str, dict[str, int | None]], stat: str, truth: Truth) -> dict[str, Any]:
    """Cells, published share, relative errors of one statistic's cells against the truth."""
    cells = [(z, k, v) for z, keyed in values.items() for k, v in keyed.items()]
    published = [(z, k, v) for z, k, v in cells if v is not None]
    errs: list[float] = []
    if stat == "footfall":
        errs = [_rel(v, truth.footfall[z]) for z, _, v in published if truth.footfall[z]]
    elif stat == "arrivals":
        errs = [_rel(v, truth.arrivals[k]) for _, k, v in published if truth.arrivals[k]]
    elif stat == "dwell":
        for zone, keyed in values.items():
            pub = _shares({k: float(v) for k, v in keyed.items() if v is not None})
            true = _shares({k: float(n) for k, n in truth.dwell[zone].items()})
            errs += [_rel(pub[k], true[k]) for k in pub if true.get(k)]
    elif stat == "transitions":
        pub = _shares({(z, k): float(v) for z, k, v in published})
        true = _shares({k: float(n) for k, n in truth.moves.items()})
        errs = [_rel(pub[k], true[k]) for k in pub if true.get(k)]
    return {
        "cells": len(cells),
        "published": len(published) / len(cells) if cells else 0.0,
        "errors": errs,
    }


def _summary(errs: list[float]) -> tuple[float | None, float | None]:
    if not errs:
        return None, None
    errs = sorted(errs)
    return statistics.median(errs), errs[min(len(errs) - 1, int(0.9 * len(errs)))]


def table_rows(run: DayRun, traffic: float) -> list[dict[str, Any]]:
    """One row per published statistic (the columns of ``COLUMNS``, plus ``release``)."""
    rows = []
    released: list[tuple[str, str, Any]] = [("day", s, b) for s, b in run.message.stats.items()]
    if run.period is not None:
        days = len(run.period.days)
        released += [(f"period ({days} day)", s, b) for s, b in run.period.stats.items()]
    for release, stat, block in released:
        if stat in ("offers", "holdout"):
            s = score(block.values, stat, run.truth)
            med = p90 = None  # the simulator has no exact offer truth per shopper
        else:
            s = score(block.values, stat, run.truth)
            med, p90 = _summary(s["errors"])
        rows.append(
            {
                "traffic": traffic,
                "release": release,
                "stat": stat,
                "cells": s["cells"],
                "published": round(s["published"], 3),
                "median_err": None if med is None else round(med, 3),
                "p90_err": None if p90 is None else round(p90, 3),
                "epsilon": block.epsilon,
            }
        )
    return rows


# -- design comparison (replay) ----------------------------------------------------------------


class _Zero(DiscreteLaplace):
    def sample(self) -> int:
        return 0


def replay(run: DayRun, design: DayDesign | None, draws: int) -> dict[str, dict[str, Any]]:
    """Replay the day's events into a design ``draws`` times; pooled errors per statistic.

    ``design=None`` replays into the 15-minute windows and sums their visitors per zone.
    """
    cfg = run.cfg
    pooled: dict[str, dict[str, Any]] = {}
    open_h = cfg.privacy.day_hours[0]
    for i in range(draws + 1):
        noise_off = i == draws  # one extra pass without noise: the bias alone
        if design is None:
            values = _replay_windows(run, noise_off)
            stats = {"footfall": values}
            eps = {"footfall": float(cfg.privacy.epsilon_per_day)}
        else:
            ledger = EpsilonLedger(None, Budget.from_config(cfg))
            agg = DayAggregator(
                cfg,
                design=design,
                ledger=ledger,
                noise=(lambda s: _Zero(1)) if noise_off else DiscreteLaplace,
                started=0.0,
            )
            _feed(agg, run.events)
            close_ts = run.message.period_end
            w = agg.close(close_ts + 1)
            assert w is not None
            msg = parse(dict(w.payload))
            assert isinstance(msg, DayMessage)
            stats = {s: b.values for s, b in msg.stats.items()}
            eps = {s: b.epsilon for s, b in msg.stats.items()}
        for stat, values in stats.items():
            if stat in ("offers", "holdout"):
                continue
            s = score(values, stat, run.truth)
            p = pooled.setdefault(
                stat, {"errors": [], "published": [], "bias": None, "epsilon": eps[stat]}
            )
            if noise_off:
                p["bias"] = _summary(s["errors"])[0]
            else:
                p["errors"] += s["errors"]
                p["published"].append(s["published"])
    del open_h
    return pooled


def _feed(agg: DayAggregator | WindowAggregator, events: list[tuple[str, Any]]) -> None:
    for kind, item in events:
        if kind == "presence":
            agg.presence(item)
        elif kind == "offer":
            agg.offer(*item)
        else:
            agg.holdout(*item)


def _replay_windows(run: DayRun, noise_off: bool) -> dict[str, dict[str, int | None]]:
    cfg = run.cfg.model_copy(
        update={"privacy": run.cfg.privacy.model_copy(update={"release": "window"})}
    )
    budget = Budget.from_config(cfg)
    agg = WindowAggregator(
        cfg,
        noise=_Zero(1) if noise_off else None,
        ledger=EpsilonLedger(None, budget),
    )
    totals: Counter[str] = Counter()
    seen: set[str] = set()
    for kind, item in run.events:
        ts = item.ts if kind == "presence" else item[-1]
        while agg.due(ts):
            _add_window(agg.close(ts), totals, seen)
        _feed(agg, [(kind, item)])
    _add_window(agg.close(run.message.period_end), totals, seen)
    zones = [z.id for z in cfg.store.zones]
    return {z: {"visitors": totals[z] if z in seen else None} for z in zones}


def _add_window(w: Any, totals: Counter[str], seen: set[str]) -> None:
    if w is None:
        return
    for zone, body in w.payload["zones"].items():
        if body["visitors"] is not None:
            totals[zone] += body["visitors"]
            seen.add(zone)


def candidates() -> dict[str, DayDesign | None]:
    """The release designs compared (the first is the default)."""
    f = Fraction
    caps1 = {"footfall": 1, "dwell": 1, "transitions": 1, "arrivals": 1, "holdout": 1}
    only = {"footfall": f(1)}
    designs: dict[str, DayDesign | None] = {
        "day release alone, period_days 0 (footfall 0.7 cap 4, arrivals 0.2, rest 0.1)": (
            DEFAULT_DESIGN
        ),
    }
    for cap in (2, 3, 4, 6):
        designs[f"footfall only, cap {cap}"] = DayDesign(
            shares=only, caps={**caps1, "footfall": cap}
        )
    designs["footfall 0.5 cap 4 + transitions 0.5"] = DayDesign(
        shares={"footfall": f(1, 2), "transitions": f(1, 2)}, caps={**caps1, "footfall": 4}
    )
    designs["15-min windows (48/day, b = 2592), summed"] = None
    return designs


# Multi-day releases of statistics the device does not sum over periods (footfall it does:
# replay_period): (label, design, days, statistics), estimated from this one simulated day's
# counts × D (see multi_day).
MULTI_DAY: tuple[tuple[str, DayDesign, int, tuple[str, ...]], ...] = (
    ("7-day release of the default design [D copies of this day]", DEFAULT_DESIGN, 7,
     ("dwell", "transitions")),
    ("28-day release of the default design [D copies of this day]", DEFAULT_DESIGN, 28,
     ("arrivals", "dwell", "transitions")),
)  # fmt: skip


def multi_day(run: DayRun, design: DayDesign, days: int, draws: int) -> dict[str, Any]:
    """A D-day release estimated from this day repeated D times (labelled as such).

    Each day is charged its share (ε_D = D·share·ε) and one person shows at most D·N tokens, so
    the noise scale of the D-day sum equals the one-day scale b. The day's exact counts
    (noise off) × D get noise of scale b, k is applied to the sum, and the published sum / D
    (the average day) is scored against this day's truth.
    """
    cfg = run.cfg
    agg = DayAggregator(
        cfg,
        design=design,
        ledger=EpsilonLedger(None, Budget.from_config(cfg)),
        noise=lambda s: _Zero(1),
        started=0.0,
    )
    _feed(agg, run.events)
    w = agg.close(run.message.period_end + 1)
    assert w is not None
    msg = parse(dict(w.payload))
    assert isinstance(msg, DayMessage)
    k = cfg.privacy.k
    pooled: dict[str, Any] = {}
    for stat, block in msg.stats.items():
        scale = agg.budget.noise_scale(stat, agg.budget.period_s, agg.budget.epsilon_per_day)
        noise = DiscreteLaplace(scale)
        p = pooled.setdefault(stat, {"errors": [], "published": [], "epsilon": block.epsilon})
        for _ in range(draws):
            values: dict[str, dict[str, int | None]] = {}
            for zone, keyed in block.values.items():
                row: dict[str, int | None] = {}
                for key, v in keyed.items():
                    noisy = days * (v or 0) + noise.sample()
                    row[key] = None if noisy < k else round(noisy / days)
                values[zone] = row
            s = score(values, stat, run.truth)
            p["errors"] += s["errors"]
            p["published"].append(s["published"])
    return pooled


def replay_period(days: list[DayRun], draws: int) -> dict[str, dict[str, Any]]:
    """A ``len(days)``-day period through the device's PeriodAggregator: ``days[i]``'s presence
    events replayed on day i of the calendar period that holds the first day, each day folded
    at its closing, the period published at its end, scored against the sum of the days'
    truths. ``days`` are distinct simulated days (``--period-seeds``) or copies of one day
    (labelled so). ``draws`` noise draws plus one without noise (the bias)."""
    d_len = len(days)
    base = days[0]
    cfg = base.cfg.model_copy(
        update={"privacy": base.cfg.privacy.model_copy(update={"period_days": d_len})}
    )
    tz = ZoneInfo(cfg.timezone)
    close_h = cfg.privacy.day_hours[1]
    truth = Truth()
    for run in days:
        truth.footfall.update(run.truth.footfall)
        truth.arrivals.update(run.truth.arrivals)
    first: dt.date | None = None
    pooled: dict[str, dict[str, Any]] = {}
    for i in range(draws + 1):
        noise_off = i == draws
        agg = PeriodAggregator(
            cfg,
            ledger=EpsilonLedger(None, Budget.from_config(cfg)),
            noise=(lambda s: _Zero(1)) if noise_off else DiscreteLaplace,
            started=0.0,
        )
        windows = []
        end = 0.0
        for d, run in enumerate(days):
            day = dt.datetime.fromtimestamp(run.message.period_start, tz).date()
            if first is None:
                first = dt.date.fromordinal(((day.toordinal() - 1) // d_len) * d_len + 1)
            target = first + dt.timedelta(days=d)
            midnight = dt.datetime.combine(target, dt.time(0), tz).timestamp()
            shift = midnight - dt.datetime.combine(day, dt.time(0), tz).timestamp()
            for kind, ev in run.events:
                if kind == "presence":
                    agg.presence(dataclasses.replace(ev, ts=ev.ts + shift))
            end = midnight + close_h * 3600
            while agg.due(end):
                w = agg.close(end)
                if w is not None:
                    windows.append(w)
                if not agg.due(end):
                    break
        windows += close_all(agg, end + 1)
        (w,) = windows
        msg = parse(dict(w.payload))
        assert isinstance(msg, PeriodMessage) and len(msg.days) == d_len, msg.days
        for stat, block in msg.stats.items():
            s = score(block.values, stat, truth)
            p = pooled.setdefault(
                stat, {"errors": [], "published": [], "bias": None, "epsilon": block.epsilon}
            )
            p["epsilon_per_day"] = block.epsilon_per_day
            if noise_off:
                p["bias"] = _summary(s["errors"])[0]
            else:
                p["errors"] += s["errors"]
                p["published"].append(s["published"])
    return pooled


PERIODS = (7, 28)  # period lengths replayed through the PeriodAggregator (--compare)


def compare(run: DayRun, draws: int, traffic: float) -> list[dict[str, Any]]:
    """Rows of the design comparison for one simulated day."""
    rows = []

    def add(name: str, stat: str, p: dict[str, Any]) -> None:
        med, p90 = _summary(p["errors"])
        bias = p.get("bias")
        rows.append(
            {
                "traffic": traffic,
                "design": name,
                "stat": stat,
                "epsilon": round(p.get("epsilon_per_day", p["epsilon"]), 4),
                "published": round(statistics.mean(p["published"]), 3),
                "median_err": None if med is None else round(med, 3),
                "p90_err": None if p90 is None else round(p90, 3),
                "bias_noise_off": None if bias is None else round(bias, 3),
            }
        )

    for name, design in candidates().items():
        for stat, p in replay(run, design, draws).items():
            add(name, stat, p)
    for days in PERIODS:
        name = (f"{days}-day period release, device PeriodAggregator "
                f"[{days} replayed copies of this day]")  # fmt: skip
        # at most 5 draws: each replays the day's events D times through the aggregator
        for stat, p in replay_period([run] * days, max(1, min(draws, 5))).items():
            add(name, stat, p)
    for name, design, days, stats in MULTI_DAY:
        pooled = multi_day(run, design, days, max(draws, 1))
        for stat in stats:
            add(name, stat, pooled[stat])
    return rows


def _simulate(job: tuple[float, int, int, int]) -> DayRun:
    """One simulated day in its own process (``--period-seeds``)."""
    traffic, seed, open_h, close_h = job
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(run_day(day_config(traffic, open_h, close_h, Path(tmp)), seed))


def start_days(
    traffic: float, args: argparse.Namespace
) -> tuple[concurrent.futures.ProcessPoolExecutor | None, list[concurrent.futures.Future[DayRun]]]:
    """Start simulating the extra days of ``--period-seeds`` (seeds seed+1, …) beside the
    first day, each in its own process (they run while the main process simulates seed)."""
    if args.period_seeds < 2:
        return None, []
    ctx = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx)
    jobs = [
        (traffic, args.seed + i, args.open_h, args.close_h) for i in range(1, args.period_seeds)
    ]
    return pool, [pool.submit(_simulate, job) for job in jobs]


def measured_period(
    traffic: float, args: argparse.Namespace, days: list[DayRun]
) -> list[dict[str, Any]]:
    """A period of distinct simulated days through the PeriodAggregator, scored against the
    sum of their truths: measured, not copies."""
    n = len(days)
    rows = []
    for stat, p in replay_period(days, max(args.draws, 1)).items():
        med, p90 = _summary(p["errors"])
        rows.append(
            {
                "traffic": traffic,
                "design": f"{n}-day period release, device PeriodAggregator, {n} distinct "
                f"simulated days (seeds {args.seed}-{args.seed + n - 1}), measured",
                "stat": stat,
                "epsilon": round(p["epsilon_per_day"], 4),
                "published": round(statistics.mean(p["published"]), 3),
                "median_err": None if med is None else round(med, 3),
                "p90_err": None if p90 is None else round(p90, 3),
                "bias_noise_off": None if p["bias"] is None else round(p["bias"], 3),
                "opted_in_per_day": [d.opted_in for d in days],
            }
        )
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def markdown(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> str:
    """A Markdown table of ``rows``."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; print the tables; optionally write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traffic", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--open", type=int, default=8, dest="open_h")
    ap.add_argument("--close", type=int, default=20, dest="close_h")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compare", action="store_true", help="also replay alternative designs")
    ap.add_argument("--draws", type=int, default=20, help="noise draws per design (--compare)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    ap.add_argument(
        "--period-seeds",
        type=int,
        default=0,
        help="also simulate this many distinct days (seeds seed, seed+1, …) and score a period "
        "release over them (0 = off; each day takes minutes)",
    )
    ap.add_argument("--jobs", type=int, default=2, help="processes for --period-seeds")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"utility": [], "compare": [], "runs": []}
    for traffic in args.traffic:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = day_config(traffic, args.open_h, args.close_h, Path(tmp))
            pool, extra = start_days(traffic, args)
            run = asyncio.run(run_day(cfg, args.seed))
            rows = table_rows(run, traffic)
            result["utility"] += rows
            result["runs"].append(
                {
                    "traffic": traffic,
                    "arrivals_per_hour": cfg.simulator.arrivals_per_hour,
                    "hours": f"{args.open_h:02d}-{args.close_h:02d}",
                    "shoppers": run.shoppers,
                    "opted_in": run.opted_in,
                    "epsilon_spent": run.spent,
                    "epsilon_worst_case_per_day": run.worst_case,
                    "tokens_per_person": run.message.privacy.tokens_per_person,
                    "wall_s": run.wall_s,
                }
            )
            print(
                f"traffic ×{traffic:g}: {run.shoppers} shoppers ({run.opted_in} opted in), "
                f"ε spent {run.spent:.4g} (worst case per person per day "
                f"{run.worst_case:.4g}), N = {run.message.privacy.tokens_per_person} tokens, "
                f"{run.wall_s} s"
            )
            if args.compare:
                result["compare"] += compare(run, args.draws, traffic)
            if pool is not None:
                days = [run, *(f.result() for f in extra)]
                pool.shutdown()
                result["compare"] += measured_period(traffic, args, days)
    print(markdown(result["utility"], ("traffic", "release", *COLUMNS[1:])))
    if result["compare"]:
        print()
        cols = ("traffic", "design", "stat", "epsilon", "published", "median_err", "p90_err")
        print(markdown(result["compare"], (*cols, "bias_noise_off")))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
