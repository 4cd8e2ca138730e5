"""The composition root: builds the parts, registers them, routes events between them.

Raw inputs arrive on the event loop thread (``on_advertisement``, ``on_app_payload``) and
flow synchronously through ingest and presence (cheap, no I/O). Presence events are routed
to the aggregator and, for ENTER/DWELL of opted-in tokens, to the decision worker's bounded
queue; LEAVE forgets the token in the policy at once. Every long-running part is a
``Component`` owned by the ``Supervisor``; every structure holding raw data is a
``RawHolder`` in one ``RawRegistry``; every change to the running appliance goes through
the ``DeviceService``. ``tick`` drives time-based work from the wall clock (housekeeping
component) or the simulator.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from edge import __version__
from edge.bus.outbox import Outbox
from edge.bus.spool import WindowSpool
from edge.config import AppConfig
from edge.decide.engine import Decision, DecisionEngine, Scorer
from edge.decide.model_worker import ModelWorker
from edge.decide.policy import HoldoutGroup, Policy, Reason
from edge.decide.worker import DecisionWorker
from edge.events import (
    Advertisement,
    BeaconSighting,
    PresenceEvent,
    PresenceKind,
    Sighting,
)
from edge.presence.calibration import BeaconStats
from edge.presence.tracker import PresenceTracker
from edge.privacy.budget import Budget, PrivacyFigures
from edge.privacy.holders import RawRegistry
from edge.privacy.ledger import EpsilonLedger
from edge.privacy.release import close_all, make_aggregator
from edge.radio import DayKeys, Ingest

from .clock import Clock, SystemClock
from .housekeeping import Housekeeping
from .service import DeviceService
from .state import StateView
from .supervisor import Supervisor
from .systemd import notify, watchdog_interval_s

if TYPE_CHECKING:
    from edge.bus.mqtt import MqttLink
    from edge.bus.router import Inbound
    from edge.commands.processor import CommandProcessor
    from edge.display.component import DisplayPart

_LOGGER = logging.getLogger(__name__)
STOP_DRAIN_S = 2.0
WATCHDOG_STALL_S = 20.0
DISPLAY_START_S = 15.0


@dataclass(frozen=True, slots=True)
class Features:
    """Which optional parts to run (the demo and tests switch some off)."""

    display: bool = True
    mqtt: bool = True
    model: bool = True
    autotick: bool = True
    control: bool = True


@dataclass(slots=True)
class Counters:
    """Process-local counters (shown in the local status, never published)."""

    offers: int = 0
    offers_model_ranked: int = 0


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
        supervisor: Supervisor | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        mono = self.clock.monotonic
        self.features = features
        self.counters = Counters()
        self.beacons_seen: dict[str, float] = {}
        self.beacon_stats = BeaconStats(cfg, monotonic=self.clock.monotonic)
        self.registry = RawRegistry()
        self.supervisor = supervisor or Supervisor(
            stall_after_s=WATCHDOG_STALL_S,
            watchdog_every_s=watchdog_interval_s(),
        )
        retention = cfg.privacy.raw_retention_s
        self._tz = ZoneInfo(cfg.timezone)

        self.keys = DayKeys.from_hex(cfg.privacy.day_keys, retention_s=retention, monotonic=mono)
        self.ingest = Ingest(cfg, self.keys, monotonic=mono)
        self.tracker = PresenceTracker(cfg, self._on_presence, monotonic=mono)
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = EpsilonLedger(
            cfg.state_dir / "privacy-ledger.sqlite3",
            Budget.from_config(cfg),
            today=self._local_day(self.clock.now()),
        )
        self.aggregator = make_aggregator(
            cfg,
            ledger=self.ledger,
            local_day=self._local_day,
            monotonic=mono,
            started=self.clock.now(),
        )
        # The demo seeds the holdout salt; production salts come from ``secrets``.
        holdout = (
            HoldoutGroup(cfg.policy.holdout_share)
            if holdout_salt is None
            else HoldoutGroup(cfg.policy.holdout_share, holdout_salt)
        )
        self.policy = Policy(cfg, holdout, monotonic=mono)
        self.model = ModelWorker(
            cfg, preloaded=scorer, errors=lambda: self.engine.model_errors, monotonic=mono
        )
        self.engine = DecisionEngine(
            cfg, self.tracker.layout, scorer_source=self.model.current, policy=self.policy
        )
        self.decisions = DecisionWorker(
            self.engine,
            self._on_decision,
            self.tracker.is_live,
            retention_s=retention,
            monotonic=mono,
        )
        for holder in (
            self.keys,
            self.tracker,
            self.policy,
            self.decisions,
            self.aggregator,
            self.beacon_stats,
            self.ingest.pending_tlm,
        ):
            self.registry.register(holder)

        self.outbox: Outbox | None = None
        self.spool: WindowSpool | None = None
        self.display: DisplayPart | None = None
        self.link: MqttLink | None = None
        self.state = StateView(
            cfg=cfg,
            supervisor=self.supervisor,
            registry=self.registry,
            privacy=self._privacy_figures,
            model_id=lambda: self.model.model_id,
            outbox=lambda: None if self.outbox is None else self.outbox.stats(),
            beacons_heard=lambda: len(self.beacons_seen),
            local_counters=self._local_counters,
            monotonic=mono,
        )
        self.service = DeviceService(
            cfg=cfg,
            config_path=config_path,
            keys=self.keys,
            engine=self.engine,
            aggregator=self.aggregator,
            model=self.model,
            registry=self.registry,
            supervisor=self.supervisor,
            state=self.state,
            screen=lambda: self.display,
            calibration=self._calibration,
            monotonic=mono,
        )
        self.commands: CommandProcessor | None = None
        self._command_tasks: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Event | None = None
        self.restart_requested = False
        self.running = False

    @property
    def cfg(self) -> AppConfig:
        """The running config (changed only through the device service)."""
        return self.service.cfg

    # -- routing (event loop thread) ------------------------------------------------------

    def on_advertisement(self, adv: Advertisement) -> None:
        """Feed one BLE advertisement (from the scanner or the simulator)."""
        self.route(self.ingest.advertisement(adv))

    def on_app_payload(self, payload: bytes) -> None:
        """Feed one app sighting message (JSON object or batch) from the store bus."""
        self.ingest.app_payload(payload, self.route, now=self.clock.now())

    def route(self, item: Sighting | BeaconSighting | PresenceEvent | None) -> None:
        """Send one event to the stage that takes it."""
        match item:
            case Sighting():
                self.tracker.sighting(item)
            case BeaconSighting(beacon=beacon, receiver=receiver, rssi=rssi, ts=ts):
                self.beacons_seen[beacon] = ts
                self.beacon_stats.add(beacon, receiver, rssi, ts)
            case PresenceEvent(kind=PresenceKind.LEAVE):
                self.aggregator.presence(item)
                self.engine.forget(item.token)  # at once: a LEAVE never waits in a queue
            case PresenceEvent(tier=tier) if tier < 1:
                self.aggregator.presence(item)
                self.engine.count(Reason.TIER_COUNTED_ONLY)
            case PresenceEvent():
                self.aggregator.presence(item)
                self.decisions.submit(item)
            case None:
                pass

    def _on_presence(self, ev: PresenceEvent) -> None:
        self.route(ev)

    def _on_command(self, msg: Inbound) -> None:
        name = msg.topic.rsplit("/", 1)[-1]
        task = asyncio.create_task(
            self._answer(name, msg.payload, msg.response_topic, msg.correlation_data)
        )
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    async def _answer(
        self, name: str, payload: bytes, response_topic: str | None, correlation: bytes | None
    ) -> None:
        """Run one command and put its ack in the outbox (delivered at least once)."""
        assert self.commands is not None and self.outbox is not None
        ack = await self.commands.handle(name, payload)
        body = ack.model_dump_json().encode()
        await asyncio.to_thread(
            self.outbox.put,
            f"ack-{uuid.uuid4()}",
            "ack",
            body,
            full_topic=response_topic,
            correlation=correlation,
        )
        if self.link is not None:
            self.link.notify_outbox()
            if ack.status == "ok" and name != "status":
                self.link.publish_state()  # the config hash / model id may have changed

    def _request_restart(self) -> None:
        """The ``restart`` command: stop cleanly; the exit code asks systemd for a restart."""
        self.restart_requested = True
        if self._stop is not None:
            asyncio.get_running_loop().call_later(1.0, self._stop.set)  # let the ack go out

    async def _on_decision(self, ev: PresenceEvent, decision: Decision) -> None:
        if decision.reason is Reason.HOLDOUT:
            self.aggregator.holdout(ev.token, ev.ts)
        offer = decision.offer
        if offer is None:
            return
        self.counters.offers += 1
        self.counters.offers_model_ranked += int(offer.model_ranked)
        self.aggregator.offer(offer.token, offer.coupon_id, ev.ts)
        if self.link is not None:
            self.link.publish_offer(offer.payload(), offer.expires_at)
        if self.display is not None and decision.cue is not None:
            self.display.show_offer(decision.cue)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the outbox, load the model, start every component under the supervisor."""
        cfg = self.cfg
        outbox = await asyncio.to_thread(Outbox.open_or_recover, cfg.state_dir / "outbox.sqlite3")
        self.outbox = outbox
        self.spool = WindowSpool(outbox.put, monotonic=self.clock.monotonic)
        sup = self.supervisor
        if self.features.model and self.model.current() is None:
            await self.model.try_load()
        if self.features.model:
            sup.add(self.model)
        sup.add(self.decisions)
        if self.features.autotick:
            sup.add(Housekeeping(self.housekeep))
        if self.features.display and cfg.display.enabled:
            from edge.display.component import DisplayPart

            self.display = DisplayPart(cfg, clock=self.clock.now)
            sup.add(self.display)
            if not await self.display.wait_running(DISPLAY_START_S):
                _LOGGER.error(
                    "display not up after %.0f s; the supervisor keeps trying", DISPLAY_START_S
                )
        if self.features.mqtt and cfg.mqtt.enabled:
            from edge.bus.component import LinkPart
            from edge.bus.mqtt import MqttLink
            from edge.commands.processor import CommandProcessor
            from edge.commands.store import CommandStore

            self.commands = CommandProcessor(
                cfg,
                self.service,
                CommandStore(cfg.state_dir / "commands.sqlite3"),
                clock=self.clock.now,
                on_restart=self._request_restart,
            )
            self.link = MqttLink(
                cfg,
                outbox,
                state=self.state.published,
                on_sightings=self.on_app_payload,
                on_command=self._on_command,
                clock=self.clock.now,
                monotonic=self.clock.monotonic,
            )
            self.registry.register(self.link)
            sup.add(LinkPart(self.link, cfg))
        if self.features.control:
            from .control import ControlServer

            sup.add(ControlServer(cfg.state_dir / "control.sock", self.service.dispatch))
        if cfg.mqtt.insecure:
            _LOGGER.warning(
                "mqtt to %s without TLS: configure mqtt.tls (see docs/broker.md)", cfg.mqtt.host
            )
        if cfg.radio.enabled:
            from edge.radio.scanner import scanner_parts

            for scanner in scanner_parts(
                cfg, self.on_advertisement, clock=self.clock.now, monotonic=self.clock.monotonic
            ):
                self.registry.register(scanner)  # bleak's per-device map is raw
                sup.add(scanner)  # never blocks: a missing adapter is waited for in its task
        sup.start_watchdog()
        self.running = True
        _LOGGER.info(
            "shelfedge %s started: site=%s device=%s config=%s model=%s parts=%s",
            __version__,
            cfg.site,
            cfg.device,
            self.state.published()["config_hash"],
            self.model.model_id,
            ",".join(sup.names()),
        )

    async def stop(self) -> None:
        """Orderly shutdown: decide what is queued, flush the window, drop all raw state."""
        if not self.running:
            return
        now = self.clock.now()
        self.tracker.tick(now)
        try:
            await asyncio.wait_for(self.decisions.drain(), STOP_DRAIN_S)
        except TimeoutError:
            _LOGGER.warning("decision queue not drained in %.0f s; dropping the rest", STOP_DRAIN_S)
        self.running = False
        self.decisions.clear()
        # Departing tokens emit LEAVE (their dwell is counted) before the window closes.
        self.registry.purge(math.inf)
        for window in close_all(self.aggregator, now):  # the day (and period) so far
            if self.spool is not None:
                self.spool.add(window)
        await self.flush_windows()
        await self.drain_outbox(STOP_DRAIN_S)
        if self._command_tasks:
            await asyncio.wait(set(self._command_tasks), timeout=STOP_DRAIN_S)
        await self.supervisor.stop()
        self.registry.purge(math.inf)
        self.engine.close()
        if self.outbox is not None:
            await asyncio.to_thread(self.outbox.close)
        self.ledger.close()
        written = 0 if self.spool is None else self.spool.written
        _LOGGER.info("shelfedge stopped: %d aggregate windows written", written)

    async def run_forever(self, stop: asyncio.Event, reload: asyncio.Event) -> None:
        """Run until ``stop`` is set; re-read the config whenever ``reload`` is set."""
        self._stop = stop
        await self.start()
        notify("READY=1")
        try:
            while not stop.is_set():
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(reload.wait())]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
                if reload.is_set():
                    reload.clear()
                    await self.service.reload()
        finally:
            notify("STOPPING=1")
            await self.stop()

    # -- time-driven work -------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Evict tokens past TTL, purge every raw holder, close due windows."""
        self.tracker.tick(now)
        self.registry.purge(self.clock.monotonic())
        if self.link is not None and self.display is not None:
            self.display.set_online(bool(self.link.online))
        while self.aggregator.due(now):
            window = self.aggregator.close(now)
            if window is not None and self.spool is not None:
                self.spool.add(window)
            if not self.aggregator.due(now):
                break

    async def flush_windows(self) -> None:
        """Write closed windows to the outbox (worker thread) and wake the uplink."""
        if self.spool is None:
            return
        if await self.spool.flush() and self.link is not None:
            self.link.notify_outbox()

    async def housekeep(self) -> None:
        """One housekeeping turn (the supervised loop calls this every second)."""
        self.tick(self.clock.now())
        await self.flush_windows()

    async def drain_outbox(self, within_s: float) -> int:
        """While the broker is up, give the uplink up to ``within_s`` to empty the outbox
        (a clean stop, or the end of a demo); returns the rows still pending."""
        link, outbox = self.link, self.outbox
        if link is None or outbox is None:
            return 0
        for _ in range(max(1, math.ceil(within_s / 0.05))):
            if outbox.pending_count() == 0 or not link.online:
                break
            await asyncio.sleep(0.05)
        return outbox.pending_count()

    async def drain(self) -> None:
        """Wait until every queued presence event has been decided (simulation back-pressure)."""
        if self.running:
            await self.decisions.drain()

    # -- introspection ----------------------------------------------------------------------

    def _local_day(self, ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, self._tz).date().isoformat()

    def _privacy_figures(self) -> PrivacyFigures:
        return self.aggregator.privacy_figures(self.clock.now())

    def _local_counters(self) -> dict[str, Any]:
        return {
            "zone_counts": self.tracker.zone_counts(),
            "offers": self.counters.offers,
            "offers_model_ranked": self.counters.offers_model_ranked,
            "decision_reasons": dict(self.engine.reasons),
            "ingest": self.ingest.counters.as_dict(),
            "windows": None if self.spool is None else self.spool.stats(),
            "windows_withheld": self.aggregator.windows_withheld,
            "cells_suppressed": self.aggregator.cells_suppressed_total,
            "events_dropped": self.decisions.dropped,
        }

    def _calibration(self, seconds: float, record: bool) -> dict[str, Any]:
        """Beacon statistics and zone occupancy (counts ≥ k only) for ``calibrate``."""
        k = self.cfg.privacy.k
        out: dict[str, Any] = {
            "seconds": seconds,
            "beacons": self.beacon_stats.report(seconds),
            "zones": {z: n for z, n in self.tracker.zone_counts().items() if n >= k},
            "k": k,
        }
        if record:
            out["samples"] = [
                {"ts": s.ts, "beacon": s.beacon, "receiver": s.receiver, "rssi": s.rssi}
                for s in self.beacon_stats.samples(seconds)
            ]
        return out

    def raw_total(self) -> int:
        """Raw records held right now, over every holder (0 after shutdown)."""
        return self.registry.total(self.clock.monotonic())

    def live_zones(self) -> dict[bytes, str | None]:
        """Token → estimated zone, for the simulator's evaluation against ground truth only."""
        return {t: self.tracker.zone_of(t) for t in self.tracker.live_tokens()}
