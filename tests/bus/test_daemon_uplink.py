"""The seam with the daemon: ``Application`` opens the outbox, runs the link, and its state
(with the link's and the outbox's health) goes out retained; stopping says goodbye."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.daemon.app import Application, Features
from edge.daemon.state import unpinned_fields
from tests.bus.support import make_cfg, until
from tests.conftest import Mosquitto, MqttCapture

pytestmark = pytest.mark.timeout(30)


async def test_application_runs_the_link_and_publishes_its_state(
    state_dir: Path, mosquitto: Mosquitto, mqtt_capture: Callable[[str], MqttCapture]
) -> None:
    cfg = make_cfg(state_dir, mosquitto.host, mosquitto.port)
    cfg = cfg.model_copy(update={"display": cfg.display.model_copy(update={"enabled": False})})
    root = f"shelfedge/v1/{cfg.site}/{cfg.device}"
    cap = mqtt_capture(f"{root}/#")
    app = Application(cfg, features=Features(display=False, mqtt=True, model=False, autotick=False))
    await app.start()
    try:
        await until(lambda: app.link is not None and app.link.online)
        (msg,) = await cap.wait_for(lambda ms: len(ms) == 1)
        state = json.loads(msg.payload)
        assert msg.topic == f"{root}/state" and state["online"] is True
        assert state["health"]["components"]["mqtt"]["state"] == "running"
        assert state["health"]["outbox"]["pending"] == 0
        assert unpinned_fields(state) == []  # nothing outside the pinned list is published
        await asyncio.to_thread(
            cap.publish, f"shelfedge/v1/{cfg.site}/sightings", b'{"not": "a sighting"}'
        )
        await until(lambda: app.link.health()["sightings"]["received"] == 1)
        assert app.running  # a malformed sighting is the ingest's problem, never a crash
    finally:
        await app.stop()
    await cap.wait_for(lambda ms: len(ms) >= 2 and ms[-1].topic == f"{root}/state")
    last = json.loads(cap.messages(f"{root}/state")[-1].payload)
    assert last["online"] is False and last["reason"] == "shutdown"
    assert unpinned_fields(last) == []
    assert (state_dir / "outbox.sqlite3").exists()
