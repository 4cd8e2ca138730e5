"""What ``fleet listen`` accepts: a topic and a payload become a typed message or a reject.

Topics are ``shelfedge/v1/{site}/{device}/{agg|state|ack}`` (docs/asyncapi.yaml). Aggregates
are validated by the contract (``edge.contract.aggregate``: every release kind) and flattened
into its cells, one row per statistic; state and acks by the models below, which mirror the
``State`` and ``Ack`` schemas. A reject carries only a *kind* (never
the payload or the validator's message, which would quote it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.contract import aggregate as contract
from edge.contract.aggregate import Cell

TOPIC_RE = re.compile(r"^shelfedge/v1/([^/]+)/([^/]+)/(agg|state|ack)$")
_M = TypeVar("_M", bound=BaseModel)
REJECT_KINDS = ("too_large", "bad_topic", "bad_json", "schema", "below_k", "topic_mismatch")


class Reject(Exception):
    """A message the listener will not store; ``kind`` is one of ``REJECT_KINDS``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A validated aggregate message, ready to store."""

    id: str
    site: str
    device: str
    release: str
    period_start: int
    period_end: int
    epsilon: float
    k: int
    noise_scale: float | None  # one scale for the whole message (``window``), else per stat
    cells_total: int
    cells_suppressed: int
    body: str  # the validated message as JSON (aggregates only)
    cells: tuple[Cell, ...]


def parse_topic(topic: str) -> tuple[str, str, str]:
    """``(site, device, channel)`` of a device topic, or ``Reject("bad_topic")``."""
    m = TOPIC_RE.match(topic)
    if m is None:
        raise Reject("bad_topic")
    return m.group(1), m.group(2), m.group(3)


def _validate(model: type[_M], payload: bytes) -> _M:
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        bad_json = any(e["type"] == "json_invalid" for e in exc.errors())
        raise Reject("bad_json" if bad_json else "schema") from None


def parse_aggregate(topic: str, payload: bytes) -> Aggregate:
    """Validate an ``agg`` message against the contract; every published count must be >= k."""
    site, device, _ = parse_topic(topic)
    try:
        msg = contract.parse(payload)
    except ValidationError:
        raise Reject("schema") from None
    except ValueError:  # not JSON, or not UTF-8
        raise Reject("bad_json") from None
    if (msg.site, msg.device) != (site, device):
        raise Reject("topic_mismatch")
    if isinstance(msg, contract.WindowMessage):
        period = (msg.window_start, msg.window_end)
        epsilon, scale = msg.privacy.epsilon_window, msg.privacy.noise_scale
    else:
        period = (msg.period_start, msg.period_end)
        epsilon, scale = msg.privacy.epsilon, None
    if period[1] < period[0] or not 0 <= msg.cells_suppressed <= msg.cells:
        raise Reject("schema")
    cells = contract.cells(msg)
    if any(c.value is not None and c.value < msg.privacy.k for c in cells):
        raise Reject("below_k")
    return Aggregate(
        id=msg.id,
        site=msg.site,
        device=msg.device,
        release=msg.release,
        period_start=period[0],
        period_end=period[1],
        epsilon=epsilon,
        k=msg.privacy.k,
        noise_scale=scale,
        cells_total=msg.cells,
        cells_suppressed=msg.cells_suppressed,
        body=msg.model_dump_json(),
        cells=tuple(cells),
    )


# -- device state and acks ------------------------------------------------------------------


class ComponentHealth(_Strict):
    state: Literal["starting", "running", "backoff", "failed", "stopped"]
    restarts: int = Field(ge=0)
    last_error: str | None


class OutboxHealth(_Strict):
    pending: int | None = None
    recovered: bool | None = None


class Health(_Strict):
    ok: bool | None = None
    components: dict[str, ComponentHealth] = Field(default_factory=dict)
    outbox: OutboxHealth | None = None
    beacons_heard: int | None = Field(default=None, ge=0)
    pending_restart: list[str] = Field(default_factory=list)
    insecure_transport: bool | None = None


class StatePrivacy(_Strict):
    k: int | None = None
    window_s: int | None = None
    raw_retention_s: float | None = None
    epsilon_per_day: float | None = None
    epsilon_per_window: float | None = None
    epsilon_worst_case_per_day: float | None = None
    epsilon_spent_today: float | None = None
    epsilon_remaining_today: float | None = None
    windows_published_today: int | None = None
    anonymous_footfall: bool | None = None


class State(_Strict):
    """The retained device state (docs/asyncapi.yaml ``State``)."""

    online: bool
    site: str = Field(min_length=1, max_length=128)
    device: str = Field(min_length=1, max_length=128)
    reason: str | None = None
    version: str | None = None
    config_hash: str | None = None
    model_id: str | None = None
    uptime_s: float | None = None
    health: Health | None = None
    privacy: StatePrivacy | None = None


def parse_state(topic: str, payload: bytes) -> State:
    """Validate a ``state`` message (site and device must match the topic)."""
    site, device, _ = parse_topic(topic)
    state = _validate(State, payload)
    if (state.site, state.device) != (site, device):
        raise Reject("topic_mismatch")
    return state


class Ack(BaseModel):
    """A command ack (docs/asyncapi.yaml ``Ack``); counted by status, never stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None
    status: Literal["ok", "error", "rejected"]
    code: str
    message: str
    result: dict[str, object] | None


def parse_ack(topic: str, payload: bytes) -> Ack:
    """Validate an ``ack`` message."""
    parse_topic(topic)
    return _validate(Ack, payload)
