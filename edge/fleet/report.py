"""``shelfedge fleet report``: heatmap, dwell and time-of-day charts, CSVs and an HTML index.

Reads what ``fleet listen`` stored (any release kind of the aggregate contract, flattened into
cells) and the store's floor plan (zone rectangles) from the appliance config file. Zone
footfall comes from ``footfall`` cells (``period`` releases when there are any, else ``day``
releases; the heatmap then names the days summed), else from the ``visitors`` cells of
``window`` releases; suppressed cells count as missing, never as zero
in the error bars. Every figure states the ε spent on its statistic (summed over the
releases in the period, per person), the k and the share of cells suppressed.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import html
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.contract import aggregate as contract

from .store import AggregateRow, StoreError, open_store

FOOTFALL_STATS = ("footfall", "visitors")  # preferred first
HOUR_STATS = ("hourly", "arrivals", "hour_of_day")
TRANSITION_STATS = ("transitions", "paths")
DPI = 100


class ReportError(Exception):
    """Bad input for a report (config file, dates, empty database); the message says what."""


# -- the floor plan from the appliance config (only what the report needs) ------------------


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PlanZone(_Loose):
    id: str
    name: str
    rect: tuple[float, float, float, float]


class PlanStore(_Loose):
    name: str
    size: tuple[float, float]
    zones: list[PlanZone] = Field(min_length=1)


class FloorPlan(_Loose):
    """Zone rectangles (x, y, width, depth in metres) and the site's time zone."""

    site: str
    timezone: str = "UTC"
    store: PlanStore


def load_plan(path: Path) -> FloorPlan:
    """The floor plan from an appliance config file; ``ReportError`` says what is wrong."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ReportError(f"{path}: {exc}") from None
    try:
        plan = FloorPlan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ReportError(f"{path}: {where}: {first['msg']}") from None
    try:
        ZoneInfo(plan.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"{path}: timezone: unknown time zone {plan.timezone!r}") from None
    return plan


# -- numbers -----------------------------------------------------------------------------


def noise_sd(scale: float) -> float:
    """Standard deviation of discrete Laplace noise with scale b (p = e^(-1/b))."""
    p = math.exp(-1.0 / scale)
    return math.sqrt(2.0 * p) / (1.0 - p)


@dataclass(slots=True)
class Tally:
    """Published values of one statistic summed per (zone, key), with their bookkeeping."""

    stat: str
    values: dict[tuple[str, str], int] = field(default_factory=dict)
    variance: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    published: int = 0
    suppressed: int = 0
    epsilon_by_message: dict[str, float] = field(default_factory=dict)

    @property
    def epsilon(self) -> float:
        """ε per person spent on this statistic in the period (sum over its releases)."""
        return sum(self.epsilon_by_message.values())

    @property
    def suppressed_share(self) -> float:
        total = self.published + self.suppressed
        return self.suppressed / total if total else 0.0

    def sd(self, zone: str, key: str) -> float:
        return math.sqrt(self.variance.get((zone, key), 0.0))


def tally(stat: str, cells: list[contract.Cell], scales: dict[tuple[str, str], float]) -> Tally:
    """Sum a statistic's published cells; ``scales`` maps (message id, stat) → noise scale.

    A statistic released by several release kinds is read from the longest-period kind only
    (period > day > window: the same people counted twice would double the numbers)."""
    t = Tally(stat)
    for c in preferred(cells, stat):
        if c.epsilon is not None:
            t.epsilon_by_message[c.message_id] = c.epsilon
        if c.value is None:
            t.suppressed += 1
            continue
        t.published += 1
        t.values[c.zone, c.key] = t.values.get((c.zone, c.key), 0) + c.value
        scale = scales.get((c.message_id, stat))
        if scale:
            t.variance[c.zone, c.key] += noise_sd(scale) ** 2
    return t


RELEASE_RANK = {"period": 0, "day": 1, "window": 2}  # longest period first


def preferred(cells: list[contract.Cell], stat: str) -> list[contract.Cell]:
    """The cells of ``stat`` from its longest-period release kind present (period > day >
    window: the same people in two kinds would be counted twice)."""
    mine = [c for c in cells if c.stat == stat]
    if not mine:
        return mine
    best = min(RELEASE_RANK.get(c.release, 1) for c in mine)
    return [c for c in mine if RELEASE_RANK.get(c.release, 1) == best]


@dataclass(slots=True)
class Data:
    """Everything the report draws, read from the store."""

    site: str
    rows: list[AggregateRow]
    cells: list[contract.Cell]
    scales: dict[tuple[str, str], float]
    window_suppressed_share: float | None
    period_days: dict[str, list[str]] = field(default_factory=dict)  # period id → days counted

    def stats(self) -> set[str]:
        return {c.stat for c in self.cells}

    def k(self) -> str:
        ks = sorted({r.k for r in self.rows})
        return ",".join(str(k) for k in ks) or "-"


def read(url: str, site: str, start: int | None, end: int | None) -> Data:
    """Read one site's stored aggregates in ``[start, end)``."""
    store = open_store(url)
    try:
        rows = store.aggregates(site, start, end)
        cells = store.cells(site, start, end)
        bodies = store.bodies(site, start, end)
    finally:
        store.close()
    scales: dict[tuple[str, str], float] = {}
    period_days: dict[str, list[str]] = {}
    for body in bodies:
        msg = contract.parse(body)
        if isinstance(msg, contract.PeriodMessage):
            period_days[msg.id] = list(msg.days)
        if isinstance(msg, contract.WindowMessage):
            for stat in ("visitors", "dwell", "offers", "holdout"):
                scales[msg.id, stat] = msg.privacy.noise_scale
        else:
            for stat, block in msg.stats.items():
                scales[msg.id, stat] = block.noise_scale
    windows = [r for r in rows if r.release == "window"]
    total = sum(r.cells_total for r in windows)
    share = sum(r.cells_suppressed for r in windows) / total if total else None
    return Data(site, rows, cells, scales, share, period_days)


