"""MqttLink against a real Mosquitto: retained state and Last Will, outbox drain after PUBACK,
app sightings, broker outages, offers from RAM. Some tests call the broker fixture's blocking
``start()`` and build a capture on purpose while the link's event loop is frozen: the link
cannot publish until the loop runs again, so the new subscriber is in place first.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edge.bus import LinkState, MqttLink, Outbox
from edge.config.models import AppConfig
from tests.bus.support import make_cfg, running, until
from tests.conftest import Captured, Mosquitto, MqttCapture

pytestmark = pytest.mark.timeout(30)

Capture = Callable[[str], MqttCapture]


class Harness:
    """A link, its outbox, what it handed to on_sightings, and a fake-able wall clock."""

    def __init__(self, cfg: AppConfig) -> None:
        self.cfg = cfg
        self.now = time.time()
        self.outbox = Outbox(cfg.state_dir / "outbox.sqlite3")
        self.sightings: list[tuple[bytes, int]] = []
        self.link = MqttLink(
            cfg,
            self.outbox,
            state=lambda: {"online": True, "version": "test", "answer": 42},
            on_sightings=lambda p: self.sightings.append((p, threading.get_ident())),
            clock=lambda: self.now,
            backoff_base_s=0.1,
            backoff_max_s=0.5,
        )
        self.root = f"shelfedge/v1/{cfg.site}/{cfg.device}"

    def put(self, n: int, start: int = 0) -> list[int]:
        seqs = [self.outbox.put(f"w{i}", "agg", b'{"i":%d}' % i) for i in range(start, start + n)]
        self.link.notify_outbox()
        return seqs


@pytest.fixture
async def harness(state_dir: Path, mosquitto: Mosquitto) -> AsyncIterator[Harness]:
    h = Harness(make_cfg(state_dir, mosquitto.host, mosquitto.port))
    yield h
    h.outbox.close()


def states(msgs: list[Captured]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in msgs]


async def test_connect_publishes_retained_online_state(
    harness: Harness, mqtt_capture: Capture
) -> None:
    live = mqtt_capture(f"{harness.root}/state")
    async with running(harness.link):
        await live.wait_for(lambda ms: any(s["online"] for s in states(ms)))
        late = mqtt_capture(f"{harness.root}/state")  # subscribes after: gets the retained one
        (msg,) = await late.wait_for(lambda ms: len(ms) == 1)
        assert msg.retain and msg.qos == 1
        body = json.loads(msg.payload)
        assert body["online"] is True and body["answer"] == 42
        assert body["site"] == harness.cfg.site and body["device"] == harness.cfg.device
        health = harness.link.health()
        assert health["state"] == "connected" and harness.link.link_state is LinkState.CONNECTED
        assert health["connects"] == 1 and health["last_error"] is None
        json.dumps(health)  # plain data, fit for the device state


async def test_outbox_rows_published_in_seq_order_then_removed(
    harness: Harness, mqtt_capture: Capture
) -> None:
    cap = mqtt_capture(f"{harness.root}/agg")
    seqs = harness.put(25)  # before the link runs: delivered on connect
    async with running(harness.link):
        await cap.wait_for(lambda ms: len(ms) >= 25)
        await until(lambda: harness.outbox.pending_count() == 0)
        harness.put(5, start=25)  # while running: notify_outbox wakes the drain
        msgs = await cap.wait_for(lambda ms: len(ms) >= 30)
        await until(lambda: harness.outbox.pending_count() == 0)
    assert [json.loads(m.payload)["i"] for m in msgs] == list(range(30))
    assert all(m.qos == 1 and not m.retain for m in msgs)
    props = dict(msgs[0].user_properties)
    assert props == {"id": "w0", "seq": str(seqs[0])}
    assert harness.outbox.stats()["delivered_total"] == 30
    assert harness.link.health()["published"] == 30


async def test_app_sightings_reach_on_sightings_on_the_loop_thread(
    harness: Harness, mqtt_capture: Capture
) -> None:
    peer = mqtt_capture(f"shelfedge/v1/{harness.cfg.site}/nothing-here")
    loop_thread = threading.get_ident()
    async with running(harness.link):
        await until(lambda: harness.link.health()["sightings"]["subscribed"])
        for i in range(3):
            await asyncio.to_thread(
                peer.publish, f"shelfedge/v1/{harness.cfg.site}/sightings", b"[%d]" % i
            )
        await until(lambda: len(harness.sightings) == 3)
    assert [p for p, _ in harness.sightings] == [b"[0]", b"[1]", b"[2]"]
    assert {t for _, t in harness.sightings} == {loop_thread}
    assert harness.link.health()["sightings"]["received"] == 3


async def test_broker_outage_keeps_rows_and_delivers_them_after_restart(
    harness: Harness, mosquitto: Mosquitto, mqtt_capture: Capture
) -> None:
    try:
        async with running(harness.link):
            harness.put(3)
            await until(lambda: harness.outbox.pending_count() == 0)
            mosquitto.stop()
            await until(lambda: not harness.link.online)
            assert harness.link.health()["state"] in ("disconnected", "connecting")
            harness.put(10, start=3)
            await asyncio.sleep(0.5)  # a few failed reconnect attempts
            assert harness.outbox.pending_count() == 10
            assert harness.link.health()["last_error"]
            mosquitto.start()  # blocking, and so is the capture: the loop is frozen meanwhile
            cap = mqtt_capture(f"{harness.root}/agg")
            msgs = await cap.wait_for(lambda ms: len(ms) >= 10, within=10)
            await until(lambda: harness.outbox.pending_count() == 0)
            health = harness.link.health()
    finally:
        mosquitto.start()
    assert [json.loads(m.payload)["i"] for m in msgs] == list(range(3, 13))
    assert health["connects"] == 2 and health["disconnects"] == 1
    assert harness.outbox.stats()["delivered_total"] == 13


async def test_last_will_on_unclean_drop_then_back_online(
    harness: Harness, mqtt_capture: Capture
) -> None:
    cap = mqtt_capture(f"{harness.root}/state")
    async with running(harness.link):
        await cap.wait_for(lambda ms: len(ms) == 1)
        conn = harness.link._conn
        assert conn is not None and conn.client is not None
        sock = conn.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # the network dies under the link: no DISCONNECT
        msgs = await cap.wait_for(lambda ms: len(ms) >= 3)
        await until(lambda: harness.link.online)
    first, will, again = states(msgs)[:3]
    assert first["online"] is True
    assert will == {
        "online": False,
        "reason": "connection_lost",
        "site": harness.cfg.site,
        "device": harness.cfg.device,
    }
    assert again["online"] is True
    assert harness.link.health()["disconnects"] >= 1


async def test_clean_cancel_publishes_offline_state_instead_of_the_will(
    harness: Harness, mqtt_capture: Capture
) -> None:
    cap = mqtt_capture(f"{harness.root}/state")
    async with running(harness.link):
        await cap.wait_for(lambda ms: len(ms) == 1)
    assert not harness.link.online and harness.link.health()["state"] == "disconnected"
    await cap.wait_for(lambda ms: len(ms) == 2)
    await asyncio.sleep(0.3)  # a Last Will would arrive now if the disconnect were unclean
    bodies = states(cap.messages())
    assert len(bodies) == 2
    assert bodies[1]["online"] is False and bodies[1]["reason"] == "shutdown"
    assert bodies[1]["answer"] == 42  # the full state, marked offline
    retained = mqtt_capture(f"{harness.root}/state")
    (msg,) = await retained.wait_for(lambda ms: len(ms) == 1)
    assert msg.retain and json.loads(msg.payload)["reason"] == "shutdown"


async def test_offers_go_from_ram_and_expire_while_offline(
    harness: Harness, mosquitto: Mosquitto, mqtt_capture: Capture
) -> None:
    cap = mqtt_capture(f"{harness.root}/offer")
    link = harness.link
    try:
        async with running(link):
            assert link.publish_offer({"id": "o1", "token": "ab" * 16}, harness.now + 60)
            (msg,) = await cap.wait_for(lambda ms: len(ms) == 1)
            assert json.loads(msg.payload)["id"] == "o1" and msg.qos == 1
            await until(lambda: link.health()["offers"]["published"] == 1)
            # From a worker thread it is handed over to the loop, not parked in the queue.
            assert await asyncio.to_thread(link.publish_offer, {"id": "o2"}, harness.now + 60)
            await cap.wait_for(lambda ms: len(ms) == 2)
            await until(lambda: link.health()["offers"]["published"] == 2)

            mosquitto.stop()
            await until(lambda: not link.online)
            assert link.publish_offer({"id": "short"}, harness.now + 5)
            assert link.publish_offer({"id": "long"}, harness.now + 600)
            assert not link.publish_offer({"id": "stale"}, harness.now - 1)
            assert link.health()["offers"]["queued"] == 2
            harness.now += 10  # "short" expires while the broker is away
            await until(lambda: link.health()["offers"]["expired"] == 2)  # stale + short
            assert link.health()["offers"]["queued"] == 1

            mosquitto.start()
            after = mqtt_capture(f"{harness.root}/offer")
            (msg,) = await after.wait_for(lambda ms: len(ms) == 1)
            assert json.loads(msg.payload)["id"] == "long"
            await until(lambda: link.health()["offers"]["published"] == 3)
            await asyncio.sleep(0.2)
            assert len(after.messages()) == 1
    finally:
        mosquitto.start()
    # Offers never touch the disk.
    assert harness.outbox.stats()["last_seq"] == 0


async def test_unreachable_broker_backs_off_and_reports(state_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        h = Harness(make_cfg(state_dir, "127.0.0.1", port))
        async with running(h.link, wait_online=False):
            await until(lambda: h.link.health()["failed_attempts"] >= 3)
            health = h.link.health()
        h.outbox.close()
    assert not h.link.online and health["connects"] == 0
    assert "refused" in health["last_error"].lower()


def test_backoff_is_capped_and_jittered(state_dir: Path) -> None:
    cfg = make_cfg(state_dir, "127.0.0.1", 1883)
    with Outbox(state_dir / "o.db") as ob:
        link = MqttLink(cfg, ob, state=dict, on_sightings=lambda _p: None)
        delays = [link._backoff(tries, False) for tries in range(20) for _ in range(20)]
        assert all(0 < d <= 60.0 for d in delays)
        assert 0.5 <= link._backoff(0, False) <= 1.0
        late = [link._backoff(19, False) for _ in range(50)]
        assert min(late) >= 30.0 and len(set(late)) > 1  # capped at 60, half of it jitter
        assert link._backoff(0, True) >= 30.0  # refused credentials wait the longest
        assert link.client_id == f"shelfedge-{cfg.site}-{cfg.device}"


async def test_rows_stay_in_the_outbox_until_the_broker_acknowledges(
    harness: Harness, mosquitto: Mosquitto
) -> None:
    """Seeded bug "row deleted when sent, before PUBACK": a frozen broker never acknowledges."""
    import os
    import signal

    async with running(harness.link):
        harness.put(1)
        await until(lambda: harness.outbox.pending_count() == 0)  # the link works
        assert mosquitto._proc is not None
        os.kill(mosquitto._proc.pid, signal.SIGSTOP)  # frozen: TCP up, no PUBACK ever
        try:
            harness.put(3, start=1)
            await until(lambda: harness.link.health()["inflight"] == 3)  # sent, not acked
            await asyncio.sleep(0.5)
            assert harness.outbox.pending_count() == 3
        finally:
            os.kill(mosquitto._proc.pid, signal.SIGCONT)
        await until(lambda: harness.outbox.pending_count() == 0, within=20)
