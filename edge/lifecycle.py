"""The one lifecycle every long-running part of the appliance shares.

A component is owned by the ``Supervisor``: it runs ``run(progress)`` as a task, restarts
it with capped backoff when it raises, and reads ``health()`` for ``status``. Calling
``progress()`` tells the watchdog the component's loop is alive; an essential component
that stops calling it stops the systemd watchdog pings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from edge.config.models import AppConfig

Progress = Callable[[], None]


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """A component's own view of itself: ok or not, plus a few JSON-safe figures."""

    ok: bool
    detail: Mapping[str, object] = field(default_factory=dict)


class Component(Protocol):
    """A supervised part: MQTT link, display, model worker, housekeeping, BLE scanner."""

    @property
    def name(self) -> str:
        """Stable name used in logs and ``status``."""
        ...

    @property
    def essential(self) -> bool:
        """True when a stall must stop the watchdog pings (the process gets restarted)."""
        ...

    async def run(self, progress: Progress) -> None:
        """Run until cancelled; call ``progress()`` at least every loop turn. Raise = failed."""
        ...

    def health(self) -> ComponentHealth:
        """Current health (cheap; called for every ``status``)."""
        ...

    def apply_config(self, cfg: AppConfig) -> bool:
        """Apply a new config live; return True when a restart is needed for it to count."""
        ...
