"""What simulated devices put on the air: frame encoders, rotating identifiers and BLE junk.

Owns an encoder for every frame the radio stage decodes (ShelfEdge token frame v1, iBeacon,
Eddystone-UID, AltBeacon), written independently of ``edge.radio.frames`` so the tests can
cross-check the parser; the phone-side derivation of the rotating RPI and resolvable private
address (a keyed PRF of the 10-minute interval number, like GAEN); the app-sighting JSON the
iOS app publishes; and the payloads that must be dropped: ordinary phones (Apple continuity,
Google Fast Pair) and random junk, including malformed ShelfEdge-looking frames.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from edge.config.models import AltBeaconId, Beacon, EddystoneUidId, IBeaconId

TOKEN_VERSION = 1
TOKEN_LEN = 21
RPI_LEN = 16
TAG_LEN = 4
RPI_PERIOD_S = 600  # GAEN-style: the RPI changes at every 10-minute interval boundary
APPLE = 0x004C
EDDYSTONE = 0xFEAA
FAST_PAIR = 0xFE2C


def uuid16(value: int) -> str:
    """The full 128-bit service UUID string (as bleak reports it) of a 16-bit UUID."""
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


# -- ShelfEdge token frame (BRIEF §4) -----------------------------------------------------


def token_header(tier: int, version: int = TOKEN_VERSION) -> int:
    """Byte 0: version in the high nibble, consent tier in the low nibble."""
    return ((version & 0x0F) << 4) | (tier & 0x0F)


def token_frame(tier: int, rpi: bytes, day_key: bytes) -> bytes:
    """The 21-byte token frame: header ‖ RPI ‖ first 4 bytes of HMAC-SHA256(key, header ‖ RPI)."""
    if len(rpi) != RPI_LEN:
        raise ValueError("RPI must be 16 bytes")
    body = bytes((token_header(tier),)) + rpi
    return body + hmac.new(day_key, body, hashlib.sha256).digest()[:TAG_LEN]


def rpi_interval(ts: float) -> int:
    """The 10-minute interval number of a Unix time (GAEN's ENIN)."""
    return int(ts // RPI_PERIOD_S)


def rpi(phone_key: bytes, interval: int) -> bytes:
    """The phone's RPI for an interval: a keyed PRF only phone and central can compute.

    GAEN uses AES-128 of a padded interval number; HMAC-SHA256 truncated to 16 bytes has the
    same property here (unlinkable across intervals without the key) and needs only stdlib.
    """
    msg = b"EN-RPI" + bytes(6) + interval.to_bytes(4, "little")
    return hmac.new(phone_key, msg, hashlib.sha256).digest()[:RPI_LEN]


def format_address(raw: bytes) -> str:
    """``AA:BB:CC:DD:EE:FF`` as BlueZ reports it."""
    return ":".join(f"{b:02X}" for b in raw)


def resolvable_address(phone_key: bytes, epoch: int) -> str:
    """A resolvable-private-looking address (top bits 01) that rotates with ``epoch``."""
    raw = bytearray(
        hmac.new(phone_key, b"addr" + epoch.to_bytes(8, "little"), hashlib.sha256).digest()[:6]
    )
    raw[0] = (raw[0] & 0x3F) | 0x40
    return format_address(bytes(raw))


def random_address(rng: random.Random) -> str:
    """A random address: static random (top bits 11) or non-resolvable private (top bits 00)."""
    raw = bytearray(rng.randbytes(6))
    raw[0] = (raw[0] & 0x3F) | (0xC0 if rng.random() < 0.5 else 0x00)
    return format_address(bytes(raw))


# -- reference beacons ----------------------------------------------------------------------


def _uuid_bytes(uuid: str) -> bytes:
    raw = bytes.fromhex(uuid.replace("-", ""))
    if len(raw) != 16:
        raise ValueError(f"UUID must be 16 bytes: {uuid!r}")
    return raw


def ibeacon(uuid: str, major: int, minor: int, measured_power: int) -> bytes:
    """Apple manufacturer data of an iBeacon: ``02 15 uuid(16) major minor power``."""
    return b"\x02\x15" + _uuid_bytes(uuid) + struct.pack(">HHb", major, minor, measured_power)


def eddystone_uid(namespace: str, instance: str, tx_at_0m: int) -> bytes:
    """Eddystone service data, UID frame: ``00 tx namespace(10) instance(6) 00 00``."""
    ns, inst = bytes.fromhex(namespace), bytes.fromhex(instance)
    if len(ns) != 10 or len(inst) != 6:
        raise ValueError("Eddystone-UID namespace is 10 bytes and instance 6 bytes")
    return b"\x00" + struct.pack("b", tx_at_0m) + ns + inst + b"\x00\x00"


def altbeacon(beacon_id: str, ref_rssi: int, reserved: int = 0) -> bytes:
    """AltBeacon manufacturer data (after the company id): ``be ac id(20) refrssi mfg``."""
    bid = bytes.fromhex(beacon_id)
    if len(bid) != 20:
        raise ValueError("AltBeacon id is 20 bytes")
    return b"\xbe\xac" + bid + struct.pack("bB", ref_rssi, reserved)


@dataclass(frozen=True, slots=True)
class BeaconAir:
    """A reference beacon's advertisement fields and the app's JSON for it."""

    address: str
    manufacturer_data: Mapping[int, bytes]
    service_data: Mapping[str, bytes]
    app_json: str  # the ``beacon`` object of an app sighting (BRIEF §6), compact JSON


def beacon_air(beacon: Beacon, address: str) -> BeaconAir:
    """Encode a configured beacon's identity as the beacon would advertise it."""
    ident = beacon.identity
    app: dict[str, object]
    md: dict[int, bytes] = {}
    sd: dict[str, bytes] = {}
    if isinstance(ident, IBeaconId):
        md[APPLE] = ibeacon(ident.uuid, ident.major, ident.minor, beacon.rssi_at_1m)
        app = {"kind": "ibeacon", "uuid": ident.uuid, "major": ident.major, "minor": ident.minor}
    elif isinstance(ident, EddystoneUidId):
        # Eddystone carries the power at 0 m; 41 dB is the usual 0 m → 1 m loss.
        sd[uuid16(EDDYSTONE)] = eddystone_uid(
            ident.namespace, ident.instance, beacon.rssi_at_1m + 41
        )
        app = {"kind": "eddystone_uid", "namespace": ident.namespace, "instance": ident.instance}
    elif isinstance(ident, AltBeaconId):
        md[ident.mfg_id] = altbeacon(ident.beacon_id, beacon.rssi_at_1m)
        app = {"kind": "altbeacon", "beacon_id": ident.beacon_id}
    else:  # pragma: no cover - the config union is closed
        raise TypeError(type(ident).__name__)
    return BeaconAir(address, md, sd, json.dumps(app, separators=(",", ":")))


def app_sighting_json(frame_hex: str, beacon_json: str, rssi: int, ts: float) -> str:
    """One app sighting object (BRIEF §6) as compact JSON, keys in the app's order."""
    return f'{{"frame":"{frame_hex}","beacon":{beacon_json},"rssi":{rssi},"ts":{ts:.3f}}}'


# -- phones that are not ours -----------------------------------------------------------------


def continuity(rng: random.Random) -> dict[int, bytes]:
    """Apple continuity-like manufacturer data (Nearby Info), never an iBeacon prefix."""
    kind = rng.choice((0x10, 0x0C, 0x0F))  # nearby info, handoff, nearby action
    body = rng.randbytes(5 if kind == 0x10 else 14 if kind == 0x0C else 6)
    return {APPLE: bytes((kind, len(body))) + body}


def fast_pair(rng: random.Random) -> dict[str, bytes]:
    """Google Fast Pair service data: a 3-byte model id or an account-key filter."""
    if rng.random() < 0.5:
        return {uuid16(FAST_PAIR): rng.randbytes(3)}
    return {uuid16(FAST_PAIR): b"\x00" + rng.randbytes(rng.randint(8, 14))}


# -- junk ---------------------------------------------------------------------------------------


class JunkKind(enum.StrEnum):
    """Kinds of junk advertisement; all must be dropped by the ingest gate."""

    RANDOM_MFG = "random_mfg"
    RANDOM_SERVICE = "random_service"
    NAME_ONLY = "name_only"
    TOKEN_BAD_LENGTH = "token_bad_length"
    TOKEN_BAD_VERSION = "token_bad_version"
    TOKEN_BAD_TIER = "token_bad_tier"
    TOKEN_BAD_TAG = "token_bad_tag"
    TOKEN_MFG_BAD_TAG = "token_mfg_bad_tag"
    IBEACON_TRUNCATED = "ibeacon_truncated"
    IBEACON_UNKNOWN = "ibeacon_unknown"
    EDDYSTONE_BAD_LENGTH = "eddystone_bad_length"
    EDDYSTONE_URL = "eddystone_url"
    ALTBEACON_BAD_LENGTH = "altbeacon_bad_length"


@dataclass(frozen=True, slots=True)
class Junk:
    """One junk advertisement's content."""

    kind: JunkKind
    manufacturer_data: Mapping[int, bytes]
    service_data: Mapping[str, bytes]
    local_name: str | None = None


_NAMES = ("LE-Bose QC", "JBL Flip 5", "Mi Band 7", "Tile", "[TV] Samsung", "WH-1000XM4")


def junk(rng: random.Random, token_uuid16: int, token_company: int) -> Junk:
    """A random junk advertisement (never a valid token or a configured beacon)."""
    kind = rng.choice(tuple(JunkKind))
    tok_key = uuid16(token_uuid16)
    md: dict[int, bytes] = {}
    sd: dict[str, bytes] = {}
    name: str | None = None
    if kind is JunkKind.RANDOM_MFG:
        company = rng.randrange(0x10000)
        while company in (APPLE, token_company):
            company = rng.randrange(0x10000)
        md[company] = rng.randbytes(rng.randint(0, 24))
    elif kind is JunkKind.RANDOM_SERVICE:
        svc = rng.randrange(0x10000)
        while svc in (token_uuid16, EDDYSTONE):
            svc = rng.randrange(0x10000)
        sd[uuid16(svc)] = rng.randbytes(rng.randint(0, 20))
    elif kind is JunkKind.NAME_ONLY:
        name = rng.choice(_NAMES)
    elif kind is JunkKind.TOKEN_BAD_LENGTH:
        length = rng.choice([n for n in range(1, 31) if n != TOKEN_LEN])
        sd[tok_key] = bytes((token_header(rng.randint(0, 3)),)) + rng.randbytes(length - 1)
    elif kind is JunkKind.TOKEN_BAD_VERSION:
        version = rng.choice([v for v in range(16) if v != TOKEN_VERSION])
        sd[tok_key] = bytes((token_header(rng.randint(0, 3), version),)) + rng.randbytes(20)
    elif kind is JunkKind.TOKEN_BAD_TIER:
        sd[tok_key] = bytes((token_header(rng.randint(4, 15)),)) + rng.randbytes(20)
    elif kind is JunkKind.TOKEN_BAD_TAG:
        sd[tok_key] = bytes((token_header(rng.randint(0, 3)),)) + rng.randbytes(20)
    elif kind is JunkKind.TOKEN_MFG_BAD_TAG:
        md[token_company] = bytes((token_header(rng.randint(0, 3)),)) + rng.randbytes(20)
    elif kind is JunkKind.IBEACON_TRUNCATED:
        md[APPLE] = b"\x02\x15" + rng.randbytes(rng.randint(0, 20))
    elif kind is JunkKind.IBEACON_UNKNOWN:
        # A well-formed iBeacon of another shop's fleet (random UUID): not a configured beacon.
        u = rng.randbytes(16).hex()
        uuid = f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"
        md[APPLE] = ibeacon(uuid, rng.randrange(0x10000), rng.randrange(0x10000), -59)
    elif kind is JunkKind.EDDYSTONE_BAD_LENGTH:
        length = rng.choice((2, 5, 12, 17, 19, 21))
        sd[uuid16(EDDYSTONE)] = b"\x00" + rng.randbytes(length - 1)
    elif kind is JunkKind.EDDYSTONE_URL:
        sd[uuid16(EDDYSTONE)] = b"\x10\xeb\x03" + b"example" + b"\x07"
    else:  # ALTBEACON_BAD_LENGTH
        length = rng.choice((4, 12, 23, 26))
        md[rng.randrange(0x10000)] = b"\xbe\xac" + rng.randbytes(length - 2)
    return Junk(kind, md, sd, name)
