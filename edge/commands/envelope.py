"""The command envelope and ack (BRIEF §6): the contract shared by device and central side.

``sig`` is Ed25519 over the canonical JSON of the envelope without ``sig``:
``json.dumps(env, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` as UTF-8, in
standard base64 with padding — so any other implementation can reproduce it.
"""

from __future__ import annotations

import base64
import enum
import json
import uuid
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, field_validator

COMMANDS = (
    "status",
    "set_config",
    "set_campaigns",
    "set_keys",
    "set_context",
    "update_model",
    "forget",
    "display_message",
    "screenshot",
    "restart",
)
VERSIONED = frozenset({"set_config", "set_campaigns", "set_keys", "set_context", "update_model"})


class AckCode(enum.StrEnum):
    """Stable machine-readable ack codes (documented in docs/COMMANDS.md)."""

    OK = "ok"
    BAD_JSON = "bad_json"
    UNKNOWN_COMMAND = "unknown_command"
    SCHEMA = "schema"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    SKEW = "skew"
    REPLAYED = "replayed"
    STALE_VERSION = "stale_version"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    FAILED = "failed"


class Envelope(BaseModel):
    """``{id, kid, issued_at, expires_at, args, sig}`` with strict types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: StrictStr
    kid: StrictStr
    issued_at: StrictInt
    expires_at: StrictInt
    args: dict[str, Any]
    sig: StrictStr

    @field_validator("id")
    @classmethod
    def _uuid(cls, v: str) -> str:
        uuid.UUID(v)
        return v


class Ack(BaseModel):
    """``{id, status, code, message, result}``: never echoes a raw datum."""

    model_config = ConfigDict(extra="forbid")

    id: str | None
    status: Literal["ok", "error", "rejected"]
    code: str
    message: str = ""
    result: dict[str, Any] | None = None


def canonical(unsigned: dict[str, Any]) -> bytes:
    """The bytes that are signed: canonical JSON of the envelope without ``sig``."""
    body = {k: v for k, v in unsigned.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(
    key: Ed25519PrivateKey,
    kid: str,
    args: dict[str, Any],
    *,
    issued_at: int,
    ttl_s: int = 300,
    command_id: str | None = None,
) -> dict[str, Any]:
    """A complete signed envelope (what the central side publishes on ``cmd/{name}``)."""
    env: dict[str, Any] = {
        "id": command_id or str(uuid.uuid4()),
        "kid": kid,
        "issued_at": issued_at,
        "expires_at": issued_at + ttl_s,
        "args": args,
    }
    env["sig"] = base64.b64encode(key.sign(canonical(env))).decode()
    return env
