"""Token verification and the raw-holder registry at their edges (mutation gaps).

Day keys: the tag definition (BRIEF §4), which days verify, what the verdict cache is keyed on,
its bound, its least-recently-heard order and its retention. Registry: every holder reached by
purge, forget and status, with counts and ages only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest

from edge.privacy.holders import EMPTY, Holding, RawHolder, RawRegistry
from edge.radio import DayKeys, token_tag
from edge.radio.frames import TokenFrame

DAY = dt.date(2026, 11, 24)
KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


class Mono:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _frame(key: bytes, rpi: bytes = bytes(16), tier: int = 2, version: int = 1) -> TokenFrame:
    header = (version << 4) | tier
    return TokenFrame(version, tier, rpi, token_tag(key, header, rpi))


def test_the_tag_is_the_first_four_bytes_of_hmac_sha256_over_header_and_rpi() -> None:
    rpi = bytes(range(100, 116))
    want = hmac.new(KEY, b"\x12" + rpi, hashlib.sha256).digest()[:4]
    assert token_tag(KEY, 0x12, rpi) == want
    assert len(token_tag(KEY, 0x12, rpi)) == 4


def test_today_and_yesterday_verify_tomorrow_does_not() -> None:
    f = _frame(KEY)
    assert DayKeys({DAY: KEY}).verify(f, DAY)
    assert DayKeys({DAY - dt.timedelta(days=1): KEY}).verify(f, DAY)
    assert not DayKeys({DAY + dt.timedelta(days=1): KEY}).verify(f, DAY)
    assert not DayKeys({DAY: OTHER}).verify(f, DAY)  # the wrong key
    assert not DayKeys().verify(f, DAY)  # no keys at all


def test_either_of_two_keys_verifies() -> None:
    keys = DayKeys({DAY: OTHER, DAY - dt.timedelta(days=1): KEY})
    assert keys.verify(_frame(KEY), DAY)  # yesterday's key, today's does not match
    assert keys.verify(_frame(OTHER, rpi=b"\x01" * 16), DAY)


def test_a_rejected_frame_stays_rejected_from_the_cache() -> None:
    mono = Mono(1000.0)
    keys = DayKeys({DAY: KEY}, monotonic=mono)
    bad = TokenFrame(1, 2, bytes(16), b"\0\0\0\0")
    for _ in range(4):  # first verified, then from the cache, again and again
        mono.t += 1.0
        assert keys.verify(bad, DAY) is False
    assert keys.held(mono.t).records == 1
    good = _frame(KEY)
    assert [keys.verify(good, DAY) for _ in range(3)] == [True, True, True]


def test_the_verdict_cache_is_keyed_on_the_header_too() -> None:
    keys = DayKeys({DAY: KEY})
    good = _frame(KEY, tier=2)
    assert keys.verify(good, DAY)
    same_bytes_other_tier = TokenFrame(1, 3, good.rpi, good.tag)  # tag made for tier 2
    assert not keys.verify(same_bytes_other_tier, DAY)


def test_the_verdict_cache_is_keyed_on_the_tag_too() -> None:
    keys = DayKeys({DAY: KEY})
    good = _frame(KEY)
    assert keys.verify(good, DAY)
    forged = TokenFrame(good.version, good.tier, good.rpi, bytes(b ^ 1 for b in good.tag))
    assert not keys.verify(forged, DAY)


def test_the_cache_is_bounded_and_drops_the_least_recently_heard() -> None:
    mono = Mono()
    keys = DayKeys({DAY: KEY}, monotonic=mono)
    frames = [_frame(KEY, rpi=i.to_bytes(16, "big")) for i in range(65_537)]
    for f in frames:
        assert keys.verify(f, DAY)
        mono.t += 0.000001
    assert keys.held(mono.t).records == 65_536
    assert keys.forget(frames[0].rpi) == 0  # the first one went
    assert keys.forget(frames[1].rpi) == 1


def test_hearing_a_frame_again_keeps_it_and_renews_its_time() -> None:
    mono = Mono(0.0)
    keys = DayKeys({DAY: KEY}, retention_s=30.0, monotonic=mono)
    a, b = _frame(KEY, rpi=b"\xaa" * 16), _frame(KEY, rpi=b"\xbb" * 16)
    keys.verify(a, DAY)
    mono.t = 1.0
    keys.verify(b, DAY)
    mono.t = 20.0
    assert keys.verify(a, DAY)  # from the cache: a is now the most recently heard
    keys.purge(40.0)  # cutoff 10: b (heard at 1) goes, a (heard at 20) stays
    assert keys.forget(b.rpi) == 0
    assert keys.forget(a.rpi) == 1


def test_purge_keeps_entries_heard_exactly_at_the_cutoff() -> None:
    mono = Mono(100.0)
    keys = DayKeys({DAY: KEY}, retention_s=30.0, monotonic=mono)
    keys.verify(_frame(KEY), DAY)
    keys.purge(130.0)
    assert keys.held(130.0) == Holding(1, 30.0)
    keys.purge(130.5)
    assert keys.held(130.5) == EMPTY


def test_held_reports_the_stalest_entry_and_never_a_negative_age() -> None:
    mono = Mono(50.0)
    keys = DayKeys({DAY: KEY}, monotonic=mono)
    assert keys.held(50.0) == Holding(0, 0.0)
    assert type(keys.held(50.0).records) is int  # status shows 0, not 0.0
    keys.verify(_frame(KEY, rpi=b"\x01" * 16), DAY)
    mono.t = 55.0
    keys.verify(_frame(KEY, rpi=b"\x02" * 16), DAY)
    assert keys.held(60.0) == Holding(2, 10.0)
    assert keys.held(40.0) == Holding(2, 0.0)  # a reading before the entry: clamped


def test_forget_drops_every_verdict_for_the_token_on_every_day() -> None:
    keys = DayKeys({DAY: KEY, DAY - dt.timedelta(days=1): KEY})
    token = b"\x07" * 16
    keys.verify(_frame(KEY, rpi=token), DAY)
    keys.verify(_frame(KEY, rpi=token), DAY - dt.timedelta(days=1))
    keys.verify(_frame(KEY, rpi=token, tier=3), DAY)
    keys.verify(_frame(KEY, rpi=b"\x08" * 16), DAY)
    assert keys.forget(token) == 3
    assert keys.held(1e9).records == 1
    assert keys.forget(token) == 0


def test_replacing_the_keys_drops_the_cache_and_sets_the_version() -> None:
    keys = DayKeys({DAY: KEY}, version=3)
    f = _frame(KEY)
    assert keys.verify(f, DAY)
    keys.replace({DAY: OTHER}, 4)
    assert keys.version == 4 and keys.held(1e9).records == 0
    assert not keys.verify(f, DAY)  # not the cached verdict of the old key
    assert keys.key(DAY) == OTHER
    with pytest.raises(KeyError):
        keys.key(DAY - dt.timedelta(days=1))


def test_days_are_listed_oldest_first() -> None:
    later, earlier = DAY, DAY - dt.timedelta(days=5)
    assert DayKeys({later: KEY, earlier: OTHER}).days == [earlier, later]


def test_from_hex_passes_version_retention_and_clock_through() -> None:
    mono = Mono(10.0)
    keys = DayKeys.from_hex({DAY.isoformat(): KEY.hex()}, 7, retention_s=5.0, monotonic=mono)
    assert (keys.version, keys.retention_s, keys.key(DAY)) == (7, 5.0, KEY)
    keys.verify(_frame(KEY), DAY)  # heard at 10 on the injected clock
    keys.purge(15.0)
    assert keys.held(15.0).records == 1
    keys.purge(15.5)
    assert keys.held(15.5).records == 0
    assert DayKeys.from_hex({}).version == 0
    assert DayKeys.from_hex({}).retention_s == 30.0


def test_defaults_are_the_briefs_thirty_seconds_and_a_named_holder() -> None:
    keys = DayKeys()
    assert keys.retention_s == 30.0 and keys.version == 0
    assert keys.holder_name == "radio.tag_cache"
    assert isinstance(keys, RawHolder)


# -- the registry -------------------------------------------------------------------------


class ListHolder:
    """A minimal raw holder: (token, heard) pairs."""

    def __init__(self, name: str, retention_s: float = 30.0) -> None:
        self.holder_name = name
        self.items: list[tuple[bytes, float]] = []
        self.retention_s = retention_s

    def purge(self, mono_now: float) -> None:
        self.items = [(t, h) for t, h in self.items if h >= mono_now - self.retention_s]

    def forget(self, token: bytes) -> int:
        before = len(self.items)
        self.items = [(t, h) for t, h in self.items if t != token]
        return before - len(self.items)

    def held(self, mono_now: float) -> Holding:
        if not self.items:
            return EMPTY
        return Holding(len(self.items), mono_now - min(h for _, h in self.items))


def test_registry_reaches_every_holder() -> None:
    reg = RawRegistry()
    a, b = ListHolder("a"), ListHolder("b")
    a.items = [(b"t1", 0.0), (b"t2", 50.0)]
    b.items = [(b"t1", 10.0)]
    reg.register(a)
    reg.register(b)
    assert reg.names() == ["a", "b"]
    assert [h.holder_name for h in reg] == ["a", "b"]
    assert reg.holdings(60.0) == {"a": Holding(2, 60.0), "b": Holding(1, 50.0)}
    assert reg.total(60.0) == 3
    assert reg.forget(b"t1") == {"a": 1, "b": 1}
    assert reg.total(60.0) == 1
    reg.purge(100.0)  # t2 heard at 50: past 30 s
    assert reg.total(100.0) == 0
    assert reg.holdings(100.0) == {"a": EMPTY, "b": EMPTY}


def test_registering_a_name_again_replaces_the_holder() -> None:
    reg = RawRegistry()
    old, new = ListHolder("x"), ListHolder("x")
    old.items = [(b"t", 0.0)]
    reg.register(old)
    reg.register(new)
    assert reg.names() == ["x"] and reg.total(0.0) == 0


def test_unregister_removes_and_tolerates_unknown_names() -> None:
    reg = RawRegistry()
    reg.register(ListHolder("a"))
    reg.register(ListHolder("b"))
    reg.unregister("a")
    reg.unregister("never-registered")
    assert reg.names() == ["b"]


def test_iterating_while_a_holder_unregisters_itself_is_safe() -> None:
    reg = RawRegistry()
    for name in ("a", "b", "c"):
        reg.register(ListHolder(name))
    seen = []
    for h in reg:
        seen.append(h.holder_name)
        reg.unregister(h.holder_name)
    assert seen == ["a", "b", "c"] and reg.names() == []


def test_a_holding_is_counts_and_a_rounded_age_only() -> None:
    h = Holding(3, 12.345)
    assert h.as_dict() == {"records": 3, "oldest_age_s": 12.3}
    assert Holding(1, 0.06).as_dict() == {"records": 1, "oldest_age_s": 0.1}
    assert h.limit_s == 0.0  # 0 means privacy.raw_retention_s
    assert (EMPTY.records, EMPTY.oldest_age_s, EMPTY.limit_s) == (0, 0.0, 0.0)
