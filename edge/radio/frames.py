"""Decode BLE advertisement payloads: the ShelfEdge token frame and reference beacons.

Decoders take raw payload bytes and return a small frozen dataclass, ``None`` for "not
ours", or raise ``FrameError`` for a malformed frame of a known kind. They never raise
anything else on arbitrary bytes. (Issue 3 adds Eddystone-URL/TLM/EID and the CLI.)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edge.errors import FrameError

TOKEN_FRAME_LEN = 21
TOKEN_VERSION = 1
APPLE_COMPANY_ID = 0x004C
EDDYSTONE_UUID16 = 0xFEAA
_IBEACON_PREFIX = b"\x02\x15"
_ALTBEACON_CODE = b"\xbe\xac"


@dataclass(frozen=True, slots=True)
class TokenFrame:
    """RAW. ShelfEdge token frame v1 (BRIEF §4)."""

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
    """Apple iBeacon."""

    uuid: str
    major: int
    minor: int
    tx_power: int


@dataclass(frozen=True, slots=True)
class EddystoneUid:
    """Eddystone-UID."""

    namespace: str
    instance: str
    tx_power: int


@dataclass(frozen=True, slots=True)
class AltBeacon:
    """AltBeacon."""

    beacon_id: str
    mfg_id: int
    ref_rssi: int


BeaconFrame = IBeacon | EddystoneUid | AltBeacon


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
        raise FrameError(f"unsupported token frame version {version}")
    if tier > 3:
        raise FrameError(f"consent tier {tier} out of range 0-3")
    return TokenFrame(version, tier, bytes(payload[1:17]), bytes(payload[17:21]))


def parse_ibeacon(payload: bytes) -> IBeacon | None:
    """Decode Apple manufacturer data as iBeacon; None if it is not one."""
    if not payload.startswith(_IBEACON_PREFIX):
        return None
    if len(payload) != 23:
        raise FrameError(f"iBeacon payload must be 23 bytes, got {len(payload)}")
    u = payload[2:18].hex()
    major, minor, tx = struct.unpack(">HHb", payload[18:23])
    return IBeacon(f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}", major, minor, tx)


def parse_altbeacon(company_id: int, payload: bytes) -> AltBeacon | None:
    """Decode manufacturer data as AltBeacon; None if it is not one."""
    if not payload.startswith(_ALTBEACON_CODE):
        return None
    if len(payload) not in (24, 25):
        raise FrameError(f"AltBeacon payload must be 24-25 bytes, got {len(payload)}")
    return AltBeacon(payload[2:22].hex(), company_id, struct.unpack("b", payload[22:23])[0])


def parse_eddystone_uid(payload: bytes) -> EddystoneUid | None:
    """Decode Eddystone service data as UID; None for other Eddystone frame types."""
    if not payload or payload[0] != 0x00:
        return None
    if len(payload) not in (18, 20):
        raise FrameError(f"Eddystone-UID must be 18 or 20 bytes, got {len(payload)}")
    tx = struct.unpack("b", payload[1:2])[0]
    return EddystoneUid(payload[2:12].hex(), payload[12:18].hex(), tx)
