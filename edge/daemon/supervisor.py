"""The supervisor: owns every component's task, restarts failures, feeds the watchdog.

Each component runs as one task. When ``run`` raises, the component is restarted after a
capped exponential backoff with jitter; its restart count and the class of its last error
(never the message, which may carry data) go into ``status``. A component that fails
``max_failures`` times without a healthy stretch of ``healthy_after_s`` in between is marked
``failed`` and left alone while the rest keep serving. ``WATCHDOG=1`` is sent to systemd only
while every essential component has reported progress within ``stall_after_s``, so a stalled
loop gets the whole process restarted by systemd.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.lifecycle import Component, ComponentHealth

from .systemd import notify

_LOGGER = logging.getLogger(__name__)


class RunState(enum.StrEnum):
    """Where a supervised component is in its lifecycle."""

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How failures are retried."""

    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: float = 0.5  # share of the delay that is random
    max_failures: int = 8
    healthy_after_s: float = 60.0  # a run this long resets the failure count


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """The supervisor's view of one component (what ``status`` shows)."""

    name: str
    essential: bool
    state: RunState
    restarts: int
    last_error: str | None
    last_progress_age_s: float | None
    health: ComponentHealth

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "state": self.state.value,
            "essential": self.essential,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "last_progress_age_s": (
                None if self.last_progress_age_s is None else round(self.last_progress_age_s, 1)
            ),
            "ok": self.health.ok and self.state is RunState.RUNNING,
            "detail": dict(self.health.detail),
        }


@dataclass(slots=True)
class _Slot:
    component: Component
    state: RunState = RunState.STARTING
    restarts: int = 0
    failures: int = 0
    last_error: str | None = None
    last_progress: float | None = None
    task: asyncio.Task[None] | None = None
    restart_now: asyncio.Event = field(default_factory=asyncio.Event)


class Supervisor:
    """Runs components, restarts them when they fail and pings the systemd watchdog."""

    def __init__(
        self,
        *,
        policy: RestartPolicy = RestartPolicy(),
        stall_after_s: float = 30.0,
        watchdog_every_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._policy = policy
        self._stall_after_s = stall_after_s
        self._watchdog_every_s = watchdog_every_s
        self._mono = monotonic
        self._rng = rng or random.Random()
        self._slots: dict[str, _Slot] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self._stall_logged: set[str] = set()
        self.watchdog_pings = 0

    def add(self, component: Component) -> None:
        """Start supervising a component (its task starts at once on the running loop)."""
        name = component.name
        if name in self._slots:
            raise ValueError(f"component {name!r} is already supervised")
        slot = _Slot(component)
        self._slots[name] = slot
        slot.task = asyncio.create_task(self._supervise(slot), name=f"shelfedge-{name}")

    def start_watchdog(self) -> None:
        """Begin sending ``WATCHDOG=1`` every ``watchdog_every_s`` while all is well."""
        if self._watchdog_every_s is not None and self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watchdog_loop(), name="shelfedge-watchdog")

    def names(self) -> list[str]:
        """Supervised component names, in the order they were added."""
        return list(self._slots)

    def component(self, name: str) -> Component | None:
        """The supervised component of that name, if any."""
        slot = self._slots.get(name)
        return None if slot is None else slot.component

    def restart(self, name: str) -> None:
        """Ask a running component to restart (e.g. to apply a config it cannot take live)."""
        slot = self._slots.get(name)
        if slot is not None:
            slot.restart_now.set()

    def statuses(self) -> list[ComponentStatus]:
        """The supervisor's view of every component."""
        now = self._mono()
        out = []
        for name, slot in self._slots.items():
            try:
                health = slot.component.health()
            except Exception as exc:  # health must never take status down
                health = ComponentHealth(False, {"health_error": type(exc).__name__})
            age = None if slot.last_progress is None else now - slot.last_progress
            out.append(
                ComponentStatus(
                    name,
                    slot.component.essential,
                    slot.state,
                    slot.restarts,
                    slot.last_error,
                    age,
                    health,
                )
            )
        return out

    def all_progressing(self) -> bool:
        """True when every essential component reported progress within the stall bound."""
        now = self._mono()
        ok = True
        for name, slot in self._slots.items():
            if not slot.component.essential:
                continue
            stalled = (
                slot.state is not RunState.RUNNING
                or slot.last_progress is None
                or now - slot.last_progress > self._stall_after_s
            )
            if stalled:
                ok = False
                if name not in self._stall_logged:
                    self._stall_logged.add(name)
                    _LOGGER.error(
                        "component %s made no progress for %.0f s; watchdog pings stop",
                        name,
                        self._stall_after_s,
                    )
            else:
                self._stall_logged.discard(name)
        return ok

    def watchdog_tick(self) -> bool:
        """One watchdog decision: ping systemd when every essential loop progresses."""
        if not self.all_progressing():
            return False
        self.watchdog_pings += 1
        notify("WATCHDOG=1")
        return True

    async def stop(self) -> None:
        """Cancel every component and the watchdog, and wait for them to finish."""
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        if self._watchdog is not None:
            tasks.append(self._watchdog)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for slot in self._slots.values():
            slot.state = RunState.STOPPED
        self._watchdog = None

    # -- internals ----------------------------------------------------------------------

    def _progress(self, slot: _Slot) -> Callable[[], None]:
        def progress() -> None:
            slot.last_progress = self._mono()
            if slot.state is RunState.STARTING:
                slot.state = RunState.RUNNING

        return progress

    async def _supervise(self, slot: _Slot) -> None:
        comp = slot.component
        progress = self._progress(slot)
        while True:
            slot.state = RunState.STARTING
            slot.restart_now.clear()
            started = self._mono()
            run = asyncio.create_task(comp.run(progress), name=f"shelfedge-{comp.name}-run")
            restart = asyncio.create_task(slot.restart_now.wait())
            try:
                await asyncio.wait({run, restart}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                run.cancel()
                restart.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await run
                raise
            restart.cancel()
            if not run.done():  # restart requested: cancel this run, start a fresh one
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await run
                slot.restarts += 1
                _LOGGER.info("component %s restarted on request", comp.name)
                continue
            exc = None if run.cancelled() else run.exception()
            if exc is None:
                slot.state = RunState.STOPPED
                _LOGGER.info("component %s finished", comp.name)
                return
            if self._mono() - started >= self._policy.healthy_after_s:
                slot.failures = 0
            slot.failures += 1
            slot.last_error = type(exc).__name__
            if slot.failures >= self._policy.max_failures:
                slot.state = RunState.FAILED
                _LOGGER.error(
                    "component %s failed %d times in a row (%s); giving up, the rest keep serving",
                    comp.name,
                    slot.failures,
                    slot.last_error,
                    exc_info=exc,
                )
                return
            delay = self._backoff(slot.failures)
            slot.state = RunState.BACKOFF
            slot.restarts += 1
            _LOGGER.error(
                "component %s failed (%s); restart %d in %.1f s",
                comp.name,
                slot.last_error,
                slot.restarts,
                delay,
                exc_info=exc,
            )
            await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        p = self._policy
        delay: float = min(p.cap_s, p.base_s * 2.0 ** (failures - 1))
        return delay * (1 - p.jitter) + delay * p.jitter * self._rng.random()

    async def _watchdog_loop(self) -> None:
        assert self._watchdog_every_s is not None
        while True:
            self.watchdog_tick()
            await asyncio.sleep(self._watchdog_every_s)
