"""Privacy canary: no raw signal of a simulated store reaches MQTT, disk or logs.

Every BLE address and every rotating token (RPI) the simulator emits is a canary. The daemon
runs in-process on simulated time with the real Mosquitto broker and the SQLite outbox; a real
subscriber on ``#`` captures everything published. Tokens may leave the device only as the
``token`` field of an ``offer``; nothing else may contain any canary in any common encoding.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from edge.contract.aggregate import cells, parse
from edge.events import Advertisement
from edge.radio.frames import uuid16_key
from tests.asyncapi_schemas import check
from tests.conftest import Mosquitto, MqttCapture
from tests.helpers import demo_config

SIM_MINUTES = 35  # crosses two window boundaries (09:15, 09:30) and three RPI rotations


def _encodings(raw: bytes) -> set[bytes]:
    return {
        raw,
        raw.hex().encode(),
        raw.hex().upper().encode(),
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        ":".join(f"{b:02x}" for b in raw).encode(),
        ":".join(f"{b:02X}" for b in raw).encode(),
    }


def _leaks(blob: bytes, needles: Iterable[bytes]) -> list[bytes]:
    return [n for n in needles if n in blob]


def _address_bytes(address: str) -> bytes:
    return bytes.fromhex(address.replace(":", ""))


def _assert_no_canary_on_disk(state_dir: Path, needles: set[bytes]) -> None:
    files = [p for p in state_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert not _leaks(path.read_bytes(), needles), f"canary on disk in {path.name}"


def test_scanner_finds_planted_canaries() -> None:
    rpi = bytes(range(16))
    needles = _encodings(rpi)
    for planted in _encodings(rpi):
        assert _leaks(b"prefix " + planted + b" suffix", needles)
    assert not _leaks(b"nothing to see", needles)


@pytest.mark.timeout(120)
async def test_no_raw_signal_leaves_the_device(
    mosquitto: Mosquitto,
    mqtt_capture: Callable[[str], MqttCapture],
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from edge.daemon.app import Application, Features
    from edge.daemon.clock import SimClock
    from edge.daemon.service import SetKeys
    from edge.daemon.state import unpinned_fields
    from edge.sim import AppReport, StoreSimulator

    caplog.set_level(logging.DEBUG)
    base = demo_config()
    mqtt = base.mqtt.model_copy(
        update={"enabled": True, "host": mosquitto.host, "port": mosquitto.port}
    )
    cfg = base.model_copy(update={"state_dir": state_dir, "mqtt": mqtt})
    capture = mqtt_capture("#")
    sim = StoreSimulator(cfg, seed=11)
    clock = SimClock(sim.start_ts)
    app = Application(
        cfg, clock=clock, features=Features(display=False, mqtt=True, model=True, autotick=False)
    )
    await app.start()
    await app.service.set_keys(SetKeys(version=1, keys=sim.day_keys()))
    await capture.wait_for(lambda ms: any(m.topic.endswith("/state") for m in ms), 10)

    token_key = uuid16_key(cfg.radio.token_service_uuid)
    rpis: set[bytes] = set()
    addresses: set[bytes] = set()
    t = sim.start_ts
    end = t + SIM_MINUTES * 60
    while t < end:
        t += 1.0
        for item in sim.advance(t):
            clock.set(item.ts)
            if isinstance(item, Advertisement):
                addresses.add(_address_bytes(item.address))
                frame = item.service_data.get(token_key)
                if frame is not None and len(frame) == 21:
                    rpis.add(bytes(frame[1:17]))
                app.on_advertisement(item)
            elif isinstance(item, AppReport):
                for sighting in json.loads(item.payload):
                    rpis.add(bytes.fromhex(sighting["frame"])[1:17])
                app.on_app_payload(item.payload)
        clock.set(t)
        app.tick(t)
        await app.flush_windows()
        await app.drain()  # let the decision stage keep up, as the demo does
        if int(t) % 30 == 0:
            app.link.publish_state()
    offers_made = app.counters.offers
    await app.drain()
    # The RAM walker does find canaries while phones are live (so its "none" below means none).
    assert _canaries_in_holders(app.registry, rpis)
    # RAM: raw_retention_s + 1 s after the last sighting, no holder holds anything raw.
    quiet_until = t + cfg.privacy.raw_retention_s + 1.0
    while t < quiet_until:
        t += 1.0
        clock.set(t)
        app.tick(t)
    await app.drain()
    await asyncio.sleep(0.5)  # let the link hand its last offers to the broker (PUBACK)
    app.tick(t)
    holdings = app.registry.holdings(clock.monotonic())
    # holders bound by the raw retention (the aggregator and beacon stats are window-bound)
    raw_only = {n: h for n, h in holdings.items() if not h.limit_s}
    assert set(holdings) >= {
        "presence.tracker",
        "radio.tag_cache",
        "decide.policy",
        "decide.queue",
        "bus.offers",
        "privacy.aggregator",
    }
    assert all(h.records == 0 for h in raw_only.values()), {
        n: h for n, h in raw_only.items() if h.records
    }
    ram_leaks = _canaries_in_holders(app.registry, rpis | addresses)
    assert ram_leaks == [], ram_leaks
    status = await app.service.status()
    assert status["raw_total"] == sum(h.records for h in holdings.values() if h.limit_s)
    # the technician tools' answers carry no canary either (status, calibrate, config)
    for method, args in (("status", {}), ("calibrate", {"seconds": 60, "record": True}),
                         ("config", {})):  # fmt: skip
        answer = json.dumps(await app.service.dispatch(method, args)).encode()
        needles = {e for r in rpis | addresses for e in _encodings(r)}
        assert not _leaks(answer, needles), method
    await app.stop()
    await capture.wait_for(
        lambda ms: any(m.topic.endswith("/state") and b'"online":false' in m.payload for m in ms),
        10,
    )
    # The day release of the counting hours so far is published at the stop (partial).
    await capture.wait_for(lambda ms: sum(m.topic.endswith("/agg") for m in ms) >= 1, 20)

    assert len(rpis) > 20 and len(addresses) > 100
    assert offers_made > 0
    token_needles = {e for r in rpis for e in _encodings(r)}
    address_needles = {e for a in addresses for e in _encodings(a)}
    all_needles = token_needles | address_needles

    # 1. MQTT: offers carry exactly the four allowed fields; nothing else carries a canary.
    messages = capture.messages()
    offers = [m for m in messages if m.topic.endswith("/offer")]
    assert offers, "no offer was published"
    for m in offers:
        body = json.loads(m.payload)
        assert set(body) == {"id", "token", "coupon_id", "expires_at"}
        assert bytes.fromhex(body["token"]) in rpis
        rest = json.dumps({k: v for k, v in body.items() if k != "token"}).encode()
        assert not _leaks(rest, all_needles)
        assert not _leaks(m.payload, address_needles)
    for m in messages:
        if m.topic.endswith("/offer"):
            continue
        assert not _leaks(m.payload, all_needles), f"canary in {m.topic}"
        assert b"rssi" not in m.payload.lower(), f"RSSI field in {m.topic}"

    # 2. Aggregates: no published cell below k.
    aggs = [json.loads(m.payload) for m in messages if m.topic.endswith("/agg")]
    k = cfg.privacy.k
    assert aggs, "no aggregate was published"
    for agg in aggs:
        rows = cells(parse(agg))  # the contract reads it
        assert rows and all(r.value is None or r.value >= k for r in rows)

    # 3. Disk: nothing under the state directory (outbox, WAL, anything) holds a canary.
    _assert_no_canary_on_disk(state_dir, all_needles)

    # 4. Logs: no record, at any level, contains a canary.
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage().encode()
        if record.exc_text:
            text += record.exc_text.encode()
        assert not _leaks(text, all_needles), f"canary in log from {record.name}"

    # 5. Published state: only pinned fields, no exact per-shopper counts.
    own_state = f"shelfedge/v1/{cfg.site}/{cfg.device}/state"
    states = [json.loads(m.payload) for m in messages if m.topic == own_state and not m.retain]
    assert len(states) >= 3
    for state in states:
        assert unpinned_fields(state) == [], unpinned_fields(state)
        check("State", state)  # and the AsyncAPI document describes it

    # 7. Every captured message of the device matches docs/asyncapi.yaml.
    for agg in aggs:
        check("Aggregate", agg)
    for m in offers:
        check("Offer", json.loads(m.payload))

    # 6. RAM: nothing raw is left after shutdown, in any holder.
    assert app.raw_total() == 0
    assert _canaries_in_holders(app.registry, rpis | addresses) == []


def _canaries_in_holders(registry: Iterable[object], needles: set[bytes]) -> list[str]:
    """Walk every holder's reachable containers (a few levels deep) for canary bytes."""
    found: list[str] = []
    seen: set[int] = set()

    def walk(obj: object, where: str, depth: int) -> None:
        if id(obj) in seen or depth > 6:
            return
        seen.add(id(obj))
        if isinstance(obj, bytes | bytearray):
            if any(n in obj for n in needles):
                found.append(where)
            return
        if isinstance(obj, str | int | float | bool) or obj is None:
            return
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                walk(k, f"{where}[key]", depth + 1)
                walk(v, f"{where}[{type(k).__name__}]", depth + 1)
            return
        if isinstance(obj, list | tuple | set | frozenset) or type(obj).__name__ == "deque":
            for v in list(obj):  # type: ignore[call-overload]
                walk(v, f"{where}[]", depth + 1)
            return
        if type(obj).__module__.startswith("edge."):
            attrs = getattr(obj, "__dict__", {}) or {}
            slots = [
                getattr(obj, n) for n in getattr(type(obj), "__slots__", ()) if hasattr(obj, n)
            ]
            for name, v in list(attrs.items()):
                walk(v, f"{where}.{name}", depth + 1)
            for v in slots:
                walk(v, f"{where}.<slot>", depth + 1)

    for holder in registry:
        walk(holder, type(holder).__name__, 0)
    return found


