"""Verify a command, guard it, run it through the device service, and answer with one ack.

Order of checks (each failure is a ``rejected`` ack with a stable code and no state change):
size before parsing (``too_large``), JSON without duplicate keys (``bad_json``), the strict
envelope (``schema``), a known command (``unknown_command``), a trusted ``kid``
(``unknown_key``), the Ed25519 signature (``bad_signature``), expiry (``expired``), the skew
bound on ``issued_at`` (``skew``), a per-key rate limit (``rate_limited``), a replayed id
(``replayed``) and, for state-setting commands, a version above the last one applied
(``stale_version``, with the current version in the ack). A command the service refuses is
``rejected`` with ``schema``; one that fails while running is ``error``/``failed``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from edge import strict_json
from edge.config.models import AppConfig
from edge.errors import CommandRejected

from .envelope import COMMANDS, VERSIONED, Ack, AckCode, Envelope, canonical
from .store import CommandStore

_LOGGER = logging.getLogger(__name__)
RATE_PER_S = 5.0
# service refusal code → (ack code, ack status)
_SERVICE_CODES: dict[str, tuple[AckCode, Literal["rejected", "error"]]] = {
    "bad_args": (AckCode.SCHEMA, "rejected"),
    "unknown_method": (AckCode.UNKNOWN_COMMAND, "rejected"),
    "stale_version": (AckCode.STALE_VERSION, "rejected"),
    "too_large": (AckCode.TOO_LARGE, "error"),
    "model_rejected": (AckCode.FAILED, "error"),
}
RATE_BURST = 20.0


class Service(Protocol):  # pragma: no mutate block (a Protocol: its defaults never run)
    """What commands need from the device service (``edge.daemon.service.DeviceService``)."""

    async def dispatch(
        self, method: str, args: dict[str, Any], *, strict: bool = False, published: bool = False
    ) -> dict[str, Any]:
        """Validate arguments and run one service method."""
        ...

    async def screenshot_png(self) -> dict[str, Any]:
        """The current screen as a base64 PNG."""
        ...


class _Reject(Exception):
    def __init__(self, code: AckCode, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.result = result


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class CommandProcessor:
    """Turns one inbound command message into exactly one ack."""

    def __init__(
        self,
        cfg: AppConfig,
        service: Service,
        store: CommandStore,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self._cmd = cfg.commands
        self._service = service
        self._store = store
        self._clock = clock
        self._mono = monotonic
        self._on_restart = on_restart
        self._keys: dict[str, Ed25519PublicKey] = {}
        for kid, b64 in cfg.commands.trusted_keys.items():
            try:
                self._keys[kid] = Ed25519PublicKey.from_public_bytes(base64.b64decode(b64))
            except (ValueError, binascii.Error):
                _LOGGER.error("commands.trusted_keys.%s is not a base64 Ed25519 key; ignored", kid)
        self._buckets: dict[str, _Bucket] = {}
        self.counts: dict[str, int] = {}

    async def handle(self, name: str, payload: bytes) -> Ack:
        """Check and run one command received on ``cmd/{name}``; never raises."""
        command_id: str | None = None
        try:
            env = self._parse(payload)
            command_id = env.id
            self._check(name, env)
            result = await self._run(name, env)
        except _Reject as rej:
            ack = Ack(
                id=command_id, status="rejected", code=rej.code, message=str(rej), result=rej.result
            )
        except CommandRejected as exc:  # the service refused the arguments or could not do it
            code, status = _SERVICE_CODES.get(exc.code, (AckCode.FAILED, "error"))
            ack = Ack(id=command_id, status=status, code=code, message=str(exc))
        except Exception as exc:  # a failure while running: the class only, never the text
            _LOGGER.error("command %s failed: %s", name, type(exc).__name__)
            ack = Ack(
                id=command_id, status="error", code=AckCode.FAILED, message=type(exc).__name__
            )
        else:
            ack = Ack(id=command_id, status="ok", code=AckCode.OK, result=result)
        self.counts[ack.code] = self.counts.get(ack.code, 0) + 1
        return ack

    def _parse(self, payload: bytes) -> Envelope:
        if len(payload) > self._cmd.max_payload_bytes:
            raise _Reject(AckCode.TOO_LARGE, f"over {self._cmd.max_payload_bytes} bytes")
        try:
            data = strict_json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise _Reject(AckCode.BAD_JSON, "not a JSON object without duplicate keys") from exc
        if not isinstance(data, dict):
            raise _Reject(AckCode.BAD_JSON, "not a JSON object")
        try:
            return Envelope.model_validate(data)
        except ValidationError as exc:
            where = "; ".join(
                # no mutate: the envelope is flat, so a loc is one field and never empty
                f"{'.'.join(map(str, e['loc'])) or '<envelope>'}: {e['type']}"  # pragma: no mutate
                for e in exc.errors()[:3]
            )
            raise _Reject(AckCode.SCHEMA, f"envelope: {where}") from None

    def _check(self, name: str, env: Envelope) -> None:
        if name not in COMMANDS:
            raise _Reject(AckCode.UNKNOWN_COMMAND, f"unknown command {name!r}")
        key = self._keys.get(env.kid)
        if key is None:
            raise _Reject(AckCode.UNKNOWN_KEY, f"kid {env.kid!r} is not trusted")
        try:
            sig = base64.b64decode(env.sig, validate=True)
            key.verify(sig, canonical(env.model_dump()))
        except (InvalidSignature, ValueError, binascii.Error):
            raise _Reject(AckCode.BAD_SIGNATURE, "signature does not verify") from None
        now = self._clock()
        if env.expires_at <= now:
            raise _Reject(AckCode.EXPIRED, "expires_at has passed")
        if abs(env.issued_at - now) > self._cmd.max_skew_s:
            raise _Reject(AckCode.SKEW, f"issued_at further than {self._cmd.max_skew_s} s from now")
        if not self._take(env.kid):
            raise _Reject(AckCode.RATE_LIMITED, "too many commands from this key")
        if not self._store.remember(env.id, env.expires_at, now):
            raise _Reject(AckCode.REPLAYED, "this command id was already seen")
        if name in VERSIONED:
            version = env.args.get("version")
            if type(version) is not int:
                raise _Reject(AckCode.SCHEMA, "args.version must be an integer")
            current = self._store.version(name)
            if version <= current:
                raise _Reject(
                    AckCode.STALE_VERSION,
                    f"version {version} <= current {current}",
                    {"current_version": current},
                )

    def _take(self, kid: str) -> bool:
        now = self._mono()
        bucket = self._buckets.setdefault(kid, _Bucket(RATE_BURST, now))
        bucket.tokens = min(RATE_BURST, bucket.tokens + (now - bucket.at) * RATE_PER_S)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    async def _run(self, name: str, env: Envelope) -> dict[str, Any]:
        args = dict(env.args)
        match name:
            case "restart":
                if self._on_restart is not None:
                    self._on_restart()
                return {"restarting": True}
            case "screenshot":
                return await self._service.screenshot_png()
            case "set_config" | "set_campaigns" | "set_keys" | "set_context":
                result = await self._service.dispatch(name, args, strict=True)
                self._store.set_version(name, int(args["version"]))
                return result
            case "update_model":
                result = await self._service.dispatch("install_model", args, strict=True)
                if result.get("model_id") is not None:  # the last piece: the model is in
                    self._store.set_version(name, int(args["version"]))
                return result
            case "status":
                return await self._service.dispatch("status", args, strict=True, published=True)
            case _:
                return await self._service.dispatch(name, args, strict=True)
