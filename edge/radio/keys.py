"""Site day keys and token tag verification (BRIEF §4).

The tag is the first 4 bytes of HMAC-SHA256(site_day_key, byte0 ‖ RPI). A frame verifies
against the key of the site's local date or the day before. Verified frames are remembered
in a bounded cache because a phone repeats the same frame every second for ten minutes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections import OrderedDict

from edge.radio.frames import TokenFrame

TAG_LEN = 4
_CACHE_MAX = 65_536


def token_tag(key: bytes, header: int, rpi: bytes) -> bytes:
    """The 4-byte tag a phone appends to its token frame."""
    return hmac.digest(key, bytes((header,)) + rpi, hashlib.sha256)[:TAG_LEN]


class DayKeys:
    """The site day keys in force, by local date; RAM only."""

    def __init__(self, keys: dict[dt.date, bytes] | None = None, version: int = 0) -> None:
        self._keys: dict[dt.date, bytes] = dict(keys or {})
        self.version = version
        self._verified: OrderedDict[bytes, bool] = OrderedDict()

    @classmethod
    def from_hex(cls, keys: dict[str, str], version: int = 0) -> DayKeys:
        """Build from ``{"YYYY-MM-DD": HEX32}`` as in config and ``set_keys``."""
        return cls({dt.date.fromisoformat(d): bytes.fromhex(k) for d, k in keys.items()}, version)

    def replace(self, keys: dict[dt.date, bytes], version: int) -> None:
        """Install a new key set; cached verifications are dropped with the old keys."""
        self._keys = dict(keys)
        self.version = version
        self._verified.clear()

    def key(self, day: dt.date) -> bytes:
        """The key for one local date (KeyError if none)."""
        return self._keys[day]

    @property
    def days(self) -> list[dt.date]:
        """Dates with a key, oldest first."""
        return sorted(self._keys)

    def verify(self, frame: TokenFrame, today: dt.date) -> bool:
        """True when the frame's tag matches today's or yesterday's key."""
        cache_key = bytes((frame.header,)) + frame.rpi + frame.tag + today.toordinal().to_bytes(4)
        hit = self._verified.get(cache_key)
        if hit is not None:
            return hit
        ok = False
        for day in (today, today - dt.timedelta(days=1)):
            key = self._keys.get(day)
            if key is not None and hmac.compare_digest(
                token_tag(key, frame.header, frame.rpi), frame.tag
            ):
                ok = True
                break
        self._verified[cache_key] = ok
        if len(self._verified) > _CACHE_MAX:
            self._verified.popitem(last=False)
        return ok

    def forget_token(self, rpi: bytes) -> None:
        """Drop cached verifications that contain this RPI (``forget``)."""
        for k in [k for k in self._verified if k[1:17] == rpi]:
            del self._verified[k]
