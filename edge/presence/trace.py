"""The presence trace format (JSON lines) that ``presence eval`` replays and the demo records.

Owns the models of one trace line, reading a trace file line by line (a malformed line is a
``TraceProblem`` naming its line number, and reading goes on), and the simulator's trace
recorder (``SimTraceRecorder``, for ``shelfedge demo --record-trace``).

A line is one of:

- an **app sighting** as the store app sends it (BRIEF §6): ``beacon`` (the identity object),
  ``rssi``, ``ts`` and, optionally, ``frame`` (the 21-byte token frame in hex);
- a **receiver advert**: ``receiver`` (a ``store.receivers`` id), ``manufacturer_data``
  (company id as decimal or ``0x`` hex → payload hex) and/or ``service_data`` (16-bit UUID hex
  like ``"fff4"`` or the full 128-bit UUID → payload hex), ``rssi``, ``ts``, optional
  ``address``;
- a **reference-beacon sample** as ``shelfedge calibrate --record`` writes it: ``receiver``,
  ``beacon`` (a ``store.beacons`` id), ``rssi``, ``ts`` (fixed infrastructure, never a phone).

Any line may carry the ground truth ``zone`` (a zone id; ``null`` = between zones; absent =
not known) and ``walk`` (groups one person's lines). An optional first line
``{"format": "shelfedge-trace/1", "source": ..., "seed": ...}`` says where the trace comes
from; a simulator trace names its seed so the replay can re-derive the simulated site day keys
(keys are never written into a trace).

Raw signals are in every line, so this format is for simulator output and deliberate
calibration walks only: the running daemon never writes it (only the simulator's recorder
does, and it refuses anything but a ``StoreSimulator``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge import strict_json
from edge.events import Advertisement
from edge.radio import frames
from edge.radio.advert_keys import company_id, service_uuid, short_uuid_key
from edge.radio.ingest import AppSighting

if TYPE_CHECKING:
    from edge.sim import AppReport, StoreSimulator

TRACE_FORMAT: Literal["shelfedge-trace/1"] = "shelfedge-trace/1"
MAX_LINE_CHARS = 64 * 1024
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})*$")
_NO_FRAME = "00" * frames.TOKEN_FRAME_LEN  # stands in while checking a frameless sighting

Rssi = Annotated[int, Field(ge=-127, le=20)]
ZoneId = Annotated[str, Field(min_length=1, max_length=63)]
WalkId = Annotated[str | int, Field()]


class TraceMeta(BaseModel):
    """The optional first line: which format and where the trace comes from."""

    model_config = ConfigDict(extra="forbid", strict=True)
    format: Literal["shelfedge-trace/1"]
    source: str = Field(default="unknown", max_length=64)
    seed: int | None = Field(default=None, description="simulator seed (source: simulator)")
    config: str | None = Field(default=None, max_length=4096, description="store config used")


class _Truth(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    zone: ZoneId | None = None
    walk: WalkId | None = None

    @property
    def has_truth(self) -> bool:
        """True when the line states its true zone (a zone id, or null = between zones)."""
        return "zone" in self.model_fields_set


class AppLine(_Truth):
    """An app sighting (BRIEF §6) with optional frame, ground truth and walk."""

    frame: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{42}$")
    beacon: dict[str, Any]
    rssi: Rssi
    ts: float

    def app_object(self, frame_hex: str) -> dict[str, Any]:
        """The app-sighting object the daemon's ingest receives (BRIEF §6)."""
        return {"frame": frame_hex, "beacon": self.beacon, "rssi": self.rssi, "ts": self.ts}


class AdvertLine(_Truth):
    """A BLE advertisement as a store receiver heard it."""

    receiver: str = Field(min_length=1, max_length=63)
    manufacturer_data: dict[str, str] = Field(default_factory=dict)
    service_data: dict[str, str] = Field(default_factory=dict)
    rssi: Rssi
    ts: float
    address: str | None = Field(default=None, max_length=64)

    @field_validator("manufacturer_data")
    @classmethod
    def _company_ids(cls, v: dict[str, str]) -> dict[str, str]:
        for key, payload in v.items():
            company_id(key)
            _payload_hex(payload)
        return v

    @field_validator("service_data")
    @classmethod
    def _uuids(cls, v: dict[str, str]) -> dict[str, str]:
        for key, payload in v.items():
            service_uuid(key)
            _payload_hex(payload)
        return v

    def advertisement(self) -> Advertisement:
        """The ``Advertisement`` a scanner would deliver for this line."""
        return Advertisement(
            self.address or "",
            self.rssi,
            self.ts,
            self.receiver,
            {company_id(k): bytes.fromhex(p) for k, p in self.manufacturer_data.items()},
            {service_uuid(k): bytes.fromhex(p) for k, p in self.service_data.items()},
        )


class BeaconLine(_Truth):
    """A reference beacon as a receiver heard it (``calibrate --record``): infrastructure."""

    receiver: str = Field(min_length=1, max_length=63)
    beacon: str = Field(min_length=1, max_length=63)
    rssi: Rssi
    ts: float


TraceLine = AppLine | AdvertLine | BeaconLine


def _payload_hex(value: str) -> None:
    if not _HEX.fullmatch(value):
        raise ValueError("payload must be hex (an even number of hex digits)")


