"""Replaying a presence trace through the daemon's own ingest and tracker, and scoring it.

Owns ``replay``: the trace's lines, in time order, go through a fresh ``radio.Ingest`` and
``presence.PresenceTracker`` built exactly as ``daemon.app.Application`` builds them, on a
simulated clock read from the lines' ``ts``, with the daemon's once-a-second ``tick`` (TTL,
retention purge) at every whole second the trace crosses. Right after all lines sharing one
time stamp are fed, each line with a ground-truth ``zone`` is scored against the tracker's
zone for that line's token, with the shared rule in ``edge.presence.scoring``.

Frames and keys: a line with a token frame (app ``frame``, or the token in a receiver advert's
payload) must verify like on the device, against the site day keys of the config
(``privacy.day_keys``) or, for a simulator trace, the keys the simulator derives from its seed.
A line without a frame belongs to its ``walk`` (lines with neither share one walk), and each
walk is one opted-in phone: the replay makes up a token and a day key for it in RAM, for this
run only; they are never printed or written.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from edge.config.models import AppConfig
from edge.events import Advertisement, BeaconSighting, PresenceEvent, PresenceKind, Sighting
from edge.presence.scoring import ZoneScorer
from edge.presence.trace import AdvertLine, AppLine, BeaconLine, Trace, TraceLine
from edge.presence.tracker import PresenceTracker
from edge.radio import frames
from edge.radio.ingest import Ingest
from edge.radio.keys import DayKeys, token_tag

WALK_TIER = 1  # a frameless walk is a phone that opted in to location-based offers
TICK_S = 1.0  # the daemon's housekeeping step (as the demo drives it)
TRUTH_HOLD_S = 2.5  # a walk's last known true zone stands this long (per-second scoring)


@dataclass(slots=True)
class _ZoneTally:
    ok: int = 0
    n: int = 0
    confused_with: dict[str, int] = field(default_factory=dict)


_PER_SECOND_KEYS = (
    "flaps",
    "flaps_per_min",
    "estimate_changes",
    "latency_median_s",
    "latency_p90_s",
    "zone_changes_caught",
)


@dataclass(slots=True)
class _Clock:
    now: float = 0.0

    def monotonic(self) -> float:
        return self.now


class _WalkTokens:
    """Pseudo tokens for frameless walks: RAM only, fresh random values per run."""

    def __init__(self, keys: DayKeys) -> None:
        self._keys = keys
        self._rpi: dict[Hashable, bytes] = {}

    def frame_hex(self, walk: Hashable, day: dt.date) -> tuple[bytes, str]:
        rpi = self._rpi.get(walk)
        if rpi is None:
            rpi = self._rpi[walk] = secrets.token_bytes(16)
        header = (frames.TOKEN_VERSION << 4) | WALK_TIER
        frame = bytes((header,)) + rpi + token_tag(self._keys.key(day), header, rpi)
        return rpi, frame.hex()

    def clear(self) -> None:
        self._rpi.clear()


def _sim_keys(seed: int, days: set[dt.date]) -> dict[dt.date, bytes]:
    from edge.sim.days import DayKeyring

    ring = DayKeyring(seed)
    # today's and yesterday's key, as the simulated central server pushes them
    return {d: ring.key(d) for day in days for d in (day, day - dt.timedelta(days=1))}


def _token_of(adv: Advertisement, cfg: AppConfig) -> bytes | None:
    """The RPI in a receiver advert's token payload, when there is one (for scoring only)."""
    svc = frames.uuid16_key(cfg.radio.token_service_uuid)
    payload = adv.service_data.get(svc) if cfg.radio.accept != "manufacturer_data" else None
    if payload is None and cfg.radio.accept != "service_data":
        md = adv.manufacturer_data.get(cfg.radio.token_company_id)
        if md is not None and len(md) == frames.TOKEN_FRAME_LEN:
            payload = md
    if payload is None or len(payload) != frames.TOKEN_FRAME_LEN:
        return None
    return payload[1:17]


