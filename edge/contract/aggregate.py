"""The published aggregate messages (topic ``shelfedge/v1/{site}/{device}/agg``), as a contract.

Every message the device publishes on ``agg`` validates as one of the models below; they are
told apart by ``release`` (a message without it is a ``window``, the first release kind).
``parse`` reads a payload (bytes, str or a decoded mapping) into the right model and raises
``pydantic.ValidationError`` for anything else. ``cells`` flattens any message into uniform
rows, so a central store needs no knowledge of each shape: one row per published or
suppressed cell, ``value`` ``None`` (and ``suppressed`` true) when the noisy count was below k.

Release kinds:

- ``window``: one time window (default 15 min) per zone: visitors, dwell histogram, offers
  per coupon, holdout size; suppressed cells are left out (a zone's ``visitors`` is ``null``).
- ``day``: one site-local day (or the part of it before a stop: ``partial``), as named
  statistics, each with its own ε, sensitivity and noise scale, and every cell listed (``null``
  = suppressed). Statistic names and their keys are described in docs/ANALYTICS.md.
- ``period``: a statistic (footfall) summed over the counted days of a calendar period of
  ``privacy.period_days`` days (``first_day``..``last_day``; ``days`` lists the days counted),
  with the noise of one day; each statistic also states the ε it takes of each day
  (``epsilon_per_day``). ``partial`` = published early at a stop.

This module never imports device code (``edge.fleet`` relies on that).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

STORE_WIDE = "*"  # the ``zone`` of a cell that is not about one zone (offers, hours, holdout)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- release "window" ----------------------------------------------------------------------


class WindowZone(_Model):
    """One zone of a window: noisy visitors (``None`` = suppressed), dwell bucket → count."""

    visitors: int | None = None
    dwell_s: dict[str, int] = Field(default_factory=dict)


class WindowPrivacy(_Model):
    """How a window was protected."""

    k: int
    epsilon_window: float
    noise: Literal["discrete_laplace"] = "discrete_laplace"
    noise_scale: float
    sensitivity: int
    tokens_per_window: int


class WindowMessage(_Model):
    """One time window of aggregates (``release: window``)."""

    release: Literal["window"] = "window"
    id: str
    site: str
    device: str
    window_start: int
    window_end: int
    partial: bool
    zones: dict[str, WindowZone]
    offers: dict[str, int]
    holdout: int | None
    cells: int
    cells_suppressed: int
    privacy: WindowPrivacy


# -- release "day" -------------------------------------------------------------------------


class Statistic(_Model):
    """One released statistic: its ε, per-person sensitivity, noise scale and every cell.

    ``values`` maps a zone (``"*"`` for store-wide) to key → noisy count, ``None`` where the
    noisy count was below k (suppressed). Keys depend on the statistic (docs/ANALYTICS.md).
    """

    epsilon: float = Field(ge=0)
    sensitivity: int = Field(ge=0, description="L1 bound of one person's contribution")
    noise_scale: float = Field(gt=0)
    values: dict[str, dict[str, int | None]]


class DayPrivacy(_Model):
    """How a day release was protected (ε is the sum over its statistics)."""

    k: int
    epsilon: float
    noise: Literal["discrete_laplace"] = "discrete_laplace"
    tokens_per_person: int = Field(description="tokens one person can show in the period")


class DayMessage(_Model):
    """One site-local day of aggregates (``release: day``)."""

    release: Literal["day"]
    id: str
    site: str
    device: str
    day: str = Field(description="site-local date YYYY-MM-DD")
    period_start: int
    period_end: int
    partial: bool
    stats: dict[str, Statistic]
    cells: int
    cells_suppressed: int
    privacy: DayPrivacy


# -- release "period" ----------------------------------------------------------------------


class PeriodStatistic(Statistic):
    """A statistic summed over a period: ε over the period and the ε it takes of each day."""

    epsilon_per_day: float = Field(ge=0, description="ε one person's data of one day costs")


class PeriodPrivacy(_Model):
    """How a period release was protected (ε summed over statistics and counted days)."""

    k: int
    epsilon: float
    epsilon_per_day: float = Field(description="ε the release takes of a fully counted day")
    noise: Literal["discrete_laplace"] = "discrete_laplace"
    tokens_per_person: int = Field(description="tokens one person can show over the days")
    tokens_per_person_per_day: int = Field(description="tokens in one full day's hours")


class PeriodMessage(_Model):
    """Statistics summed over the counted days of a calendar period (``release: period``)."""

    release: Literal["period"]
    id: str
    site: str
    device: str
    first_day: str = Field(description="first site-local date of the period YYYY-MM-DD")
    last_day: str = Field(description="last site-local date of the period YYYY-MM-DD")
    days: list[str] = Field(description="site-local dates counted (their ε was reserved)")
    period_start: int
    period_end: int
    partial: bool
    stats: dict[str, PeriodStatistic]
    cells: int
    cells_suppressed: int
    privacy: PeriodPrivacy


def _release(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("release", "window"))
    return str(getattr(value, "release", "window"))


AggregateMessage = Annotated[
    Annotated[WindowMessage, Tag("window")]
    | Annotated[DayMessage, Tag("day")]
    | Annotated[PeriodMessage, Tag("period")],
    Discriminator(_release),
]
Message = WindowMessage | DayMessage | PeriodMessage
_ADAPTER: TypeAdapter[Message] = TypeAdapter(AggregateMessage)
RELEASES: tuple[str, ...] = ("window", "day", "period")


def parse(payload: bytes | str | Mapping[str, Any]) -> Message:
    """Validate a published aggregate payload; ``pydantic.ValidationError`` when it is not one.

    Bytes and strings are decoded as JSON first (a ``ValueError`` for text that is not JSON).
    """
    if isinstance(payload, bytes | str):
        data: Any = json.loads(payload)
    else:
        data = payload
    return _ADAPTER.validate_python(data)


def json_schema() -> dict[str, Any]:
    """JSON Schema of any aggregate message (for documentation and cross-checks)."""
    return _ADAPTER.json_schema()


# -- flat cells ----------------------------------------------------------------------------


class Cell(_Model):
    """One row of any aggregate message, the same shape for every release kind."""

    message_id: str
    site: str
    device: str
    release: str
    period_start: int
    period_end: int
    stat: str
    zone: str
    key: str
    value: int | None
    suppressed: bool
    epsilon: float | None = Field(
        default=None, description="ε of the statistic this cell belongs to (per person)"
    )


def _window_cells(m: WindowMessage) -> list[Cell]:
    def cell(stat: str, zone: str, key: str, value: int | None) -> Cell:
        return Cell(
            message_id=m.id,
            site=m.site,
            device=m.device,
            release=m.release,
            period_start=m.window_start,
            period_end=m.window_end,
            stat=stat,
            zone=zone,
            key=key,
            value=value,
            suppressed=value is None,
            epsilon=m.privacy.epsilon_window,
        )

    out: list[Cell] = []
    for zone, z in sorted(m.zones.items()):
        out.append(cell("visitors", zone, "visitors", z.visitors))
        out.extend(cell("dwell", zone, label, n) for label, n in z.dwell_s.items())
    out.extend(cell("offers", STORE_WIDE, cid, n) for cid, n in sorted(m.offers.items()))
    out.append(cell("holdout", STORE_WIDE, "tokens", m.holdout))
    return out


def _day_cells(m: DayMessage | PeriodMessage) -> list[Cell]:
    out: list[Cell] = []
    for stat, block in sorted(m.stats.items()):
        for zone, keyed in sorted(block.values.items()):
            for key, value in keyed.items():
                out.append(
                    Cell(
                        message_id=m.id,
                        site=m.site,
                        device=m.device,
                        release=m.release,
                        period_start=m.period_start,
                        period_end=m.period_end,
                        stat=stat,
                        zone=zone,
                        key=key,
                        value=value,
                        suppressed=value is None,
                        epsilon=block.epsilon,
                    )
                )
    return out


def cells(message: Message) -> list[Cell]:
    """Every cell of a message as uniform rows (suppressed cells that the message lists too).

    A ``window`` message leaves suppressed dwell/offer cells out altogether, so only its
    suppressed ``visitors`` and ``holdout`` cells appear as rows with ``value`` ``None``; a
    ``day`` or ``period`` message lists every cell (a period's cells span ``period_start``
    to ``period_end`` and carry the statistic's ε over the period).
    """
    if isinstance(message, WindowMessage):
        return _window_cells(message)
    return _day_cells(message)
