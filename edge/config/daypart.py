"""The one rule for "is this daypart active at this local time", for policy and display alike.

A daypart runs on the weekdays in ``days`` (0 = Monday) from ``start_hour`` to ``end_hour``
in site-local time. When ``start_hour >= end_hour`` it wraps midnight: 22→6 is active from
22:00 to 05:59. The weekday tested is that of ``local`` itself, so 01:00 of a 22→6 daypart
counts for the day on which that hour falls.
"""

from __future__ import annotations

import datetime as dt

from edge.config.models import Daypart


def daypart_active(daypart: Daypart, local: dt.datetime) -> bool:
    """True when ``local`` (site-local time) falls in the daypart."""
    if local.weekday() not in daypart.days:
        return False
    start, end = daypart.start_hour, daypart.end_hour
    if start < end:
        return start <= local.hour < end
    return local.hour >= start or local.hour < end
