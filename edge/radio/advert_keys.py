"""How advertisement keys are spelt in JSON (``frames decode`` input and presence traces).

One rule, one place: a company id is decimal or ``0x`` hex (0..0xFFFF); a service-data key is
a 16-bit (``"feaa"``) or 32-bit UUID in hex, or the full 128-bit UUID string, and is returned
as bleak spells it. Both raise ``ValueError`` with a message that names the bad key.
"""

from __future__ import annotations

import re

from edge.radio import frames

_COMPANY_HEX = re.compile(r"0[xX][0-9a-fA-F]{1,4}")
_COMPANY_DEC = re.compile(r"[0-9]{1,5}")
_UUID16 = re.compile(r"(?:0[xX])?([0-9a-fA-F]{4})")
_UUID32 = re.compile(r"(?:0[xX])?([0-9a-fA-F]{8})")
_UUID128 = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_BLE_BASE = "-0000-1000-8000-00805f9b34fb"


def company_id(key: str) -> int:
    """A company id key: decimal (``"76"``) or 0x-prefixed hex (``"0x004c"``), 0..0xFFFF."""
    if _COMPANY_HEX.fullmatch(key):
        return int(key, 16)
    if _COMPANY_DEC.fullmatch(key) and int(key) <= 0xFFFF:
        return int(key)
    raise ValueError(f"company id {key!r} is not a decimal or 0x-hex number 0-65535")


def service_uuid(key: str) -> str:
    """A service data key as bleak spells it: 16/32-bit hex or the full 128-bit UUID."""
    if m := _UUID16.fullmatch(key):
        return frames.uuid16_key(int(m.group(1), 16))
    if m := _UUID32.fullmatch(key):
        return m.group(1).lower() + _BLE_BASE
    if _UUID128.fullmatch(key):
        return key.lower()
    raise ValueError(f"key {key!r} is not a 16-bit UUID like 'feaa' or a 128-bit UUID string")


def short_uuid_key(full: str) -> str:
    """The shortest spelling of a bleak service UUID (``"feaa"`` for Bluetooth-base UUIDs)."""
    if full.startswith("0000") and full[8:] == _BLE_BASE:
        return full[4:8]
    return full
