"""Site-local calendar days for the simulator: day boundaries and the site day keys.

Owns the answer to "which local date is it at this Unix time" (exact at any UTC offset, cached
per day, so per-advertisement lookups are one comparison) and the simulated central server's
site day keys, each derived from the seed as HMAC-SHA256(master, "YYYY-MM-DD") so any date has
a key without storing a table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from zoneinfo import ZoneInfo


class SiteCalendar:
    """Local dates in the site's time zone, with the current day's bounds cached."""

    __slots__ = ("_date", "_hi", "_lo", "_tz")

    def __init__(self, timezone: str) -> None:
        self._tz = ZoneInfo(timezone)
        self._lo = 0.0
        self._hi = -1.0
        self._date = dt.date.min

    @property
    def tz(self) -> ZoneInfo:
        """The site's time zone."""
        return self._tz

    def midnight(self, day: dt.date) -> float:
        """Unix time of local midnight starting ``day``."""
        return dt.datetime.combine(day, dt.time(0), self._tz).timestamp()

    def date(self, ts: float) -> dt.date:
        """The site-local date at ``ts``."""
        if self._lo <= ts < self._hi:
            return self._date
        day = dt.datetime.fromtimestamp(ts, self._tz).date()
        self._date = day
        self._lo = self.midnight(day)
        self._hi = self.midnight(day + dt.timedelta(days=1))
        return day


class DayKeyring:
    """The site day keys a simulated central server would push with ``set_keys``."""

    __slots__ = ("_cache", "_master")

    def __init__(self, seed: int) -> None:
        self._master = hashlib.sha256(b"shelfedge-sim/site-day-keys/" + str(seed).encode()).digest()
        self._cache: dict[dt.date, bytes] = {}

    def key(self, day: dt.date) -> bytes:
        """The 32-byte key of one local date."""
        k = self._cache.get(day)
        if k is None:
            k = hmac.new(self._master, day.isoformat().encode(), hashlib.sha256).digest()
            self._cache[day] = k
        return k

    def hex_keys(self, first: dt.date, last: dt.date) -> dict[str, str]:
        """``{"YYYY-MM-DD": 64 hex}`` for every date from ``first`` to ``last`` inclusive."""
        out: dict[str, str] = {}
        day = first
        while day <= last:
            out[day.isoformat()] = self.key(day).hex()
            day += dt.timedelta(days=1)
        return out