def replay(cfg: AppConfig, trace: Trace) -> dict[str, Any]:
    """Replay ``trace`` against the store in ``cfg``; return the metrics (aggregates only)."""
    clock = _Clock()
    retention = cfg.privacy.raw_retention_s
    keys = DayKeys.from_hex(cfg.privacy.day_keys, retention_s=retention, monotonic=clock.monotonic)
    ingest = Ingest(cfg, keys)
    enters = 0

    def on_presence(ev: PresenceEvent) -> None:
        nonlocal enters
        enters += int(ev.kind is PresenceKind.ENTER)

    tracker = PresenceTracker(cfg, on_presence, monotonic=clock.monotonic)
    lines = sorted(trace.lines, key=lambda item: item[1].ts)  # stable: file order on ties

    # Keys: the config's, the simulator's (by seed), and one made up per date for walks.
    installed = {d: keys.key(d) for d in keys.days}
    meta = trace.meta
    if meta is not None and meta.source == "simulator" and meta.seed is not None:
        days = {ingest.local_date(line.ts) for _, line in lines}
        installed = {**_sim_keys(meta.seed, days), **installed}
    for _, line in lines:
        if isinstance(line, AppLine) and line.frame is None:
            installed.setdefault(ingest.local_date(line.ts), secrets.token_bytes(32))
    keys.replace(installed, version=0)
    walks = _WalkTokens(keys)

    scorer = ZoneScorer()
    # The demo's unit: every live token at every whole second, scored against the latest
    # truth of its walk (a rotated-out token still belongs to its walk, as in the demo).
    per_second = ZoneScorer()
    token_subject: dict[bytes, Hashable] = {}
    subject_token: dict[Hashable, bytes] = {}  # each subject's current token, as the demo scores
    latest_truth: dict[Hashable, tuple[float, str | None]] = {}
    per_zone: dict[str, _ZoneTally] = {}
    beacon_samples = 0
    unknown_beacons: set[str] = set()
    configured_beacons = {b.id for b in cfg.store.beacons}
    walk_ids: set[Hashable] = set()

    def route(item: Sighting | BeaconSighting | None) -> None:
        # The daemon's routing for what a trace can produce (Application.route).
        if isinstance(item, Sighting):
            tracker.sighting(item)

    def tick(now: float) -> None:
        clock.now = max(clock.now, now)
        tracker.tick(now)
        tracker.purge(clock.monotonic())
        keys.purge(clock.monotonic())
        for subject, current in subject_token.items():
            known = latest_truth.get(subject)
            if known is not None and now - known[0] <= TRUTH_HOLD_S and tracker.is_live(current):
                per_second.observe(subject, now, known[1], tracker.zone_of(current))

    pending: list[tuple[Hashable, bytes | None, TraceLine]] = []

    def score_pending() -> None:
        for subject, token, line in pending:
            if not line.has_truth:
                continue
            estimate = None if token is None else tracker.zone_of(token)
            verdict = scorer.observe(subject, line.ts, line.zone, estimate)
            if verdict is not None and line.zone is not None:
                tally = per_zone.setdefault(line.zone, _ZoneTally())
                tally.n += 1
                tally.ok += int(verdict)
                if not verdict and estimate is not None:
                    tally.confused_with[estimate] = tally.confused_with.get(estimate, 0) + 1
        pending.clear()

    next_tick: float | None = None
    current_ts: float | None = None
    for _, line in lines:
        if line.ts != current_ts:
            score_pending()
            current_ts = line.ts
            if next_tick is None:
                next_tick = math.floor(line.ts) + TICK_S
            # The daemon ticks once a second, after the adverts of that second. Across a gap
            # with nothing held, ticking changes nothing: jump to the last second before it.
            if next(tracker.live_tokens(), None) is None:
                next_tick = max(next_tick, math.ceil(line.ts) - TICK_S)
            while line.ts > next_tick:
                tick(next_tick)
                next_tick += TICK_S
        clock.now = max(clock.now, line.ts)
        walk = line.walk
        token: bytes | None = None
        match line:
            case BeaconLine():
                beacon_samples += 1
                if line.beacon not in configured_beacons:
                    unknown_beacons.add(line.beacon)
                continue
            case AppLine(frame=None):
                subject_walk: Hashable = ("walk", walk)
                token, frame_hex = walks.frame_hex(subject_walk, ingest.local_date(line.ts))
                ingest.app_payload(_json(line.app_object(frame_hex)), route, now=clock.now)
            case AppLine(frame=str(frame_hex)):
                token = bytes.fromhex(frame_hex)[1:17]
                ingest.app_payload(_json(line.app_object(frame_hex)), route, now=clock.now)
            case AdvertLine():
                adv = line.advertisement()
                token = _token_of(adv, cfg)
                route(ingest.advertisement(adv))
        frameless = isinstance(line, AppLine) and line.frame is None
        subject: tuple[str, Hashable] = (
            ("walk", walk) if walk is not None or frameless else ("token", token)
        )
        if subject[0] == "walk":
            walk_ids.add(subject)
        if line.has_truth:
            pending.append((subject, token, line))
            latest_truth[subject] = (line.ts, line.zone)
        if token is not None:
            token_subject[token] = subject
            subject_token[subject] = token
    score_pending()
    if next_tick is not None and current_ts is not None:
        while next_tick < current_ts + TICK_S:
            tick(next_tick)
            next_tick += TICK_S
    token_subject.clear()
    subject_token.clear()
    tracker.clear()
    walks.clear()
    keys.replace({}, version=0)

    out = scorer.summary()
    out.update(
        {
            # Flaps and latency are counted on the demo's unit, each walk's current token once
            # a second, so that they do not depend on the advert rate; per sighting beside them.
            **{f"{key}_per_sighting": out[key] for key in _PER_SECOND_KEYS},
            **{
                key: value for key, value in per_second.summary().items() if key in _PER_SECOND_KEYS
            },
            "accuracy_per_second": per_second.accuracy(),
            "samples_per_second": per_second.scored,
            "lines": trace.read,
            "malformed_lines": len(trace.problems),
            "sightings": len(lines) - beacon_samples,
            "beacon_samples": beacon_samples,
            "unknown_beacon_ids": sorted(unknown_beacons),
            "walks": len(walk_ids),
            "per_zone": {
                zone: {
                    "samples": t.n,
                    "accuracy": round(t.ok / t.n, 4) if t.n else 0.0,
                    "most_confused_with": max(t.confused_with, key=t.confused_with.__getitem__)
                    if t.confused_with
                    else None,
                }
                for zone, t in sorted(per_zone.items())
            },
            "ingest": {
                k: v
                for k, v in ingest.counters.as_dict().items()
                if k != "by_source" and isinstance(v, int)
            },
            "dropped_unknown_anchor": tracker.dropped_unknown_anchor,
            "enter_events": enters,
            "source": None if meta is None else meta.source,
        }
    )
    return out


def _json(obj: dict[str, Any]) -> bytes:
    import json

    return json.dumps(obj, separators=(",", ":")).encode()
