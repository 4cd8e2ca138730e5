"""Helpers for the bus tests: a per-test config, running a link as a task, polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from edge.bus import MqttLink
from edge.config.models import AppConfig, Mqtt
from tests.helpers import demo_config


def make_cfg(state_dir: Path, host: str, port: int) -> AppConfig:
    # A fresh site and device per test: retained messages on the session broker never collide.
    suffix = uuid.uuid4().hex[:10]
    return demo_config(
        site=f"site-{suffix}",
        device=f"dev-{suffix}",
        state_dir=state_dir,
        mqtt=Mqtt(enabled=True, host=host, port=port, keepalive_s=5),
    )


@contextlib.asynccontextmanager
async def running(link: MqttLink, *, wait_online: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(link.run(), name="test-mqtt-link")
    try:
        if wait_online:
            await until(lambda: link.online)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(cond: Callable[[], bool], within: float = 8.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)
