"""CommandProcessor driven in process: real signed envelopes, a real DeviceService, a real store.

Each check of the processor's order (size, JSON, envelope, command, key, signature, expiry,
skew, rate, replay, version) is tested at its boundary and with the ack it must give, without a
broker, so that mutation testing can run these tests (the broker tests are in test_commands.py).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.commands.envelope import COMMANDS, VERSIONED, Ack, canonical, sign
from edge.commands.processor import RATE_BURST, RATE_PER_S, CommandProcessor
from edge.commands.store import CommandStore
from edge.config.models import AppConfig
from edge.daemon.app import Application, Features
from tests.helpers import demo_config

KID = "central-1"
NOW = 1_800_000_000
MODELS = Path(__file__).resolve().parents[2] / "edge" / "decide" / "models"
OFF = Features(display=False, mqtt=False, model=False, autotick=False, control=False)


def _pub(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


@dataclass
class Clocks:
    wall: float = float(NOW)
    mono: float = 1000.0


@dataclass
class Rig:
    app: Application
    cfg: AppConfig
    key: Ed25519PrivateKey
    store: CommandStore
    clocks: Clocks
    proc: CommandProcessor
    restarts: list[int] = field(default_factory=list)

    def env(self, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        kw.setdefault("issued_at", int(self.clocks.wall))
        return sign(self.key, KID, args or {}, **kw)

    async def send(self, name: str, env: dict[str, Any] | bytes) -> Ack:
        raw = env if isinstance(env, bytes) else json.dumps(env).encode()
        return await self.proc.handle(name, raw)


def _cfg(state_dir: Path, keys: dict[str, str]) -> AppConfig:
    cfg = demo_config(state_dir=state_dir)
    commands = cfg.commands.model_copy(update={"trusted_keys": keys})
    return cfg.model_copy(update={"commands": commands})


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    key = Ed25519PrivateKey.generate()
    cfg = _cfg(tmp_path / "state", {KID: _pub(key)})
    app = Application(cfg, features=OFF)
    await app.start()
    store = CommandStore(tmp_path / "commands.sqlite3")
    clocks = Clocks()
    restarts: list[int] = []
    proc = CommandProcessor(
        cfg,
        app.service,
        store,
        clock=lambda: clocks.wall,
        monotonic=lambda: clocks.mono,
        on_restart=lambda: restarts.append(1),
    )
    try:
        yield Rig(app, cfg, key, store, clocks, proc, restarts)
    finally:
        store.close()
        await app.stop()


def _code(ack: Ack) -> tuple[str, str]:
    return ack.status, ack.code


# -- size, JSON, envelope -----------------------------------------------------------------


async def test_payload_exactly_at_the_limit_is_read_one_byte_over_is_too_large(rig: Rig) -> None:
    limit = rig.cfg.commands.max_payload_bytes
    raw = json.dumps(rig.env()).encode()
    at_limit = raw + b" " * (limit - len(raw))  # trailing whitespace is still valid JSON
    assert len(at_limit) == limit
    ok = await rig.send("status", at_limit)
    assert _code(ok) == ("ok", "ok"), ok
    over = json.dumps(rig.env()).encode()
    over += b" " * (limit + 1 - len(over))
    ack = await rig.send("status", over)
    assert _code(ack) == ("rejected", "too_large")
    assert ack.message == f"over {limit} bytes"
    assert ack.id is None  # nothing was parsed


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "not a JSON object without duplicate keys"),
        (b'{"id": "a", "id": "b"}', "not a JSON object without duplicate keys"),
        (b"[" * 100_00 + b"]" * 100_00, "not a JSON object without duplicate keys"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
    ],
)
async def test_bad_json_is_rejected_with_what_was_wrong(
    rig: Rig, payload: bytes, message: str
) -> None:
    ack = await rig.send("status", payload)
    assert _code(ack) == ("rejected", "bad_json")
    assert ack.message == message
    assert ack.id is None and ack.result is None


async def test_envelope_schema_errors_name_the_field(rig: Rig) -> None:
    env = rig.env()
    del env["sig"]
    env["issued_at"] = "now"
    ack = await rig.send("status", env)
    assert _code(ack) == ("rejected", "schema")
    assert ack.message == "envelope: issued_at: int_type; sig: missing"
    ack = await rig.send("status", {**rig.env(), "extra": 1})
    assert ack.message == "envelope: extra: extra_forbidden"
    ack = await rig.send("status", {**rig.env(), "id": "not-a-uuid"})
    assert ack.message == "envelope: id: value_error"


async def test_envelope_schema_message_lists_at_most_three_fields(rig: Rig) -> None:
    ack = await rig.send("status", b"{}")
    assert ack.message == "envelope: id: missing; kid: missing; issued_at: missing"


async def test_a_parsed_envelope_is_acked_with_its_id(rig: Rig) -> None:
    env = rig.env()
    ack = await rig.send("nope", env)
    assert ack.id == env["id"]
    assert _code(ack) == ("rejected", "unknown_command")
    assert ack.message == "unknown command 'nope'"


# -- command, key, signature --------------------------------------------------------------


async def test_every_known_command_passes_the_name_check(rig: Rig) -> None:
    for name in COMMANDS:  # a bad signature is checked after the name: never unknown_command
        env = rig.env()
        env["sig"] = base64.b64encode(b"\0" * 64).decode()
        ack = await rig.send(name, env)
        assert ack.code == "bad_signature", (name, ack)


async def test_unknown_kid_is_rejected_before_the_signature(rig: Rig) -> None:
    env = sign(rig.key, "someone-else", {}, issued_at=NOW)
    ack = await rig.send("status", env)
    assert _code(ack) == ("rejected", "unknown_key")
    assert ack.message == "kid 'someone-else' is not trusted"


@pytest.mark.parametrize(
    "spoil",
    [
        "args",  # signed body changed after signing
        "other_key",  # a valid signature by a key that is not trusted under this kid
        "not_base64",
        "short",
    ],
)
async def test_signature_must_verify(rig: Rig, spoil: str) -> None:
    env = rig.env({"token": "00" * 16})
    if spoil == "args":
        env["args"] = {"token": "11" * 16}
    elif spoil == "other_key":
        other = Ed25519PrivateKey.generate()
        env["sig"] = base64.b64encode(other.sign(canonical(env))).decode()
    elif spoil == "not_base64":
        env["sig"] = "*" * 88
    else:
        env["sig"] = env["sig"][:-8]
    ack = await rig.send("forget", env)
    assert _code(ack) == ("rejected", "bad_signature")
    assert ack.message == "signature does not verify"


async def test_signature_with_trailing_garbage_is_not_base64(rig: Rig) -> None:
    env = rig.env()
    env["sig"] = env["sig"] + "!!"  # b64decode(validate=False) would drop these
    ack = await rig.send("status", env)
    assert ack.code == "bad_signature"


async def test_untrusted_key_config_entries_are_ignored_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = Ed25519PrivateKey.generate()
    cfg = _cfg(
        tmp_path / "state",
        {"good": _pub(key), "short": base64.b64encode(b"x" * 31).decode(), "junk": "%%%"},
    )
    app = Application(cfg, features=OFF)
    await app.start()
    try:
        with caplog.at_level(logging.ERROR, logger="edge.commands.processor"):
            proc = CommandProcessor(cfg, app.service, CommandStore(None), clock=lambda: NOW)
        logged = sorted(r.getMessage() for r in caplog.records)
        assert logged == [
            "commands.trusted_keys.junk is not a base64 Ed25519 key; ignored",
            "commands.trusted_keys.short is not a base64 Ed25519 key; ignored",
        ]
        assert all(r.levelno == logging.ERROR for r in caplog.records)
        for kid in ("short", "junk"):
            ack = await proc.handle(
                "status", json.dumps(sign(key, kid, {}, issued_at=NOW)).encode()
            )
            assert ack.code == "unknown_key"
        ack = await proc.handle("status", json.dumps(sign(key, "good", {}, issued_at=NOW)).encode())
        assert ack.code == "ok"
    finally:
        await app.stop()


# -- expiry and skew ----------------------------------------------------------------------


async def test_expiry_is_exclusive_of_now(rig: Rig) -> None:
    at_now = rig.env(issued_at=NOW - 10, ttl_s=10)  # expires_at == now
    ack = await rig.send("status", at_now)
    assert _code(ack) == ("rejected", "expired")
    assert ack.message == "expires_at has passed"
    one_later = rig.env(issued_at=NOW - 10, ttl_s=11)
    assert (await rig.send("status", one_later)).code == "ok"


async def test_skew_bound_is_inclusive_both_ways(rig: Rig) -> None:
    skew = rig.cfg.commands.max_skew_s
    for issued in (NOW - skew, NOW + skew):
        ack = await rig.send("status", rig.env(issued_at=issued, ttl_s=3 * skew))
        assert ack.code == "ok", (issued - NOW, ack)
    for issued in (NOW - skew - 1, NOW + skew + 1):
        ack = await rig.send("status", rig.env(issued_at=issued, ttl_s=3 * skew))
        assert _code(ack) == ("rejected", "skew"), issued - NOW
        assert ack.message == f"issued_at further than {skew} s from now"


# -- rate limit ---------------------------------------------------------------------------


async def test_burst_then_rate_limited_then_refilled_at_the_rate(rig: Rig) -> None:
    burst = int(RATE_BURST)
    acks = [await rig.send("status", rig.env()) for _ in range(burst + 1)]
    assert [a.code for a in acks] == ["ok"] * burst + ["rate_limited"]
    assert acks[-1].message == "too many commands from this key"
    assert acks[-1].status == "rejected"
    rig.clocks.mono += 0.5 / RATE_PER_S  # half a token: still limited
    assert (await rig.send("status", rig.env())).code == "rate_limited"
    rig.clocks.mono += 0.5 / RATE_PER_S  # now exactly one token
    assert (await rig.send("status", rig.env())).code == "ok"
    assert (await rig.send("status", rig.env())).code == "rate_limited"


async def test_idle_time_refills_at_most_the_burst(rig: Rig) -> None:
    rig.clocks.mono += 3600.0
    acks = [await rig.send("status", rig.env()) for _ in range(int(RATE_BURST) + 1)]
    assert [a.code for a in acks].count("ok") == int(RATE_BURST)
    assert acks[-1].code == "rate_limited"


async def test_a_rejected_envelope_costs_no_token_but_a_replay_does(rig: Rig) -> None:
    env = rig.env()
    env["sig"] = base64.b64encode(b"\0" * 64).decode()
    for _ in range(int(RATE_BURST) * 2):  # bad signatures are refused before the bucket
        assert (await rig.send("status", env)).code == "bad_signature"
    good = rig.env()
    assert (await rig.send("status", good)).code == "ok"
    codes = [(await rig.send("status", good)).code for _ in range(int(RATE_BURST))]
    assert codes == ["replayed"] * (int(RATE_BURST) - 1) + ["rate_limited"]


async def test_buckets_are_per_key(tmp_path: Path) -> None:
    k1, k2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    cfg = _cfg(tmp_path / "state", {"a": _pub(k1), "b": _pub(k2)})
    app = Application(cfg, features=OFF)
    await app.start()
    try:
        proc = CommandProcessor(
            cfg, app.service, CommandStore(None), clock=lambda: NOW, monotonic=lambda: 5.0
        )

        async def send(key: Ed25519PrivateKey, kid: str) -> str:
            env = sign(key, kid, {}, issued_at=NOW)
            return (await proc.handle("status", json.dumps(env).encode())).code

        assert [await send(k1, "a") for _ in range(int(RATE_BURST) + 1)][-1] == "rate_limited"
        assert await send(k2, "b") == "ok"
    finally:
        await app.stop()


# -- replay -------------------------------------------------------------------------------


async def test_replay_is_refused_and_survives_a_new_processor(rig: Rig, tmp_path: Path) -> None:
    env = rig.env()
    assert (await rig.send("status", env)).code == "ok"
    ack = await rig.send("status", env)
    assert _code(ack) == ("rejected", "replayed")
    assert ack.message == "this command id was already seen"
    rig.store.close()
    again = CommandStore(tmp_path / "commands.sqlite3")  # as after a reboot
    try:
        proc = CommandProcessor(rig.cfg, rig.app.service, again, clock=lambda: NOW)
        assert (await proc.handle("status", json.dumps(env).encode())).code == "replayed"
    finally:
        again.close()
        rig.store = CommandStore(tmp_path / "commands.sqlite3")


# -- versions -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2", 2.0, True, None])
async def test_version_must_be_an_integer(rig: Rig, version: Any) -> None:
    args: dict[str, Any] = {"version": version, "weather": "sunny", "temperature_c": 20.0}
    if version is None:
        del args["version"]
    ack = await rig.send("set_context", rig.env(args))
    assert _code(ack) == ("rejected", "schema")
    assert ack.message == "args.version must be an integer"


async def test_version_must_exceed_the_last_applied(rig: Rig) -> None:
    ctx = {"weather": "sunny", "temperature_c": 20.0}
    ok = await rig.send("set_context", rig.env({"version": 3, **ctx}))
    assert _code(ok) == ("ok", "ok"), ok
    assert ok.result == {"version": 3, "detail": {"weather": "sunny", "temperature_c": 20.0}}
    assert rig.store.version("set_context") == 3
    for stale in (3, 2):
        ack = await rig.send("set_context", rig.env({"version": stale, **ctx}))
        assert _code(ack) == ("rejected", "stale_version")
        assert ack.message == f"version {stale} <= current 3"
        assert ack.result == {"current_version": 3}
    assert (await rig.send("set_context", rig.env({"version": 4, **ctx}))).code == "ok"
    assert rig.store.version("set_context") == 4
    assert rig.store.version("set_keys") == 0  # versions are per command


async def test_first_version_must_be_positive(rig: Rig) -> None:
    ack = await rig.send("set_context", rig.env({"version": 0, "weather": "w", "temperature_c": 0}))
    assert _code(ack) == ("rejected", "stale_version")
    assert ack.result == {"current_version": 0}


async def test_a_refused_state_command_records_no_version(rig: Rig) -> None:
    # the service refuses the keys: the processor's version check passed, nothing is recorded
    ack = await rig.send("set_keys", rig.env({"version": 7, "keys": {"2026-11-24": "zz"}}))
    assert _code(ack) == ("rejected", "schema")
    assert ack.message == "keys must map YYYY-MM-DD to 64 hex digits"
    assert rig.store.version("set_keys") == 0


async def test_every_versioned_command_records_its_version(rig: Rig) -> None:
    campaigns = [c.model_dump(mode="json") for c in rig.cfg.campaigns]
    keys_version = rig.app.keys.version
    args = {
        "set_keys": {"version": keys_version + 1, "keys": {"2026-11-24": "ab" * 32}},
        "set_campaigns": {"version": 1, "campaigns": campaigns},
        "set_context": {"version": 1, "weather": "rainy", "temperature_c": 4.0},
    }
    for name, a in args.items():
        ack = await rig.send(name, rig.env(a))
        assert ack.code == "ok", (name, ack)
        assert rig.store.version(name) == a["version"]
    assert rig.app.keys.version == keys_version + 1
    assert set(args) <= VERSIONED


async def test_service_stale_version_maps_to_stale_version(rig: Rig) -> None:
    # keys installed by another path (the local socket): the ring is at 2, the store at 0
    await rig.app.service.dispatch("set_keys", {"version": 2, "keys": {"2026-11-24": "ab" * 32}})
    ack = await rig.send("set_keys", rig.env({"version": 1, "keys": {}}))
    assert _code(ack) == ("rejected", "stale_version")
    assert ack.message == "keys version 1 <= current 2"
    assert rig.store.version("set_keys") == 0


async def test_set_config_with_a_bad_config_is_a_schema_rejection(rig: Rig) -> None:
    ack = await rig.send("set_config", rig.env({"version": 1, "config": {"nope": 1}}))
    assert _code(ack) == ("rejected", "schema"), ack
    assert rig.store.version("set_config") == 0


# -- running ------------------------------------------------------------------------------


async def test_status_answers_with_the_published_state_only(rig: Rig) -> None:
    ack = await rig.send("status", rig.env())
    assert _code(ack) == ("ok", "ok")
    assert ack.result == rig.app.state.published()
    ack = await rig.send("status", rig.env({"verbose": True}))
    assert _code(ack) == ("rejected", "schema")
    assert ack.message == "status takes no arguments"


async def test_restart_calls_back_and_says_so(rig: Rig) -> None:
    ack = await rig.send("restart", rig.env())
    assert _code(ack) == ("ok", "ok")
    assert ack.result == {"restarting": True}
    assert rig.restarts == [1]


async def test_restart_without_a_callback_still_acks(rig: Rig) -> None:
    proc = CommandProcessor(rig.cfg, rig.app.service, CommandStore(None), clock=lambda: NOW)
    ack = await proc.handle("restart", json.dumps(rig.env()).encode())
    assert ack.result == {"restarting": True}


async def test_a_failure_while_running_acks_the_class_only(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "aa" * 16

    def boom() -> None:
        raise RuntimeError(f"token {secret}")

    proc = CommandProcessor(
        rig.cfg, rig.app.service, CommandStore(None), clock=lambda: NOW, on_restart=boom
    )
    env = rig.env()
    with caplog.at_level(logging.ERROR, logger="edge.commands.processor"):
        ack = await proc.handle("restart", json.dumps(env).encode())
    assert (ack.id, ack.status, ack.code, ack.message) == (
        env["id"],
        "error",
        "failed",
        "RuntimeError",
    )
    assert [r.getMessage() for r in caplog.records] == ["command restart failed: RuntimeError"]
    assert secret not in caplog.text and secret not in ack.model_dump_json()


async def test_forget_runs_through_the_service_strictly(rig: Rig) -> None:
    ack = await rig.send("forget", rig.env({"token": "00" * 16}))
    assert _code(ack) == ("ok", "ok"), ack
    assert set(ack.result or {}) == {"dropped"}
    ack = await rig.send("forget", rig.env({"token": 5}))  # strict: not a string
    assert _code(ack) == ("rejected", "schema")
    assert ack.message.startswith("token: ")
    ack = await rig.send("forget", rig.env({"token": "00" * 8}))
    assert ack.message == "token must be 16 bytes (32 hex digits)"


async def test_commands_needing_the_display_fail_without_it(rig: Rig) -> None:
    for name, args in (("screenshot", {}), ("display_message", {"text": "hi", "seconds": 3.0})):
        ack = await rig.send(name, rig.env(args))
        assert _code(ack) == ("error", "failed"), (name, ack)
        assert ack.message == "the display is not running"


def _model_args(version: int, model_version: str, **extra: Any) -> dict[str, Any]:
    card = json.loads((MODELS / "coupon.card.json").read_text())
    card["model_version"] = model_version
    blob = base64.b64encode((MODELS / "coupon.tflite").read_bytes()).decode()
    return {"version": version, "model_b64": blob, "card": card, **extra}


@pytest.mark.timeout(120)
async def test_update_model_records_its_version_only_once_installed(rig: Rig) -> None:
    full = _model_args(5, "9.9.9")
    blob = base64.b64decode(full["model_b64"])
    import hashlib

    half = len(blob) // 2
    sha = hashlib.sha256(blob).hexdigest()
    first = {**full, "model_b64": base64.b64encode(blob[:half]).decode()}
    first.update(sha256=sha, index=0, chunks=2)
    ack = await rig.send("update_model", rig.env(first))
    assert _code(ack) == ("ok", "ok"), ack
    assert ack.result == {"model_id": None, "received": 1, "chunks": 2}
    assert rig.store.version("update_model") == 0  # not installed yet
    second = {**first, "model_b64": base64.b64encode(blob[half:]).decode(), "index": 1}
    ack = await rig.send("update_model", rig.env(second))
    assert _code(ack) == ("ok", "ok"), ack
    assert ack.result is not None and str(ack.result["model_id"]).startswith("coupon-9.9.9+")
    assert rig.store.version("update_model") == 5
    # a tampered model is refused by the service: error/failed, no version
    bad = _model_args(6, "6.6.6")
    bad["card"]["sha256"] = "0" * 64
    ack = await rig.send("update_model", rig.env(bad))
    assert _code(ack) == ("error", "failed")
    assert rig.store.version("update_model") == 5


async def test_counts_one_per_ack_code(rig: Rig) -> None:
    env = rig.env()
    await rig.send("status", env)
    await rig.send("status", env)
    await rig.send("status", b"[]")
    await rig.send("status", b"{}")
    assert rig.proc.counts == {"ok": 1, "replayed": 1, "bad_json": 1, "schema": 1}


# -- the store ----------------------------------------------------------------------------


def test_store_prunes_ids_only_after_they_expire(tmp_path: Path) -> None:
    store = CommandStore(tmp_path / "c.sqlite3")
    cid = str(uuid.uuid4())
    assert store.remember(cid, 100, now=50.0) is True
    assert store.remember(cid, 100, now=100.9) is False  # int(now) == expires_at: kept
    assert store.remember(cid, 100, now=101.0) is True  # pruned, then seen anew
    assert store.remember(str(uuid.uuid4()), 200, now=101.0) is True
    store.close()


def test_store_versions_persist_and_update(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "c.sqlite3"  # the folders are created
    store = CommandStore(path)
    assert store.version("set_keys") == 0
    store.set_version("set_keys", 4)
    store.set_version("set_keys", 9)
    store.set_version("set_config", 2)
    assert (store.version("set_keys"), store.version("set_config")) == (9, 2)
    assert store.remember("x", 10**10, now=0.0)
    store.close()
    reopened = CommandStore(path)
    assert (reopened.version("set_keys"), reopened.version("set_config")) == (9, 2)
    assert reopened.remember("x", 10**10, now=0.0) is False
    reopened.close()


def test_store_on_disk_is_durable_wal(tmp_path: Path) -> None:
    store = CommandStore(tmp_path / "c.sqlite3")
    mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    sync = store._db.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)  # 2 = FULL
    store.close()


def test_memory_store_keeps_nothing_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = CommandStore(None)
    assert store.remember("x", 10, now=0.0) and not store.remember("x", 10, now=0.0)
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    import sqlite3

    store = CommandStore(tmp_path / "c.sqlite3")
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.version("set_keys")


# -- strict arguments, ids on every ack, the canonical form ------------------------------


async def test_set_config_applies_and_records_its_version(rig: Rig) -> None:
    policy = rig.cfg.policy.model_dump(mode="json")
    ack = await rig.send("set_config", rig.env({"version": 2, "config": {"policy": policy}}))
    assert _code(ack) == ("ok", "ok"), ack
    assert ack.result is not None and ack.result["ok"] is True
    assert rig.store.version("set_config") == 2


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("set_context", {"version": 1, "weather": "rainy", "temperature_c": "4.0"}),
        ("set_keys", {"version": 1, "keys": {"2026-11-24": "ab" * 32}, "extra": "1"}),
        (
            "update_model",
            {"version": 1, "model_b64": "AAAA", "card": {}, "chunks": "2", "sha256": "0" * 64},
        ),
        ("display_message", {"text": "hi", "seconds": "3"}),
        ("forget", {"token": b"\0".hex() * 16, "x": 1}),
    ],
)
async def test_arguments_are_taken_strictly_as_json_types(
    rig: Rig, name: str, args: dict[str, Any]
) -> None:
    # a lax parse would turn "4.0" into 4.0 and "2" into 2; signed commands are strict
    ack = await rig.send(name, rig.env(args))
    assert _code(ack) == ("rejected", "schema"), ack
    if name in VERSIONED:
        assert rig.store.version(name) == 0


async def test_every_ack_after_parsing_carries_the_command_id(rig: Rig) -> None:
    ok = rig.env()
    assert (await rig.send("status", ok)).id == ok["id"]
    refused = rig.env({"token": "00"})  # the service refuses it
    ack = await rig.send("forget", refused)
    assert (ack.id, ack.code) == (refused["id"], "schema")


async def test_counts_accumulate(rig: Rig) -> None:
    for _ in range(3):
        await rig.send("status", rig.env())
    await rig.send("status", b"[]")
    assert rig.proc.counts == {"ok": 3, "bad_json": 1}


def test_canonical_form_is_sorted_compact_utf8_without_sig() -> None:
    env = {"kid": "k", "args": {"b": 1, "a": "café"}, "id": "i", "sig": "x", "expires_at": 2}
    want = '{"args":{"a":"café","b":1},"expires_at":2,"id":"i","kid":"k"}'.encode()
    assert canonical(env) == want


def test_a_signature_made_by_another_implementation_verifies(rig: Rig) -> None:
    # what a central side in any language signs: the documented canonical bytes
    body = {"id": str(uuid.uuid4()), "kid": KID, "issued_at": NOW, "expires_at": NOW + 60}
    body["args"] = {"note": "ünïcode"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    env = {**body, "sig": base64.b64encode(rig.key.sign(text.encode("utf-8"))).decode()}
    assert canonical(env) == text.encode("utf-8")


def test_sign_defaults_to_a_five_minute_ttl() -> None:
    env = sign(Ed25519PrivateKey.generate(), "k", {}, issued_at=NOW)
    assert env["expires_at"] == NOW + 300
    uuid.UUID(env["id"])
    assert sign(Ed25519PrivateKey.generate(), "k", {}, issued_at=NOW, command_id="c")["id"] == "c"


async def test_store_is_usable_from_worker_threads(tmp_path: Path) -> None:
    import asyncio

    store = CommandStore(tmp_path / "c.sqlite3")  # opened on the loop thread
    assert await asyncio.to_thread(store.remember, "x", 10**10, 0.0)
    await asyncio.to_thread(store.set_version, "set_keys", 3)
    assert store.version("set_keys") == 3
    store.close()
