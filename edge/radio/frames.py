"""Decode BLE advertisement payloads: the ShelfEdge token frame and every reference-beacon format.

Formats: the token frame (BRIEF §4), Apple iBeacon, AltBeacon, and the four Eddystone frames
(UID, URL, unencrypted TLM, EID) as the Google Eddystone specification lays them out.
Decoders take raw payload bytes and return a small frozen dataclass, ``None`` for "not this
format", or raise ``FrameError`` (saying which format, what and where) for a malformed frame
of a known kind. They never raise anything else on arbitrary bytes.

What the specifications reject is rejected: short payloads, a wrong iBeacon length byte,
non-zero Eddystone reserved bits and RFU bytes, unknown Eddystone frame types, URL scheme
bytes and reserved URL bytes, unknown TLM versions. What real devices do and the formats
allow is tolerated: bytes after a complete fixed-length body (iBeacon, AltBeacon, Eddystone
UID/TLM/EID) and any signed tx-power byte, positive ones included. ``classify`` picks the
frame of one whole advertisement (several company ids and service UUIDs at once).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from edge.errors import FrameError

TOKEN_FRAME_LEN = 21
TOKEN_VERSION = 1
APPLE_COMPANY_ID = 0x004C
EDDYSTONE_UUID16 = 0xFEAA

IBEACON_LEN = 23  # 02 15 uuid(16) major(2) minor(2) power(1)
ALTBEACON_LEN = 24  # be ac id(20) ref_rssi(1) mfg_reserved(1)
EDDYSTONE_UID_LEN = 18  # + 2 RFU bytes in the full frame
EDDYSTONE_UID_FULL_LEN = 20
EDDYSTONE_TLM_LEN = 14
EDDYSTONE_EID_LEN = 10
EDDYSTONE_URL_MAX_ENCODED = 17

FRAME_UID, FRAME_URL, FRAME_TLM, FRAME_EID = 0x00, 0x10, 0x20, 0x30
TLM_PLAIN, TLM_ENCRYPTED = 0x00, 0x01
TLM_TEMP_UNSUPPORTED = 0x8000  # -128 °C: "not supported" in the TLM spec

URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
URL_EXPANSIONS = (
    ".com/",
    ".org/",
    ".edu/",
    ".net/",
    ".info/",
    ".biz/",
    ".gov/",
    ".com",
    ".org",
    ".edu",
    ".net",
    ".info",
    ".biz",
    ".gov",
)

_IBEACON_TYPE = 0x02
_IBEACON_DATA_LEN = 0x15
_ALTBEACON_CODE = b"\xbe\xac"
_IBEACON_TAIL = struct.Struct(">HHb")  # major, minor, measured power


def _s8(byte: int) -> int:
    """A byte as a signed 8-bit integer (tx power, reference RSSI)."""
    return byte - 256 if byte > 127 else byte


@dataclass(frozen=True, slots=True)
class TokenFrame:
    """RAW. ShelfEdge token frame v1 (BRIEF §4)."""

    kind: ClassVar[str] = "token"
    version: int
    tier: int
    rpi: bytes
    tag: bytes

    @property
    def header(self) -> int:
        """Byte 0: version in the high nibble, consent tier in the low nibble."""
        return (self.version << 4) | self.tier


@dataclass(frozen=True, slots=True)
class IBeacon:
    """Apple iBeacon; ``tx_power`` is the measured power at 1 m (dBm)."""

    kind: ClassVar[str] = "ibeacon"
    uuid: str
    major: int
    minor: int
    tx_power: int


@dataclass(frozen=True, slots=True)
class EddystoneUid:
    """Eddystone-UID; ``tx_power`` is the calibrated power at 0 m (dBm)."""

    kind: ClassVar[str] = "eddystone_uid"
    namespace: str
    instance: str
    tx_power: int


@dataclass(frozen=True, slots=True)
class AltBeacon:
    """AltBeacon; ``ref_rssi`` is the average RSSI at 1 m (dBm)."""

    kind: ClassVar[str] = "altbeacon"
    beacon_id: str
    mfg_id: int
    ref_rssi: int


@dataclass(frozen=True, slots=True)
class EddystoneUrl:
    """Eddystone-URL with the scheme prefix and expansion codes expanded."""

    kind: ClassVar[str] = "eddystone_url"
    url: str
    tx_power: int


@dataclass(frozen=True, slots=True)
class EddystoneTlm:
    """Unencrypted Eddystone-TLM: a beacon's battery, temperature and counters.

    ``battery_mv`` is None when the beacon reports 0 (not supported), ``temperature_c`` is
    None for 0x8000 (not supported); ``uptime_s`` is the 0.1 s counter in seconds.
    """

    kind: ClassVar[str] = "eddystone_tlm"
    battery_mv: int | None
    temperature_c: float | None
    adv_count: int
    uptime_s: float


@dataclass(frozen=True, slots=True)
class EddystoneEid:
    """Eddystone-EID: recognised, not resolved (resolving needs the beacon's key)."""

    kind: ClassVar[str] = "eddystone_eid"
    eid: str
    tx_power: int


BeaconFrame = IBeacon | EddystoneUid | AltBeacon
EddystoneFrame = EddystoneUid | EddystoneUrl | EddystoneTlm | EddystoneEid
Frame = TokenFrame | IBeacon | AltBeacon | EddystoneUid | EddystoneUrl | EddystoneTlm | EddystoneEid


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that does not decode: the kind it claims (None if no known kind) and why."""

    kind: str | None
    error: str


def uuid16_key(uuid16: int) -> str:
    """The 128-bit service UUID string bleak uses for a 16-bit UUID."""
    return f"0000{uuid16:04x}-0000-1000-8000-00805f9b34fb"


def parse_token(payload: bytes) -> TokenFrame:
    """Decode a token frame payload (raise FrameError when malformed)."""
    if len(payload) != TOKEN_FRAME_LEN:
        raise FrameError(f"token frame must be {TOKEN_FRAME_LEN} bytes, got {len(payload)}")
    header = payload[0]
    version, tier = header >> 4, header & 0x0F
    if version != TOKEN_VERSION:
        raise FrameError(f"token frame: unsupported version {version} (byte 0)")
    if tier > 3:
        raise FrameError(f"token frame: consent tier {tier} out of range 0-3 (byte 0)")
    return TokenFrame(version, tier, bytes(payload[1:17]), bytes(payload[17:21]))


def parse_ibeacon(payload: bytes) -> IBeacon | None:
    """Decode Apple manufacturer data as iBeacon; None if it is not one.

    Apple's data is a type-length sequence; type 0x02 is iBeacon and its length byte must be
    0x15. Bytes after the 23-byte iBeacon element (further Apple elements) are ignored.
    """
    if not payload or payload[0] != _IBEACON_TYPE:
        return None
    if len(payload) < 2:
        raise FrameError("iBeacon: payload is 1 byte; the length byte (0x15) is missing")
    if payload[1] != _IBEACON_DATA_LEN:
        raise FrameError(f"iBeacon: length byte is 0x{payload[1]:02x}, must be 0x15 (byte 1)")
    if len(payload) < IBEACON_LEN:
        raise FrameError(f"iBeacon: payload is {len(payload)} bytes, needs {IBEACON_LEN}")
    u = payload[2:18].hex()
    major, minor, tx = _IBEACON_TAIL.unpack_from(payload, 18)
    return IBeacon(f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}", major, minor, tx)


def parse_altbeacon(company_id: int, payload: bytes) -> AltBeacon | None:
    """Decode manufacturer data (after the company id) as AltBeacon; None if it is not one.

    The manufacturer-reserved last byte may hold anything; bytes after it are ignored.
    """
    if not payload.startswith(_ALTBEACON_CODE):
        return None
    if len(payload) < ALTBEACON_LEN:
        raise FrameError(f"AltBeacon: payload is {len(payload)} bytes, needs {ALTBEACON_LEN}")
    return AltBeacon(payload[2:22].hex(), company_id, _s8(payload[22]))


def decode_eddystone_url(scheme: int, encoded: bytes) -> str:
    """Expand an Eddystone-URL scheme byte and encoded URL (raise FrameError if reserved)."""
    if scheme >= len(URL_SCHEMES):
        raise FrameError(f"Eddystone-URL: unknown URL scheme byte 0x{scheme:02x} (byte 2)")
    parts = [URL_SCHEMES[scheme]]
    for i, b in enumerate(encoded):
        if b < len(URL_EXPANSIONS):
            parts.append(URL_EXPANSIONS[b])
        elif 0x21 <= b <= 0x7E:
            parts.append(chr(b))
        else:
            raise FrameError(f"Eddystone-URL: reserved byte 0x{b:02x} in the URL (byte {3 + i})")
    return "".join(parts)


def _eddystone_uid(payload: bytes) -> EddystoneUid:
    n = len(payload)
    if n < EDDYSTONE_UID_LEN:
        raise FrameError(f"Eddystone-UID: frame is {n} bytes, needs {EDDYSTONE_UID_LEN}")
    if n > EDDYSTONE_UID_LEN and any(payload[EDDYSTONE_UID_LEN:EDDYSTONE_UID_FULL_LEN]):
        i = next(i for i in range(EDDYSTONE_UID_LEN, EDDYSTONE_UID_FULL_LEN) if payload[i])
        raise FrameError(f"Eddystone-UID: reserved byte {i} is 0x{payload[i]:02x}, must be 0")
    tx = payload[1]
    return EddystoneUid(payload[2:12].hex(), payload[12:18].hex(), tx - 256 if tx > 127 else tx)


def _eddystone_url(payload: bytes) -> EddystoneUrl:
    n = len(payload)
    if n < 3:
        raise FrameError(f"Eddystone-URL: frame is {n} bytes, needs at least 3")
    if n > 3 + EDDYSTONE_URL_MAX_ENCODED:
        raise FrameError(
            f"Eddystone-URL: encoded URL is {n - 3} bytes, at most {EDDYSTONE_URL_MAX_ENCODED}"
        )
    return EddystoneUrl(decode_eddystone_url(payload[2], payload[3:]), _s8(payload[1]))


def _eddystone_tlm(payload: bytes) -> EddystoneTlm:
    n = len(payload)
    if n < 2:
        raise FrameError("Eddystone-TLM: frame is 1 byte; the version byte is missing")
    version = payload[1]
    if version == TLM_ENCRYPTED:
        raise FrameError("Eddystone-TLM: encrypted (version 0x01) needs the beacon's key")
    if version != TLM_PLAIN:
        raise FrameError(f"Eddystone-TLM: unknown version 0x{version:02x} (byte 1)")
    if n < EDDYSTONE_TLM_LEN:
        raise FrameError(f"Eddystone-TLM: frame is {n} bytes, needs {EDDYSTONE_TLM_LEN}")
    battery = (payload[2] << 8) | payload[3]
    temp = (payload[4] << 8) | payload[5]
    if temp == TLM_TEMP_UNSUPPORTED:
        temperature = None
    else:
        temperature = (temp - 0x10000 if temp & 0x8000 else temp) / 256
    return EddystoneTlm(
        battery or None,
        temperature,
        int.from_bytes(payload[6:10], "big"),
        int.from_bytes(payload[10:14], "big") / 10,
    )


def _eddystone_eid(payload: bytes) -> EddystoneEid:
    n = len(payload)
    if n < EDDYSTONE_EID_LEN:
        raise FrameError(f"Eddystone-EID: frame is {n} bytes, needs {EDDYSTONE_EID_LEN}")
    return EddystoneEid(payload[2:10].hex(), _s8(payload[1]))


def parse_eddystone(payload: bytes) -> EddystoneFrame:
    """Decode Eddystone service data (UUID 0xFEAA); every defect raises FrameError."""
    if not payload:
        raise FrameError("Eddystone: empty service data (no frame type byte)")
    ftype = payload[0]
    if ftype & 0x0F:
        raise FrameError(f"Eddystone: frame type byte 0x{ftype:02x} has reserved low bits set")
    if ftype == FRAME_UID:
        return _eddystone_uid(payload)
    if ftype == FRAME_TLM:
        return _eddystone_tlm(payload)
    if ftype == FRAME_URL:
        return _eddystone_url(payload)
    if ftype == FRAME_EID:
        return _eddystone_eid(payload)
    raise FrameError(f"Eddystone: unknown frame type 0x{ftype:02x}")


def eddystone_kind(payload: bytes) -> str | None:
    """The frame kind Eddystone service data claims by its type nibble; None if unknown."""
    if not payload:
        return None
    return _EDDYSTONE_KINDS.get(payload[0] & 0xF0)


_EDDYSTONE_KINDS = {
    FRAME_UID: "eddystone_uid",
    FRAME_URL: "eddystone_url",
    FRAME_TLM: "eddystone_tlm",
    FRAME_EID: "eddystone_eid",
}


def parse_eddystone_uid(payload: bytes) -> EddystoneUid | None:
    """Decode Eddystone service data as UID; None for other Eddystone frame types."""
    if not payload or payload[0] != FRAME_UID:
        return None
    return _eddystone_uid(payload)


def _attempt(
    kind: str | None, decode: Callable[[], Frame | None], bad: list[Malformed]
) -> Frame | None:
    try:
        return decode()
    except FrameError as exc:
        bad.append(Malformed(kind, str(exc)))
        return None


def classify(
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    *,
    token_service_uuid: int = 0xFFF4,
    token_company_id: int = 0xFFFF,
) -> Frame | Malformed | None:
    """The frame one whole advertisement carries, read the way the ingest gate reads it.

    Candidates in order: the token frame (service data under the token UUID, or 21 bytes of
    manufacturer data under the token company id), iBeacon, Eddystone, AltBeacon under any
    company id. The first that decodes wins; if none does, the first malformed one is
    returned with its error; ``None`` when nothing is of a known kind.
    """
    candidates: list[tuple[str | None, Callable[[], Frame | None]]] = []
    sd_token = service_data.get(uuid16_key(token_service_uuid))
    if sd_token is not None:
        candidates.append(("token", partial(parse_token, sd_token)))
    md_token = manufacturer_data.get(token_company_id)
    if md_token is not None and len(md_token) == TOKEN_FRAME_LEN:
        candidates.append(("token", partial(parse_token, md_token)))
    apple = manufacturer_data.get(APPLE_COMPANY_ID)
    if apple is not None:
        candidates.append(("ibeacon", partial(parse_ibeacon, apple)))
    eddystone = service_data.get(uuid16_key(EDDYSTONE_UUID16))
    if eddystone is not None:
        candidates.append((eddystone_kind(eddystone), partial(parse_eddystone, eddystone)))
    for company, payload in manufacturer_data.items():
        candidates.append(("altbeacon", partial(parse_altbeacon, company, payload)))
    bad: list[Malformed] = []
    for kind, decode in candidates:
        found = _attempt(kind, decode, bad)
        if found is not None:
            return found
    return bad[0] if bad else None
