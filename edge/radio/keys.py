"""Site day keys and token tag verification (BRIEF §4).

The tag is the first 4 bytes of HMAC-SHA256(site_day_key, byte0 ‖ RPI). A frame verifies
against the key of the site's local date or the day before. Verified frames are remembered
in a bounded cache because a phone repeats the same frame every second for ten minutes. The
cache holds tokens, so it is a raw holder: an entry is dropped ``raw_retention_s`` after the
frame was last heard (monotonic clock), on ``forget`` and when the keys change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

from edge.privacy.holders import Holding
from edge.radio.frames import TokenFrame

TAG_LEN = 4
_CACHE_MAX = 65_536


def token_tag(key: bytes, header: int, rpi: bytes) -> bytes:
    """The 4-byte tag a phone appends to its token frame."""
    return hmac.digest(key, bytes((header,)) + rpi, hashlib.sha256)[:TAG_LEN]


class DayKeys:
    """The site day keys in force, by local date; RAM only."""

    holder_name = "radio.tag_cache"

    def __init__(
        self,
        keys: dict[dt.date, bytes] | None = None,
        version: int = 0,
        *,
        retention_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys: dict[dt.date, bytes] = dict(keys or {})
        self.version = version
        self.retention_s = retention_s
        self._mono = monotonic
        # cache key → (verified?, monotonic time last heard); least recently heard first
        self._verified: OrderedDict[bytes, tuple[bool, float]] = OrderedDict()

    @classmethod
    def from_hex(
        cls,
        keys: dict[str, str],
        version: int = 0,
        *,
        retention_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> DayKeys:
        """Build from ``{"YYYY-MM-DD": HEX32}`` as in config and ``set_keys``."""
        parsed = {dt.date.fromisoformat(d): bytes.fromhex(k) for d, k in keys.items()}
        return cls(parsed, version, retention_s=retention_s, monotonic=monotonic)

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
        now = self._mono()
        hit = self._verified.get(cache_key)
        if hit is not None:
            self._verified[cache_key] = (hit[0], now)
            self._verified.move_to_end(cache_key)
            return hit[0]
        ok = False
        for day in (today, today - dt.timedelta(days=1)):
            key = self._keys.get(day)
            if key is not None and hmac.compare_digest(
                token_tag(key, frame.header, frame.rpi), frame.tag
            ):
                ok = True
                break
        self._verified[cache_key] = (ok, now)
        if len(self._verified) > _CACHE_MAX:
            self._verified.popitem(last=False)
        return ok

    def forget(self, token: bytes) -> int:
        """Drop cached verifications that contain this RPI (``forget``)."""
        gone = [k for k in self._verified if k[1:17] == token]
        for k in gone:
            del self._verified[k]
        return len(gone)

    def purge(self, mono_now: float) -> None:
        """Drop entries not heard within the raw retention."""
        cutoff = mono_now - self.retention_s
        while self._verified:
            key, (_ok, heard) = next(iter(self._verified.items()))
            if heard >= cutoff:
                break
            del self._verified[key]

    def held(self, mono_now: float) -> Holding:
        """Cached frames and how long ago the stalest was heard."""
        if not self._verified:
            return Holding(0, 0.0)
        _ok, heard = next(iter(self._verified.values()))
        return Holding(len(self._verified), max(0.0, mono_now - heard))