def caption(t: Tally, data: Data, *, window_release: bool) -> str:
    """The privacy line every figure carries."""
    share = t.suppressed_share
    if window_release and data.window_suppressed_share is not None:
        share = data.window_suppressed_share  # windows leave most suppressed cells out
    n = len(t.epsilon_by_message)
    return (
        f"ε = {t.epsilon:.3g} per person ({n} release{'s' * (n != 1)}), k = {data.k()}, "
        f"suppressed {share:.0%} of cells"
    )


# -- figures -----------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_heatmap(
    plan: FloorPlan, t: Tally, data: Data, title: str, out: Path, *, window_release: bool
) -> dict[str, Any]:
    """Zone rectangles on the floor plan, coloured by footfall; returns the image map."""
    plt = _pyplot()
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    width, depth = plan.store.size
    fig, ax = plt.subplots(figsize=(10, 10 * depth / width * 0.9 + 1.6), dpi=DPI)
    values = {z.id: t.values.get((z.id, "visitors")) for z in plan.store.zones}
    shown = [v for v in values.values() if v is not None]
    norm = Normalize(vmin=min(shown, default=0), vmax=max(shown, default=1) or 1)
    cmap = colormaps["YlOrRd"]
    ax.add_patch(Rectangle((0, 0), width, depth, fill=False, lw=2, ec="#333333"))
    for z in plan.store.zones:
        x, y, w, d = z.rect
        v = values[z.id]
        if v is None:
            ax.add_patch(Rectangle((x, y), w, d, fc="#dddddd", ec="#555555", hatch="//"))
            label = f"{z.name}\nsuppressed"
        else:
            ax.add_patch(Rectangle((x, y), w, d, fc=cmap(norm(v)), ec="#555555"))
            label = f"{z.name}\n{v} ± {t.sd(z.id, 'visitors'):.0f}"
        ax.text(x + w / 2, y + d / 2, label, ha="center", va="center", fontsize=9)
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(depth + 0.5, -0.5)  # y grows away from the entrance wall, as in the config
    ax.set_aspect("equal")
    ax.set_xlabel("metres")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.7,
                 label="opted-in visitors (noisy)")  # fmt: skip
    ax.set_title(f"{title}\n{caption(t, data, window_release=window_release)}", fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    height_px = fig.get_size_inches()[1] * DPI
    areas = {}
    for z in plan.store.zones:
        x, y, w, d = z.rect
        (x0, y0), (x1, y1) = ax.transData.transform([(x, y), (x + w, y + d)])
        sx, sy = ax.transData.transform((x + 0.12 * w, y + 0.15 * d))
        areas[z.id] = {
            "name": z.name,
            "value": values[z.id],
            "sd": round(t.sd(z.id, "visitors"), 1),
            "box": [
                round(min(x0, x1)),
                round(height_px - max(y0, y1)),
                round(max(x0, x1)),
                round(height_px - min(y0, y1)),
            ],
            "sample": [round(sx), round(height_px - sy)],
        }
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return {"image": out.name, "colormap": "YlOrRd", "vmin": norm.vmin, "vmax": norm.vmax,
            "title": title, "caption": caption(t, data, window_release=window_release),
            "zones": areas}  # fmt: skip


def draw_dwell(plan: FloorPlan, t: Tally, data: Data, out: Path, *, window_release: bool) -> None:
    """Per zone, the share of visits in each dwell bucket (published cells only)."""
    plt = _pyplot()
    labels = sorted({k for (_z, k) in t.values}, key=_bucket_order)
    zones = [z for z in plan.store.zones if any((z.id, k) in t.values for k in labels)]
    fig, ax = plt.subplots(figsize=(10, 0.45 * max(len(zones), 1) + 2.2), dpi=DPI)
    cmap = plt.get_cmap("viridis", max(len(labels), 1))
    for row, z in enumerate(zones):
        counts = [t.values.get((z.id, k), 0) for k in labels]
        total = sum(counts) or 1
        left = 0.0
        for i, n in enumerate(counts):
            ax.barh(row, n / total, left=left, color=cmap(i), label=labels[i] if row == 0 else None)
            left += n / total
    ax.set_yticks(range(len(zones)), [z.name for z in zones])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of published dwell counts")
    ax.legend(title="dwell (s)", loc="upper center", fontsize=8, ncols=min(len(labels), 6) or 1,
              bbox_to_anchor=(0.5, -0.12))  # fmt: skip
    ax.set_title(f"Dwell distribution per zone\n{caption(t, data, window_release=window_release)}",
                 fontsize=10, loc="left")  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def _bucket_order(label: str) -> float:
    head = label.split("-")[0].rstrip("+")
    try:
        return float(head)
    except ValueError:
        return math.inf


def hour_profile(data: Data, tz: ZoneInfo) -> tuple[Tally, bool]:
    """Counts per local hour: a released hour-of-day statistic, else windows' visitors."""
    for stat in HOUR_STATS:
        if stat in data.stats():
            return tally(stat, data.cells, data.scales), False
    visitors = [c for c in data.cells if c.stat == "visitors"]
    t = Tally("visitors")
    for c in visitors:
        t.epsilon_by_message[c.message_id] = c.epsilon or 0.0
        if c.value is None:
            t.suppressed += 1
            continue
        t.published += 1
        hour = f"{dt.datetime.fromtimestamp(c.period_start, tz).hour:02d}"
        t.values["*", hour] = t.values.get(("*", hour), 0) + c.value
        scale = data.scales.get((c.message_id, "visitors"))
        if scale:
            t.variance["*", hour] += noise_sd(scale) ** 2
    return t, True


def draw_hours(t: Tally, data: Data, out: Path, *, window_release: bool) -> None:
    """Bars per local hour with ±1 noise SD."""
    plt = _pyplot()
    hours = sorted({k for (_z, k) in t.values})
    fig, ax = plt.subplots(figsize=(10, 4), dpi=DPI)
    vals = [sum(v for (_z, k), v in t.values.items() if k == h) for h in hours]
    sds = [math.sqrt(sum(t.variance.get((z, h), 0.0) for (z, k) in t.values if k == h))
           for h in hours]  # fmt: skip
    ax.bar(hours, vals, yerr=sds, color="#c0504d", ecolor="#555555", capsize=3)
    ax.set_xlabel("hour of day (site time)")
    ax.set_ylabel("opted-in visitors (noisy)")
    ax.set_title(f"Hour of day ({t.stat})\n{caption(t, data, window_release=window_release)}",
                 fontsize=10, loc="left")  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def draw_transitions(plan: FloorPlan, t: Tally, data: Data, out: Path) -> None:
    """Zone-to-zone counts as a matrix (from = row, to = column)."""
    plt = _pyplot()
    ids = [z.id for z in plan.store.zones]
    grid = [[float(t.values.get((a, b), 0)) for b in ids] for a in ids]
    fig, ax = plt.subplots(figsize=(8, 7), dpi=DPI)
    im = ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(len(ids)), ids, rotation=60, ha="right")
    ax.set_yticks(range(len(ids)), ids)
    ax.set_xlabel("to")
    ax.set_ylabel("from")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(f"Zone transitions\n{caption(t, data, window_release=False)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


# -- the report --------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def build_report(
    url: str, site: str, plan: FloorPlan, out: Path, start: int | None, end: int | None
) -> list[Path]:
    """Write the figures, CSVs and index.html; returns the files written."""
    data = read(url, site, start, end)
    if not data.rows:
        raise ReportError(f"no aggregates stored for site {site!r} in that period")
    out.mkdir(parents=True, exist_ok=True)
    tz = ZoneInfo(plan.timezone)
    written: list[Path] = []
    stats = data.stats()
    foot_stat = next((s for s in FOOTFALL_STATS if s in stats), "visitors")
    foot = tally(foot_stat, [c for c in data.cells if c.stat == foot_stat], data.scales)
    first = min(r.period_start for r in data.rows)
    last = max(r.period_end for r in data.rows)
    span = (f"{dt.datetime.fromtimestamp(first, tz):%Y-%m-%d %H:%M} – "
            f"{dt.datetime.fromtimestamp(last, tz):%Y-%m-%d %H:%M} ({plan.timezone})")  # fmt: skip
    title = f"{plan.store.name} ({site}): zone footfall, {span}"
    periods = {c.message_id for c in preferred(data.cells, foot_stat) if c.release == "period"}
    if periods:  # footfall summed over periods: name the days counted
        days = sorted({d for m in periods for d in data.period_days.get(m, [])})
        span = f"{days[0]} – {days[-1]}" if days else span
        title = (f"{plan.store.name} ({site}): zone footfall summed over {len(days)} day(s), "
                 f"{span} ({len(periods)} period release{'s' * (len(periods) != 1)})")  # fmt: skip
    figures: list[tuple[str, str]] = []
    heat = out / "heatmap.png"
    image_map = draw_heatmap(plan, foot, data, title, heat, window_release=foot_stat == "visitors")
    (out / "heatmap.json").write_text(json.dumps(image_map, indent=2) + "\n")
    written += [heat, out / "heatmap.json"]
    figures.append((heat.name, "Zone footfall on the floor plan (± one noise SD)"))
    _write_csv(
        out / "footfall.csv",
        ["zone", "name", "footfall", "noise_sd", "statistic"],
        [[z.id, z.name, foot.values.get((z.id, "visitors"), ""),
          round(foot.sd(z.id, "visitors"), 1), foot_stat] for z in plan.store.zones],
    )  # fmt: skip
    written.append(out / "footfall.csv")

    if "dwell" in stats:
        dwell = tally("dwell", data.cells, data.scales)
        dwell_png = out / "dwell.png"
        window_only = all(c.release == "window" for c in preferred(data.cells, "dwell"))
        draw_dwell(plan, dwell, data, dwell_png, window_release=window_only)
        figures.append((dwell_png.name, "Dwell distribution per zone"))
        _write_csv(
            out / "dwell.csv",
            ["zone", "bucket_s", "count", "noise_sd"],
            [[z, k, v, round(dwell.sd(z, k), 1)] for (z, k), v in sorted(dwell.values.items())],
        )
        written += [dwell_png, out / "dwell.csv"]

    hours, from_windows = hour_profile(data, tz)
    if hours.values:
        hours_png = out / "hours.png"
        draw_hours(hours, data, hours_png, window_release=from_windows)
        figures.append((hours_png.name, "Hour of day"))
        _write_csv(
            out / "hours.csv",
            ["zone", "hour", "count", "noise_sd"],
            [[z, k, v, round(hours.sd(z, k), 1)] for (z, k), v in sorted(hours.values.items())],
        )
        written += [hours_png, out / "hours.csv"]

    for stat in TRANSITION_STATS:
        if stat in stats:
            tr = tally(stat, data.cells, data.scales)
            tr_png = out / "transitions.png"
            draw_transitions(plan, tr, data, tr_png)
            figures.append((tr_png.name, "Zone-to-zone transitions"))
            written.append(tr_png)
            break

    _write_csv(
        out / "cells.csv",
        ["message_id", "device", "release", "period_start", "period_end", "stat", "zone", "key",
         "value", "suppressed", "epsilon"],
        [[c.message_id, c.device, c.release, c.period_start, c.period_end, c.stat, c.zone,
          c.key, "" if c.value is None else c.value, int(c.suppressed), c.epsilon]
         for c in data.cells],
    )  # fmt: skip
    _write_csv(
        out / "releases.csv",
        ["id", "device", "release", "period_start", "period_end", "epsilon", "k",
         "cells", "cells_suppressed"],
        [[r.id, r.device, r.release, r.period_start, r.period_end, r.epsilon, r.k,
          r.cells_total, r.cells_suppressed] for r in data.rows],
    )  # fmt: skip
    written += [out / "cells.csv", out / "releases.csv"]
    index = out / "index.html"
    index.write_text(_html(title, figures, image_map, written, data))
    written.append(index)
    return written