@dataclass(frozen=True, slots=True)
class TraceProblem:
    """A line that could not be used, and why (never the line's content: it is raw)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(slots=True)
class Trace:
    """A read trace: its lines in file order (with line numbers) and the problems found."""

    meta: TraceMeta | None
    lines: list[tuple[int, TraceLine]]
    problems: list[TraceProblem]
    read: int = 0  # non-blank lines read


def _errors(exc: ValidationError) -> str:
    # Locations and messages only: pydantic's str() would quote the (raw) input.
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "line"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_line(text: str, lineno: int) -> TraceLine | TraceMeta:
    """One trace line → a model; raises ``ValueError`` with a message fit for a technician."""
    if len(text) > MAX_LINE_CHARS:
        raise ValueError(f"longer than {MAX_LINE_CHARS} characters")
    try:
        data = strict_json.loads(text)
    except strict_json.DuplicateKeyError as exc:
        raise ValueError(str(exc)) from None
    except (ValueError, RecursionError):
        raise ValueError("not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    try:
        if "format" in data:
            if lineno != 1:
                raise ValueError("the format line must be the first line")
            return TraceMeta.model_validate(data, strict=True)
        if "receiver" in data and isinstance(data.get("beacon"), str):
            return BeaconLine.model_validate(data, strict=True)
        if "receiver" in data:
            return AdvertLine.model_validate(data, strict=True)
        if "beacon" in data:
            line = AppLine.model_validate(data, strict=True)
            # The daemon's own rule for the sighting part (BRIEF §6), so a beacon the app
            # could not send is refused here with its line number, not dropped silently.
            AppSighting.model_validate(line.app_object(line.frame or _NO_FRAME), strict=True)
            return line
    except ValidationError as exc:
        raise ValueError(_errors(exc)) from None
    raise ValueError(
        "neither an app sighting (beacon, rssi, ts) nor a receiver advert "
        "(receiver, manufacturer_data/service_data, rssi, ts)"
    )


def iter_trace(stream: IO[str]) -> Iterator[tuple[int, TraceLine | TraceMeta | TraceProblem]]:
    """Each non-blank line of ``stream`` with its number: a model or the problem with it."""
    for lineno, raw in enumerate(stream, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            yield lineno, parse_line(text, lineno)
        except ValueError as exc:
            yield lineno, TraceProblem(lineno, str(exc))


def read_trace(path: Path) -> Trace:
    """Read a whole trace file (``OSError``/``UnicodeDecodeError`` when it cannot be read)."""
    trace = Trace(None, [], [])
    with path.open(encoding="utf-8") as stream:
        for lineno, item in iter_trace(stream):
            trace.read += 1
            if isinstance(item, TraceProblem):
                trace.problems.append(item)
            elif isinstance(item, TraceMeta):
                trace.meta = item
            else:
                trace.lines.append((lineno, item))
    return trace


# -- the simulator's recorder (shelfedge demo --record-trace) ---------------------------------


class SimTraceRecorder:
    """Writes what the simulator sends to the daemon's opted-in paths, with ground truth.

    Only a ``StoreSimulator`` can drive it (checked at construction): this is synthetic data
    the simulator made up, never something a radio or the store bus delivered. Opted-in phones
    only: adverts without a token frame (ordinary phones, junk, reference beacons heard by
    receivers) never reach the presence tracker, so they are left out.
    """

    def __init__(self, path: Path, sim: StoreSimulator, *, config: str | None = None) -> None:
        from edge.sim import StoreSimulator

        if not isinstance(sim, StoreSimulator):
            raise TypeError("only the store simulator's output may be recorded as a trace")
        self._sim = sim
        cfg = sim.cfg.radio
        self._svc_key = frames.uuid16_key(cfg.token_service_uuid)
        self._company = cfg.token_company_id
        self._accept_sd = cfg.accept in ("both", "service_data")
        self._accept_md = cfg.accept in ("both", "manufacturer_data")
        self.lines = 0
        self._file = path.open("w", encoding="utf-8")
        meta = TraceMeta(format=TRACE_FORMAT, source="simulator", seed=sim.seed, config=config)
        self._write(meta.model_dump(exclude_none=True))

    def _write(self, obj: dict[str, Any]) -> None:
        self._file.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.lines += 1

    def _truth(self, rpi: bytes, ts: float) -> dict[str, Any] | None:
        shopper = self._sim.shopper(rpi)
        if shopper is None:
            return None
        return {"zone": self._sim.true_zone(rpi, ts), "walk": f"s{shopper.id}"}

    def _token_payload(self, adv: Advertisement) -> tuple[str, str, bytes] | None:
        if self._accept_sd and self._svc_key in adv.service_data:
            return "service_data", short_uuid_key(self._svc_key), adv.service_data[self._svc_key]
        payload = adv.manufacturer_data.get(self._company)
        if self._accept_md and payload is not None and len(payload) == frames.TOKEN_FRAME_LEN:
            return "manufacturer_data", f"0x{self._company:04x}", payload
        return None

    def item(self, item: Advertisement | AppReport) -> None:
        """Record one simulator item (an advert per receiver, or one app report batch)."""
        if isinstance(item, Advertisement):
            found = self._token_payload(item)
            if found is None:
                return
            field_name, key, payload = found
            truth = self._truth(payload[1:17], item.ts)
            if truth is None:
                return
            self._write(
                {
                    "receiver": item.receiver,
                    "address": item.address,
                    field_name: {key: payload.hex()},
                    "rssi": item.rssi,
                    "ts": item.ts,
                    **truth,
                }
            )
            return
        for obj in json.loads(item.payload):
            truth = self._truth(bytes.fromhex(obj["frame"])[1:17], obj["ts"])
            if truth is not None:
                self._write({**obj, **truth})

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()
