"""Deterministic tests for bugs a review seeded into the code and the suite let through.

Each test names the seeded bug it catches (see the testing issue's table); none relies on
random noise or timing luck.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import parse_config
from edge.errors import ConfigError
from edge.events import PresenceEvent, PresenceKind
from edge.privacy.aggregates import WindowAggregator
from edge.privacy.noise import DiscreteLaplace
from edge.radio import DayKeys, token_tag
from edge.radio.frames import TokenFrame
from tests.helpers import DEMO_STORE, demo_config

DAY = dt.date(2026, 11, 24)
KEY = bytes(range(32))


class _NoNoise(DiscreteLaplace):
    def __init__(self) -> None:
        super().__init__(1)

    def sample(self) -> int:
        return 0


def _ev(token: int, zone: str, ts: float) -> PresenceEvent:
    return PresenceEvent(PresenceKind.ENTER, token.to_bytes(16, "big"), 1, zone, None, 0.0, 0.0, ts)


# Seeded bug: k-suppression `noisy < k` → `noisy < k - 1`.
def test_counts_exactly_at_k_are_published_and_at_k_minus_1_suppressed() -> None:
    cfg = demo_config()
    k = cfg.privacy.k
    agg = WindowAggregator(cfg, noise=_NoNoise())
    t0 = 1_800_000_000 - (1_800_000_000 % 900)
    for tok in range(k):
        agg.presence(_ev(tok, "coffee", t0 + tok))
    for tok in range(100, 100 + k - 1):
        agg.presence(_ev(tok, "dairy", t0 + 1))
    window = agg.close(t0 + 900)
    assert window is not None
    assert window.payload["zones"]["coffee"]["visitors"] == k
    assert "dairy" not in window.payload["zones"]


def _frame(key: bytes, rpi: bytes = bytes(16)) -> TokenFrame:
    header = (1 << 4) | 2
    return TokenFrame(1, 2, rpi, token_tag(key, header, rpi))


# Seeded bug: tag cache keyed without the date.
def test_a_verdict_from_one_day_is_not_reused_three_days_later() -> None:
    keys = DayKeys({DAY: KEY})
    frame = _frame(KEY)
    assert keys.verify(frame, DAY)
    assert not keys.verify(frame, DAY + dt.timedelta(days=3))


# Seeded bug: a key from two days ago also accepted.
def test_only_today_and_yesterday_keys_verify() -> None:
    keys = DayKeys({DAY - dt.timedelta(days=2): KEY})
    assert not keys.verify(_frame(KEY), DAY)
    assert DayKeys({DAY - dt.timedelta(days=1): KEY}).verify(_frame(KEY), DAY)


def _config(mutate: Any) -> str:
    data = yaml.safe_load(DEMO_STORE.read_text())
    mutate(data)
    return yaml.safe_dump(data, sort_keys=False)


# Seeded bug: duplicate-id check `n > 1` → `n > 2`.
@pytest.mark.parametrize("section", ["zones", "beacons", "receivers", "screens", "campaigns"])
def test_a_duplicate_id_of_every_kind_is_refused(section: str) -> None:
    def dup(data: dict[str, Any]) -> None:
        items = data[section] if section == "campaigns" else data["store"][section]
        items.append(dict(items[0]))

    with pytest.raises(ConfigError, match=r"duplicate (campaign )?id"):
        parse_config(_config(dup))


SECTIONS = ["radio", "privacy", "presence", "policy", "display", "mqtt", "commands", "model"]


# Seeded bug: a section model with extra="ignore" silently accepts a typo.
@pytest.mark.parametrize("section", SECTIONS)
def test_an_unknown_key_in_every_section_is_refused(section: str) -> None:
    def typo(data: dict[str, Any]) -> None:
        data.setdefault(section, {})["cooldown_secs"] = 180

    with pytest.raises(ConfigError, match=rf"{section}\.cooldown_secs: unknown field"):
        parse_config(_config(typo))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["store"]["receivers"][0].update(zone="nowhere"), "unknown zone 'nowhere'"),
        (lambda d: d["store"]["screens"][0].update(zone="nowhere"), "unknown zone 'nowhere'"),
        (lambda d: d["campaigns"][0].update(zone="nowhere"), "unknown zone 'nowhere'"),
        (lambda d: d["store"]["zones"][0]["beacons"].append("b-nope"), "unknown beacon 'b-nope'"),
        (
            lambda d: d["store"]["zones"][1]["beacons"].append(
                d["store"]["zones"][0]["beacons"][0]
            ),
            "is already in zone",
        ),
        (lambda d: d["radio"].update(receiver="rx-nope"), "unknown receiver 'rx-nope'"),
        (lambda d: d["display"].update(screen="scr-nope"), "unknown screen 'scr-nope'"),
        (
            lambda d: (
                d.setdefault("presence", {}).update(token_ttl_s=30)
                or d.setdefault("privacy", {}).update(raw_retention_s=20)
            ),
            "must not exceed privacy.raw_retention_s",
        ),
        (lambda d: d["store"]["zones"][0].update(rect=[-1, 0, 2, 2]), "outside the"),
        (
            lambda d: d["store"]["zones"][0].update(rect=[0, 0, d["store"]["size"][0] + 1, 2]),
            "outside the",
        ),
    ],
)
def test_every_cross_reference_check_refuses_its_case(mutate: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(mutate))


def test_an_unknown_key_at_the_top_and_in_the_store_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        parse_config(_config(lambda d: d.update(extra_section={})))
    with pytest.raises(ConfigError, match="unknown field"):
        parse_config(_config(lambda d: d["store"].update(floor_plan="x")))
    with pytest.raises(ConfigError, match="unknown field"):
        parse_config(_config(lambda d: d["campaigns"][0].update(colour_name="red")))


# Seeded bug: tracker.tick removed from the housekeeping path. Retention is checked while
# the daemon runs (tests/daemon/test_app.py::test_status_answers_over_the_socket_while_the_
# demo_runs checks every holder's oldest age ≤ its limit + 2 s through the control socket), and
# here directly on the tick path with the monotonic purge switched off.
async def test_tick_alone_evicts_tokens_past_their_ttl(tmp_path: Path) -> None:
    from edge.daemon.app import Application, Features
    from edge.daemon.clock import SimClock
    from edge.events import Sighting, SightingSource

    clock = SimClock(1_800_000_000.0)
    app = Application(
        demo_config(state_dir=tmp_path / "state"),
        clock=clock,
        features=Features(display=False, mqtt=False, model=False, autotick=False, control=False),
    )
    await app.start()
    try:
        app.registry.unregister("presence.tracker")  # only the wall-clock TTL path remains
        anchor = next(iter(app.tracker.layout.anchors))
        app.route(Sighting(b"\x01" * 16, 1, anchor, -50, clock.now(), SightingSource.BLE))
        assert app.tracker.held(clock.monotonic()).records > 0
        clock.set(clock.now() + app.cfg.presence.token_ttl_s + 1)
        app.tick(clock.now())
        assert app.tracker.held(clock.monotonic()).records == 0
    finally:
        await app.stop()