@pytest.mark.timeout(60)
async def test_broker_keeps_no_raw_sightings_for_an_offline_device(
    mosquitto: Mosquitto, mqtt_capture: Callable[[str], MqttCapture], state_dir: Path
) -> None:
    """The sightings subscription is QoS 0: a persistent session queues nothing raw offline."""
    from edge.daemon.app import Application, Features

    base = demo_config()
    mqtt = base.mqtt.model_copy(
        update={"enabled": True, "host": mosquitto.host, "port": mosquitto.port}
    )
    cfg = base.model_copy(update={"state_dir": state_dir, "mqtt": mqtt})
    features = Features(display=False, mqtt=True, model=False, autotick=False, control=False)

    async def online(app: Application) -> None:
        for _ in range(200):
            if (
                app.link is not None
                and app.link.online
                and app.link.health()["sightings"]["subscribed"]
            ):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("link did not come up")

    first = Application(cfg, features=features)
    await first.start()
    await online(first)
    await first.stop()  # the broker keeps the session (clean_start=False, session expiry)
    publisher = mqtt_capture("nothing/#")
    for _ in range(5):
        await asyncio.to_thread(
            publisher.publish, f"shelfedge/v1/{cfg.site}/sightings", b'{"canary": 1}'
        )
    second = Application(cfg, features=features)
    await second.start()
    try:
        await online(second)
        await asyncio.sleep(1.0)
        assert second.link is not None
        assert second.link.health()["sightings"]["received"] == 0
    finally:
        await second.stop()
