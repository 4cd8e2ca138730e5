"""The daemon core: owns every stage and wires sources → presence → decide → outputs.

Raw inputs arrive on the event loop thread (``on_advertisement``, ``on_app_payload``) and
flow synchronously through ingest and presence (cheap, no I/O). Presence events go through
a bounded queue to the decision task (model inference runs in a worker thread). Closed
aggregate windows are written to the SQLite outbox in a worker thread; the display renders
in its own thread; the MQTT link runs as an owned task. ``tick`` drives time-based work
(retention purge, TTL eviction, window closing) from the wall clock or the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import __version__
from edge.config import AppConfig, config_hash, load_config
from edge.decide.engine import Decision, DecisionEngine, Scorer
from edge.decide.policy import HoldoutGroup, Policy, Reason
from edge.errors import ConfigError, ModelError
from edge.events import (
    Advertisement,
    AggregateWindow,
    BeaconSighting,
    PresenceEvent,
    PresenceKind,
    Sighting,
)
from edge.presence.tracker import PresenceTracker
from edge.privacy.aggregates import WindowAggregator
from edge.radio import DayKeys, Ingest

from .clock import Clock, SystemClock

_LOGGER = logging.getLogger(__name__)
EVENT_QUEUE_MAX = 4096
STOP_DRAIN_S = 2.0
RESTART_SECTIONS = (
    "site",
    "device",
    "timezone",
    "state_dir",
    "store",
    "radio",
    "privacy",
    "presence",
    "mqtt",
    "commands",
    "model",
)


@dataclass(frozen=True, slots=True)
class Features:
    """Which optional parts to run (the demo and tests switch some off)."""

    display: bool = True
    mqtt: bool = True
    model: bool = True
    autotick: bool = True


@dataclass(slots=True)
class RawHoldings:
    """How much raw, per-token state the process holds (must be 0 after shutdown)."""

    tokens: int
    samples: int
    oldest_sample_age_s: float
    contributions: int
    policy_tokens: int
    queued_events: int

    @property
    def total(self) -> int:
        """All raw records together."""
        return (
            self.tokens
            + self.samples
            + self.contributions
            + self.policy_tokens
            + self.queued_events
        )


class Application:
    """One ShelfEdge appliance process."""

    def __init__(
        self,
        cfg: AppConfig,
        *,
        config_path: Path | None = None,
        clock: Clock | None = None,
        features: Features = Features(),
        scorer: Scorer | None = None,
        holdout_salt: Callable[[int], bytes] | None = None,
    ) -> None:
        self.cfg = cfg
        self._config_hash = config_hash(cfg)
        self.config_path = config_path
        self.clock: Clock = clock or SystemClock()
        self.features = features
        self.keys = DayKeys.from_hex(cfg.privacy.day_keys)
        self.ingest = Ingest(cfg, self.keys)
        self.tracker = PresenceTracker(cfg, self._on_presence)
        self.aggregator = WindowAggregator(cfg)
        policy = None
        if holdout_salt is not None:  # the demo seeds it; production salts come from secrets
            policy = Policy(cfg, HoldoutGroup(cfg.policy.holdout_share, holdout_salt))
        self.engine = DecisionEngine(cfg, self.tracker.layout, scorer=scorer, policy=policy)
        self.outbox: Any = None
        self.display: Any = None
        self.link: Any = None
        self._queue: asyncio.Queue[PresenceEvent] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending_windows: list[AggregateWindow] = []
        self._started_mono = time.monotonic()
        self._screen_zone = self._find_screen_zone(cfg)
        self._pending_restart: list[str] = []
        self._last_errors: list[str] = []
        self.beacons_seen: dict[str, float] = {}
        self.offers_made = 0
        self.offers_model_ranked = 0
        self.windows_written = 0
        self.events_dropped = 0
        self.windows_today: dict[str, int] = {}
        self.running = False
        self._display_online = True

    @staticmethod
    def _find_screen_zone(cfg: AppConfig) -> str | None:
        for screen in cfg.store.screens:
            if screen.id == cfg.display.screen:
                return screen.zone
        return None

    # -- raw inputs (event loop thread) -------------------------------------------------

    def on_advertisement(self, adv: Advertisement) -> None:
        """Feed one BLE advertisement (from the scanner or the simulator)."""
        result = self.ingest.advertisement(adv)
        if isinstance(result, Sighting):
            self.tracker.sighting(result)
        elif isinstance(result, BeaconSighting):
            self.beacons_seen[result.beacon] = result.ts

    def on_app_payload(self, payload: bytes) -> None:
        """Feed one app sighting message (JSON object or batch) from the store bus."""
        self.ingest.app_payload(payload, self.tracker.sighting, now=self.clock.now())

    def _on_presence(self, ev: PresenceEvent) -> None:
        self.aggregator.presence(ev)
        if ev.tier < 1 and ev.kind is not PresenceKind.LEAVE:
            self.engine.reasons[Reason.TIER_COUNTED_ONLY.value] += 1
            return
        if self._queue is None:
            return
        try:
            self._queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.events_dropped += 1

    # -- lifecycle ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._error(f"task {task.get_name()} failed: {type(exc).__name__}: {exc}")
            _LOGGER.error("task %s failed", task.get_name(), exc_info=exc)

    def _error(self, msg: str) -> None:
        self._last_errors = [*self._last_errors[-9:], msg]

    async def start(self) -> None:
        """Open the outbox, load the model, start the display, link and loops."""
        from edge.bus.outbox import Outbox

        self._queue = asyncio.Queue(maxsize=EVENT_QUEUE_MAX)
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = await asyncio.to_thread(Outbox, self.cfg.state_dir / "outbox.sqlite3")
        if self.features.model and self.engine.scorer is None:
            await self._load_model()
        if self.features.display and self.cfg.display.enabled:
            await self._start_display()
        self._spawn(self._decision_loop(), "shelfedge-decide")
        if self.features.autotick:
            self._spawn(self._housekeeping_loop(), "shelfedge-housekeeping")
        if self.features.mqtt and self.cfg.mqtt.enabled:
            from edge.bus.mqtt import MqttLink

            self.link = MqttLink(
                self.cfg,
                self.outbox,
                state=self.state,
                on_sightings=self.on_app_payload,
                clock=self.clock.now,
            )
            self._spawn(self.link.run(), "shelfedge-mqtt")
        if self.cfg.radio.enabled:
            self._error("radio.enabled: BLE scanning is not implemented yet (issue 3)")
            _LOGGER.warning("radio.enabled is set but BLE scanning arrives with issue 3")
        self.running = True
        _LOGGER.info(
            "started site=%s device=%s model=%s", self.cfg.site, self.cfg.device, self.model_id
        )

    async def _load_model(self) -> None:
        try:
            from edge.decide.scorer import CouponScorer

            scorer = await asyncio.to_thread(
                CouponScorer.load, self.cfg.model.path, self.cfg.model.card
            )
        except (ModelError, ImportError) as exc:
            self._error(f"model: {exc}")
            _LOGGER.error("model not loaded, tier 2 falls back to distance ranking: %s", exc)
            return
        self.engine.scorer = scorer

    async def _start_display(self) -> None:
        from edge.display import DisplayController

        ctl = DisplayController(self.cfg, clock=self.clock.now)
        try:
            await asyncio.to_thread(ctl.start)
        except Exception as exc:
            self._error(f"display: {exc}")
            _LOGGER.error("display failed to start; continuing without screen: %s", exc)
            return
        self.display = ctl

    async def stop(self) -> None:
        """Orderly shutdown: decide what is queued, flush the window, drop raw state."""
        if not self.running:
            return
        now = self.clock.now()
        self.tracker.tick(now)
        try:
            await asyncio.wait_for(self.drain(), STOP_DRAIN_S)
        except TimeoutError:
            _LOGGER.warning("decision queue not drained in %.0f s; dropping the rest", STOP_DRAIN_S)
        self.running = False
        if self._queue is not None:
            while not self._queue.empty():  # raw events must not outlive the process state
                self._queue.get_nowait()
                self._queue.task_done()
                self.events_dropped += 1
        for token in list(self.tracker.live_tokens()):
            self.tracker.forget(token)
            self.engine.forget(token)
        window = self.aggregator.close(now, partial=True)
        if window is not None:
            self._pending_windows.append(window)
        await self.flush_windows()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.engine.close()
        if self.display is not None:
            await asyncio.to_thread(self.display.stop)
        if self.outbox is not None:
            await asyncio.to_thread(self.outbox.close)
        _LOGGER.info("stopped; %d aggregate windows written", self.windows_written)

    # -- loops --------------------------------------------------------------------------

    async def _decision_loop(self) -> None:
        assert self._queue is not None
        while True:
            ev = await self._queue.get()
            try:
                await self._handle(ev)
            except Exception as exc:
                self._error(f"decision: {type(exc).__name__}")
                _LOGGER.exception("decision failed for one event; continuing")
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every queued presence event has been decided (simulation back-pressure)."""
        if self._queue is not None and self.running:
            await self._queue.join()

    async def _handle(self, ev: PresenceEvent) -> Decision:
        decision = await self.engine.decide(ev)
        if decision.reason is Reason.HOLDOUT:
            self.aggregator.holdout(ev.token, ev.ts)
        offer = decision.offer
        if offer is not None:
            self.offers_made += 1
            self.offers_model_ranked += int(offer.model_ranked)
            self.aggregator.offer(offer.token, offer.coupon_id, ev.ts)
            if self.link is not None:
                self.link.publish_offer(offer.payload(), offer.expires_at)
            cue = decision.cue
            if self.display is not None and cue is not None and cue.zone == self._screen_zone:
                self.display.show_offer(cue)
        return decision

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.tick(self.clock.now())
            await self.flush_windows()

    def tick(self, now: float) -> None:
        """Time-driven work: purge raw samples, evict tokens, close due windows."""
        self.tracker.tick(now)
        if self.link is not None and self.display is not None:
            online = bool(self.link.online)
            if online != self._display_online:
                self._display_online = online
                self.display.set_online(online)
        while self.aggregator.due(now):
            window = self.aggregator.close(now)
            if window is None:
                break
            self._pending_windows.append(window)

    async def flush_windows(self) -> None:
        """Write closed windows to the outbox (worker thread) and wake the uplink."""
        while self._pending_windows:
            window = self._pending_windows[0]
            body = json.dumps(window.payload, separators=(",", ":")).encode()
            try:
                await asyncio.to_thread(self.outbox.put, window.id, "agg", body)
            except Exception as exc:
                self._error(f"outbox: {exc}")
                _LOGGER.error("outbox write failed; window kept in RAM for retry: %s", exc)
                return
            self._pending_windows.pop(0)
            self.windows_written += 1
            day = self.engine.local_time(window.start).date().isoformat()
            self.windows_today = {day: self.windows_today.get(day, 0) + 1}
            if self.link is not None:
                self.link.notify_outbox()

    async def run_forever(self, stop: asyncio.Event, reload: asyncio.Event) -> None:
        """Run until ``stop`` is set; re-read the config whenever ``reload`` is set."""
        await self.start()
        self._notify("READY=1")
        try:
            while not stop.is_set():
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(reload.wait())]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
                if reload.is_set():
                    reload.clear()
                    self.reload()
        finally:
            self._notify("STOPPING=1")
            await self.stop()

    def set_keys(self, keys: dict[str, str], version: int) -> None:
        """Install site day keys (``set_keys`` command, or the demo acting as central)."""
        fresh = DayKeys.from_hex(keys, version)
        self.keys.replace({d: fresh.key(d) for d in fresh.days}, version)

    # -- config reload ------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file; keep the running config when the new one is invalid."""
        if self.config_path is None:
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self._error("reload rejected: invalid config")
            _LOGGER.error("reload rejected, keeping the running config:\n%s", exc)
            return False
        old = self.cfg
        self._pending_restart = [s for s in RESTART_SECTIONS if getattr(old, s) != getattr(new, s)]
        self.engine.cfg = new
        self.engine.set_campaigns(list(new.campaigns))
        if new.policy != old.policy:
            holdout = self.engine.policy.holdout  # keep today's salt: membership stays stable
            holdout.share = new.policy.holdout_share
            self.engine.policy = Policy(new, holdout)
        if self.display is not None:
            self.display.set_campaigns(list(new.campaigns))
        self.cfg = new
        self._config_hash = config_hash(new)
        if self._pending_restart:
            _LOGGER.warning(
                "config reloaded; changes to %s take effect after a restart",
                ", ".join(self._pending_restart),
            )
        else:
            _LOGGER.info("config reloaded")
        return True

    # -- introspection ------------------------------------------------------------------

    @property
    def model_id(self) -> str | None:
        """Id of the model in use, if any."""
        scorer = self.engine.scorer
        return None if scorer is None else scorer.model_id

    def raw_holdings(self) -> RawHoldings:
        """Counts of raw per-token state held right now (never the values)."""
        r = self.tracker.retention(self.clock.now())
        return RawHoldings(
            tokens=r.tokens,
            samples=r.samples,
            oldest_sample_age_s=r.oldest_sample_age_s,
            contributions=self.aggregator.contributions_held(),
            policy_tokens=self.engine.policy.tokens_held(),
            queued_events=0 if self._queue is None else self._queue.qsize(),
        )

    def state(self, *, local: bool = False) -> dict[str, Any]:
        """The device state as published on ``state`` (no raw signals).

        Live per-zone counts of opted-in phones are not noised, so they are included only for
        the local status view (``local=True``), never in what is published.
        """
        budget = self.aggregator.budget
        today = self.engine.local_time(self.clock.now()).date().isoformat()
        raw = self.raw_holdings()
        health: dict[str, Any] = {
            "ingest": self.ingest.counters.as_dict(),
            "presence": {
                "live_tokens": raw.tokens,
                "raw_samples": raw.samples,
                "oldest_raw_sample_age_s": round(raw.oldest_sample_age_s, 1),
            },
            "decide": {
                "reasons": dict(self.engine.reasons),
                "offers": self.offers_made,
                "model_ranked": self.offers_model_ranked,
                "model_errors": self.engine.model_errors,
                "events_dropped": self.events_dropped,
            },
            "beacons_heard": len(self.beacons_seen),
            "outbox": None if self.outbox is None else self.outbox.stats(),
            "display": None if self.display is None else self.display.health(),
            "mqtt": None if self.link is None else self.link.health(),
            "last_errors": list(self._last_errors),
            "pending_restart": list(self._pending_restart),
        }
        if local:
            health["presence"]["zone_counts"] = self.tracker.zone_counts()
        return {
            "online": True,
            "version": __version__,
            "site": self.cfg.site,
            "device": self.cfg.device,
            "config_hash": self._config_hash,
            "model_id": self.model_id,
            "uptime_s": round(time.monotonic() - self._started_mono, 1),
            "health": health,
            "privacy": {
                "k": budget.k,
                "window_s": budget.window_s,
                "raw_retention_s": self.cfg.privacy.raw_retention_s,
                "epsilon_per_day": budget.epsilon_per_day,
                "epsilon_per_window": budget.epsilon_per_window,
                "epsilon_spent_today": budget.spent(self.windows_today.get(today, 0)),
                "anonymous_footfall": self.cfg.privacy.anonymous_footfall,
            },
        }

    @staticmethod
    def _notify(message: str) -> None:
        """systemd notify protocol (a few lines; no dependency needed for one datagram)."""
        import os
        import socket

        addr = os.environ.get("NOTIFY_SOCKET")
        if not addr:
            return
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode(), addr)
