"""The MQTT link as a supervised component.

``MqttLink.run`` owns the connection and its reconnect backoff; this adapter runs it under
the supervisor, reports its health, and beats progress while the link's task is alive. A
bug that escapes the link's own loop fails the component, and the supervisor starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib

from edge.bus.mqtt import MqttLink
from edge.bus.session import LinkState
from edge.config.models import AppConfig
from edge.lifecycle import ComponentHealth, Progress

BEAT_S = 1.0


class LinkPart:
    """Runs the device's ``MqttLink``."""

    name = "mqtt"
    essential = False

    def __init__(self, link: MqttLink, cfg: AppConfig) -> None:
        self.link = link
        self._mqtt = cfg.mqtt

    async def run(self, progress: Progress) -> None:
        """Run the link; beat progress while it runs."""
        task = asyncio.create_task(self.link.run(), name="shelfedge-mqtt-link-owner")
        try:
            while not task.done():
                progress()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), BEAT_S)
            task.result()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def health(self) -> ComponentHealth:
        """The link's counters (never payloads)."""
        h = self.link.health()
        return ComponentHealth(self.link.link_state is LinkState.CONNECTED, h)

    def apply_config(self, cfg: AppConfig) -> bool:
        """Broker settings take effect after a restart."""
        return cfg.mqtt != self._mqtt
