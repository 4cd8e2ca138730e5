"""One daypart rule, wrapping midnight, shared by the policy and the display."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from edge.config.daypart import daypart_active
from edge.config.models import Daypart

TUESDAY = dt.datetime(2026, 11, 24)  # weekday 1


def _at(hour: int, day: dt.datetime = TUESDAY) -> dt.datetime:
    return day.replace(hour=hour)


def test_overnight_daypart_wraps_midnight() -> None:
    night = Daypart(start_hour=22, end_hour=6)
    assert daypart_active(night, _at(23)) and daypart_active(night, _at(1))
    assert daypart_active(night, _at(22)) and not daypart_active(night, _at(6))
    assert not daypart_active(night, _at(12))


def test_day_and_whole_day() -> None:
    day = Daypart(start_hour=8, end_hour=20)
    assert daypart_active(day, _at(8)) and daypart_active(day, _at(19))
    assert not daypart_active(day, _at(20)) and not daypart_active(day, _at(7))
    whole = Daypart(start_hour=0, end_hour=24)
    assert all(daypart_active(whole, _at(h)) for h in range(24))


def test_weekday_is_that_of_the_local_time_itself() -> None:
    night = Daypart(days=[1], start_hour=22, end_hour=6)  # Tuesdays only
    assert daypart_active(night, _at(23))  # Tuesday 23:00
    assert daypart_active(night, _at(1))  # Tuesday 01:00 (the hour falls on Tuesday)
    assert not daypart_active(night, _at(1, TUESDAY + dt.timedelta(days=1)))  # Wednesday


@given(st.integers(0, 23), st.integers(1, 24), st.integers(0, 23))
def test_matches_a_reference_over_all_hours(start: int, end: int, hour: int) -> None:
    part = Daypart(start_hour=start, end_hour=end)
    hours = set(range(start, end)) if start < end else set(range(start, 24)) | set(range(end))
    assert daypart_active(part, _at(hour)) is (hour in hours)
