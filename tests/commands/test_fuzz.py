"""10,000 random or mutated envelopes: every one acked, no state change, the service alive."""

from __future__ import annotations

import base64
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.commands.envelope import COMMANDS, sign
from edge.commands.processor import CommandProcessor
from edge.commands.store import CommandStore
from edge.daemon.app import Application, Features
from tests.helpers import demo_config

N = 10_000


def _mutate(rng: random.Random, base: dict[str, Any], raw: bytes) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randrange(0, 300))
    if kind == 1:  # flip bytes of a valid envelope
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:  # truncate
        return raw[: rng.randrange(len(raw))]
    env = json.loads(raw)
    if kind == 3:  # drop a key
        env.pop(rng.choice(list(env)), None)
    elif kind == 4:  # a field of the wrong type
        env[rng.choice(list(env))] = rng.choice([None, True, 1.5, "x", [], {}, -(2**70)])
    elif kind == 5:  # tamper with args, keep the signature
        env["args"] = {"version": rng.randrange(-5, 10**6), "keys": {"2026-01-01": "00" * 32}}
    elif kind == 6:  # an extra key
        env[rng.choice(["extra", "sig2", "ID"])] = rng.random()
    else:  # duplicate key by hand
        text = json.dumps(env)
        return (text[:-1] + ', "id": "' + str(rng.random()) + '"}').encode()
    return json.dumps(env).encode()


@pytest.mark.timeout(300)
async def test_fuzzed_envelopes_change_nothing(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pub = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    cfg = demo_config(state_dir=tmp_path / "state")
    cfg = cfg.model_copy(
        update={"commands": cfg.commands.model_copy(update={"trusted_keys": {"k": pub.decode()}})}
    )
    app = Application(
        cfg,
        features=Features(display=False, mqtt=False, model=False, autotick=False, control=False),
    )
    await app.start()
    try:
        processor = CommandProcessor(cfg, app.service, CommandStore(None))
        processor._take = lambda kid: True  # type: ignore[method-assign]  # fuzz, not throttle
        rng = random.Random(0)
        bases = []
        for name in ("set_keys", "set_campaigns", "set_context", "forget", "status"):
            args: dict[str, Any] = {
                "set_keys": {"version": 1, "keys": {"2026-11-24": "ab" * 32}},
                "set_campaigns": {"version": 1, "campaigns": []},
                "set_context": {"version": 1, "weather": "snowy", "temperature_c": -3.0},
                "forget": {"token": "00" * 16},
                "status": {},
            }[name]
            env = sign(key, "k", args, issued_at=int(time.time()))
            raw = json.dumps(env).encode()
            first = await processor.handle(name, raw)  # applied once: its id is now seen
            assert first.status == "ok", first
            bases.append((name, env, raw))

        def snapshot() -> tuple[Any, ...]:
            return (
                app.state.published()["config_hash"],
                app.keys.version,
                app.keys.days,
                app.engine.context,
                len(app.cfg.campaigns),
            )

        before = snapshot()
        codes: dict[str, int] = {}
        for _ in range(N):
            name, env, raw = rng.choice(bases)
            target = name if rng.random() < 0.9 else rng.choice([*COMMANDS, "nope", ""])
            ack = await processor.handle(target, _mutate(rng, env, raw))
            assert ack.status in ("rejected", "error", "ok")
            codes[ack.code] = codes.get(ack.code, 0) + 1
        assert snapshot() == before
        assert sum(codes.values()) == N  # every message got exactly one ack
        # only non-state commands can succeed (a byte flip in whitespace keeps status valid
        # but its id was seen: replayed), so "ok" comes from status/forget at most
        assert codes.get("ok", 0) == 0, codes
        assert (await app.service.status())["online"] is True
    finally:
        await app.stop()