def _html(
    title: str,
    figures: list[tuple[str, str]],
    image_map: dict[str, Any],
    files: list[Path],
    data: Data,
) -> str:
    esc = html.escape
    areas = "\n".join(
        f'<area shape="rect" coords="{",".join(str(c) for c in z["box"])}" '
        f'title="{esc(z["name"])}: {_shown(z["value"])} ± {z["sd"]}" alt="{esc(z["name"])}">'
        for z in image_map["zones"].values()
    )
    blocks = []
    for name, text in figures:
        usemap = ' usemap="#zones"' if name == image_map["image"] else ""
        blocks.append(
            f'<figure><img src="{esc(name)}" alt="{esc(text)}"{usemap}>'
            f"<figcaption>{esc(text)}</figcaption></figure>"
        )
    links = " · ".join(
        f'<a href="{esc(p.name)}">{esc(p.name)}</a>' for p in files if p.suffix == ".csv"
    )
    devices = sorted({r.device for r in data.rows})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto}}
figure{{margin:1.5em 0}}figcaption{{color:#555}}</style></head><body>
<h1>{esc(title)}</h1>
<p>{len(data.rows)} aggregate releases from {len(devices)} device(s): {esc(", ".join(devices))}.
Counts are of opted-in shoppers only, with calibrated noise; a cell whose noisy count is below
k is suppressed (left out), so sums are lower bounds. Error bars are one standard deviation of
the noise. Each figure states the ε spent on it per person, the k and the suppressed share.</p>
<map name="zones">
{areas}
</map>
{chr(10).join(blocks)}
<p>Data: {links}</p>
</body></html>
"""


def _shown(value: int | None) -> str:
    return "suppressed" if value is None else str(value)


def _when(text: str | None, tz: ZoneInfo, name: str) -> int | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--{name}: not a date or ISO time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return int(value.timestamp())


def _cmd_report(args: argparse.Namespace) -> int:
    try:
        plan = load_plan(Path(args.config))
        tz = ZoneInfo(plan.timezone)
        start, end = _when(args.date_from, tz, "from"), _when(args.date_to, tz, "to")
        files = build_report(args.db, args.site, plan, Path(args.out), start, end)
    except (ReportError, StoreError) as exc:
        print(f"shelfedge fleet report: {exc}", file=sys.stderr)
        return 1
    print(f"report: {len(files)} files in {args.out} (open {Path(args.out) / 'index.html'})")
    return 0


def add_report_parser(fsub: Any) -> None:
    """Register ``fleet report``."""
    p = fsub.add_parser("report", help="heatmap, dwell and hour charts, CSVs and an HTML index")
    p.add_argument("--db", default="sqlite:///fleet.db", help="sqlite:///FILE or postgresql://…")
    p.add_argument("--site", required=True)
    p.add_argument("--config", required=True, help="the store's appliance config (floor plan)")
    p.add_argument("--from", dest="date_from", help="start (date or ISO time, site time zone)")
    p.add_argument("--to", dest="date_to", help="end, exclusive (date or ISO time)")
    p.add_argument("--out", default="fleet-report", help="output folder")
    p.set_defaults(func=_cmd_report)
