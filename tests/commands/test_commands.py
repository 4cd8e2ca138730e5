"""Signed commands against a real Mosquitto: one ack each, every rejection without a change."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.commands.envelope import sign
from edge.config.models import AppConfig
from edge.daemon.app import Application, Features
from tests.asyncapi_schemas import check
from tests.bus.support import make_cfg, until
from tests.conftest import Mosquitto, MqttCapture

KID = "central-1"


def _pub(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@pytest.fixture
def central_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def cfg(state_dir: Path, mosquitto: Mosquitto, central_key: Ed25519PrivateKey) -> AppConfig:
    base = make_cfg(state_dir, mosquitto.host, mosquitto.port)
    commands = base.commands.model_copy(update={"trusted_keys": {KID: _pub(central_key)}})
    display = base.display.model_copy(update={"enabled": False})
    return base.model_copy(update={"commands": commands, "display": display})


FEATURES = Features(display=False, mqtt=True, model=False, autotick=True, control=False)


async def _start(cfg: AppConfig) -> Application:
    app = Application(cfg, features=FEATURES)
    await app.start()
    await until(lambda: app.link is not None and app.link.health()["sightings"]["subscribed"])
    return app


@pytest.fixture
async def app(cfg: AppConfig) -> AsyncIterator[Application]:
    running = await _start(cfg)
    yield running
    await running.stop()


class Central:
    """Signs and sends commands; collects acks."""

    def __init__(self, cfg: AppConfig, key: Ed25519PrivateKey, cap: MqttCapture) -> None:
        self.root = f"shelfedge/v1/{cfg.site}/{cfg.device}"
        self.all = f"shelfedge/v1/{cfg.site}/all"
        self.key = key
        self.cap = cap

    def envelope(self, args: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
        env = sign(self.key, KID, args or {}, issued_at=int(time.time()))
        env.update(over)
        return env

    async def send(
        self, name: str, body: bytes | dict[str, Any], *, to_all: bool = False, **props: Any
    ) -> dict[str, Any]:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        before = len(self.cap.messages())
        topic = f"{self.all if to_all else self.root}/cmd/{name}"
        await asyncio.to_thread(self.cap.publish, topic, payload, **props)
        msgs = await self.cap.wait_for(lambda ms: len(ms) > before, 10)
        ack: dict[str, Any] = json.loads(msgs[before].payload)
        check("Ack", ack)  # every real ack matches docs/asyncapi.yaml
        return ack


@pytest.fixture
def central(
    cfg: AppConfig, central_key: Ed25519PrivateKey, mqtt_capture: Callable[[str], MqttCapture]
) -> Central:
    root = f"shelfedge/v1/{cfg.site}/{cfg.device}"
    return Central(cfg, central_key, mqtt_capture(f"{root}/ack"))


@pytest.mark.timeout(60)
async def test_status_command_is_acked_ok(app: Application, central: Central) -> None:
    env = central.envelope()
    ack = await central.send("status", env)
    assert ack["id"] == env["id"] and ack["status"] == "ok" and ack["code"] == "ok"
    assert ack["result"]["online"] is True and ack["result"]["site"] == app.cfg.site
    assert set(ack) == {"id", "status", "code", "message", "result"}


@pytest.mark.timeout(90)
async def test_every_rejection_has_its_code_and_changes_nothing(
    app: Application, central: Central, central_key: Ed25519PrivateKey
) -> None:
    good_keys = {"version": 5, "keys": {"2026-11-24": "11" * 32}}
    state_before = app.state.published()["config_hash"], app.keys.version, app.keys.days
    other = Ed25519PrivateKey.generate()
    now = int(time.time())
    stale = central.envelope({"version": 5, "keys": {"2026-11-24": "22" * 32}})
    cases: list[tuple[str, str, bytes | dict[str, Any]]] = [
        ("bad_json", "set_keys", b"{not json"),
        ("bad_json", "set_keys", b'{"id": "a", "id": "b"}'),
        ("schema", "set_keys", {"id": str(uuid.uuid4()), "kid": KID}),
        ("unknown_command", "self_destruct", central.envelope()),
        ("unknown_key", "set_keys", central.envelope(good_keys, kid="stranger")),
        ("bad_signature", "set_keys", sign(other, KID, good_keys, issued_at=now)),
        ("bad_signature", "set_keys", {**central.envelope(good_keys), "args": {"version": 6}}),
        ("expired", "set_keys", sign(central_key, KID, good_keys, issued_at=now - 100, ttl_s=50)),
        ("skew", "set_keys", sign(central_key, KID, good_keys, issued_at=now + 3600, ttl_s=99)),
        ("schema", "set_keys", central.envelope({"version": "7", "keys": {}})),
        ("schema", "set_keys", central.envelope({"version": 8, "keys": {"x": "zz"}})),
        ("too_large", "set_keys", b" " * (app.cfg.commands.max_payload_bytes + 1)),
    ]
    for code, name, body in cases:
        ack = await central.send(name, body)
        assert (ack["status"], ack["code"]) == ("rejected", code), (code, ack)
        assert state_before == (
            app.state.published()["config_hash"],
            app.keys.version,
            app.keys.days,
        ), code
    # replayed and stale_version: apply one good command, then send it again / an older one
    env = central.envelope(good_keys)
    applied = await central.send("set_keys", env)
    assert applied["status"] == "ok", applied
    assert app.keys.version == 5
    replay = await central.send("set_keys", env)
    assert (replay["status"], replay["code"]) == ("rejected", "replayed")
    old = await central.send("set_keys", stale)
    assert (old["status"], old["code"]) == ("rejected", "stale_version")
    assert old["result"] == {"current_version": 5}
    assert app.keys.version == 5 and app.keys.key(app.keys.days[0]) == bytes.fromhex("11" * 32)


@pytest.mark.timeout(60)
async def test_rate_limit(app: Application, central: Central) -> None:
    before = len(central.cap.messages())
    for _ in range(40):  # a burst, faster than the bucket refills
        body = json.dumps(central.envelope()).encode()
        await asyncio.to_thread(central.cap.publish, f"{central.root}/cmd/status", body)
    msgs = await central.cap.wait_for(lambda ms: len(ms) >= before + 40, 20)
    codes = [json.loads(m.payload)["code"] for m in msgs[before:]]
    assert codes[0] == "ok" and "rate_limited" in codes
    assert len(codes) == 40  # every command got exactly one ack


@pytest.mark.timeout(60)
async def test_site_wide_command_and_response_topic(
    app: Application, central: Central, mqtt_capture: Callable[[str], MqttCapture]
) -> None:
    ack = await central.send("status", central.envelope(), to_all=True)
    assert ack["status"] == "ok"
    replies = mqtt_capture("central/replies/#")
    env = central.envelope({"weather": "rainy", "temperature_c": 7.5, "version": 1})
    await asyncio.to_thread(
        replies.publish,
        f"{central.root}/cmd/set_context",
        json.dumps(env).encode(),
        response_topic="central/replies/42",
        correlation=b"\x00corr-42",
    )
    (msg,) = await replies.wait_for(lambda ms: len(ms) == 1, 10)
    assert msg.topic == "central/replies/42" and msg.correlation == b"\x00corr-42"
    body = json.loads(msg.payload)
    assert body["id"] == env["id"] and body["status"] == "ok"
    assert app.engine.context.weather == "rainy"


@pytest.mark.timeout(90)
async def test_replay_across_a_restart_is_rejected(cfg: AppConfig, central: Central) -> None:
    first = await _start(cfg)
    env = central.envelope({"version": 3, "keys": {"2026-11-24": "33" * 32}})
    try:
        assert (await central.send("set_keys", env))["status"] == "ok"
    finally:
        await first.stop()
    second = await _start(cfg)
    try:
        again = await central.send("set_keys", env)
        assert (again["status"], again["code"]) == ("rejected", "replayed")
        older = central.envelope({"version": 2, "keys": {"2026-11-24": "44" * 32}})
        stale = await central.send("set_keys", older)
        assert (stale["code"], stale["result"]) == ("stale_version", {"current_version": 3})
    finally:
        await second.stop()


@pytest.mark.timeout(90)
async def test_ack_during_broker_outage_is_delivered_after_reconnect(
    cfg: AppConfig,
    central: Central,
    mosquitto: Mosquitto,
    mqtt_capture: Callable[[str], MqttCapture],
) -> None:
    app = await _start(cfg)
    try:
        assert app.commands is not None
        env = central.envelope()
        # the broker goes away just as a command is being answered: the ack waits in the outbox
        mosquitto.stop()
        await until(lambda: app.link is not None and not app.link.online)
        # the daemon's own answering path: handle, then the ack goes to the on-disk outbox
        await app._answer("status", json.dumps(env).encode(), None, None)
        assert app.outbox is not None and app.outbox.pending_count() >= 1
        mosquitto.start()
        after = mqtt_capture(f"{central.root}/ack")  # subscribed before the link's backoff ends
        await after.wait_for(
            lambda ms: any(json.loads(m.payload).get("id") == env["id"] for m in ms), 30
        )
    finally:
        await app.stop()


@pytest.mark.timeout(60)
async def test_forget_ack_never_echoes_the_token(app: Application, central: Central) -> None:
    token = bytes(range(100, 116))
    ack = await central.send("forget", central.envelope({"token": token.hex()}))
    assert ack["status"] == "ok"
    assert set(ack["result"]["dropped"]) >= {"presence.tracker", "decide.policy"}
    assert all(isinstance(v, int) for v in ack["result"]["dropped"].values())
    raw = json.dumps(ack).encode()
    for enc in (token.hex().encode(), token.hex().upper().encode(), base64.b64encode(token)):
        assert enc not in raw
        for f in app.cfg.state_dir.rglob("*"):
            if f.is_file():
                assert enc not in f.read_bytes(), f.name


MODELS = Path(__file__).resolve().parents[2] / "edge" / "decide" / "models"


def _model_args(version: int, model_version: str) -> dict[str, Any]:
    card = json.loads((MODELS / "coupon.card.json").read_text())
    card["model_version"] = model_version
    blob = base64.b64encode((MODELS / "coupon.tflite").read_bytes()).decode()
    return {"version": version, "model_b64": blob, "card": card}


@pytest.mark.timeout(120)
async def test_model_update_probation_rollback_and_restart(
    cfg: AppConfig, central: Central
) -> None:
    from edge.decide.engine import DecisionEngine
    from edge.events import PresenceEvent, PresenceKind

    with_model = Features(display=False, mqtt=True, model=True, autotick=True, control=False)

    async def start() -> Application:
        app = Application(cfg, features=with_model)
        await app.start()
        await until(lambda: app.link is not None and app.link.health()["sightings"]["subscribed"])
        return app

    app = await start()
    try:
        shipped = app.model.model_id
        # a tampered model is refused and nothing changes
        bad = _model_args(1, "6.6.6")
        bad["card"]["sha256"] = "0" * 64
        ack = await central.send("update_model", central.envelope(bad))
        assert (ack["status"], ack["code"]) == ("error", "failed")
        assert app.model.model_id == shipped
        ack = await central.send("update_model", central.envelope(_model_args(2, "9.9.9")))
        assert ack["status"] == "ok", ack
        assert ack["result"]["model_id"].startswith("coupon-9.9.9+")
        assert app.model.model_id == ack["result"]["model_id"]
    finally:
        await app.stop()

    app = await start()  # the installed model survives a restart
    try:
        assert app.model.model_id is not None and app.model.model_id.startswith("coupon-9.9.9+")
        ack = await central.send("update_model", central.envelope(_model_args(3, "9.9.10")))
        assert ack["status"] == "ok" and app.model.model_id.startswith("coupon-9.9.10+")
        # the new model fails in service while on probation: automatic rollback
        scorer = app.model.current()
        assert scorer is not None

        def broken(rows: Any) -> list[float]:
            raise RuntimeError("corrupted interpreter")

        scorer.score_batch = broken  # type: ignore[method-assign]
        campaign = app.cfg.campaigns[0]
        engine: DecisionEngine = app.engine
        ev = PresenceEvent(
            PresenceKind.DWELL, b"\x05" * 16, 2, campaign.zone, None, 60.0, 0.0, time.time()
        )
        for _ in range(20):  # until one event reaches the model (holdout may take some)
            await engine.decide(
                PresenceEvent(ev.kind, bytes([_]) * 16, 2, ev.zone, None, 60.0, 0.0, time.time())
            )
            if engine.model_errors:
                break
        assert engine.model_errors > 0
        await until(lambda: app.model.rollbacks == 1, within=10)
        assert app.model.model_id is not None and app.model.model_id.startswith("coupon-9.9.9+")
        assert app.model.health().detail["last_rollback"] == "scorer errors"
    finally:
        await app.stop()

    app = await start()  # after the rollback, the restored model is the active one
    try:
        assert app.model.model_id is not None and app.model.model_id.startswith("coupon-9.9.9+")
    finally:
        await app.stop()


@pytest.mark.timeout(60)
async def test_oversized_payloads_never_stall_the_loop(app: Application, central: Central) -> None:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        limit = app.cfg.commands.max_payload_bytes
        # 2 MB: far above the Maximum Packet Size the device announced; the broker drops it
        await asyncio.to_thread(central.cap.publish, f"{central.root}/cmd/status", b"x" * 2_000_000)
        # a little over the bound: it arrives and is refused before parsing
        ack = await central.send("status", b"{" + b" " * (limit + 10) + b"}")
        assert (ack["status"], ack["code"]) == ("rejected", "too_large")
        assert (await central.send("status", central.envelope()))["status"] == "ok"
    finally:
        stop.set()
        await tick
    assert max(gaps) < 0.1, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"
    assert app.link is not None and app.link.health()["commands"]["received"] == 2


@pytest.mark.timeout(120)
async def test_chunked_model_upload(cfg: AppConfig, central: Central) -> None:
    from edge.fleet.model_upload import model_update_args

    with_model = Features(display=False, mqtt=True, model=True, autotick=True, control=False)
    app = Application(cfg, features=with_model)
    await app.start()
    try:
        await until(lambda: app.link is not None and app.link.health()["sightings"]["subscribed"])
        model = (MODELS / "coupon.tflite").read_bytes()
        card = json.loads((MODELS / "coupon.card.json").read_text())
        card["model_version"] = "7.0.0"
        parts = model_update_args(model, card, 1, chunk_bytes=2500)  # 6,000 bytes → 3 chunks
        assert len(parts) == 3
        # a corrupted piece: the reassembled file does not match the announced sha256
        bad = [dict(p) for p in parts]
        bad[1]["model_b64"] = base64.b64encode(b"\x00" * 2500).decode()
        acks = [await central.send("update_model", central.envelope(p)) for p in bad]
        assert [a["status"] for a in acks] == ["ok", "ok", "error"]
        assert acks[0]["result"] == {"model_id": None, "received": 1, "chunks": 3}
        assert not app.model.model_id or not app.model.model_id.startswith("coupon-7.0.0")
        parts = model_update_args(model, card, 2, chunk_bytes=2500)
        acks = [await central.send("update_model", central.envelope(p)) for p in parts]
        assert [a["status"] for a in acks] == ["ok", "ok", "ok"]
        assert acks[-1]["result"]["model_id"].startswith("coupon-7.0.0+")
        assert app.model.model_id == acks[-1]["result"]["model_id"]
    finally:
        await app.stop()
