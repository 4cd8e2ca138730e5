"""edge/contract/aggregate.py: the agg contract accepts what the device publishes, rejects
anything else, agrees with docs/asyncapi.yaml, and flattens every release kind into cells."""

from __future__ import annotations

import ast
import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from pydantic import ValidationError

from edge.contract.aggregate import (
    RELEASES,
    DayMessage,
    PeriodMessage,
    WindowMessage,
    cells,
    parse,
)
from edge.events import PresenceEvent, PresenceKind
from edge.privacy import WindowAggregator
from edge.privacy.budget import Budget
from edge.privacy.ledger import EpsilonLedger
from edge.privacy.period import PeriodAggregator
from tests.asyncapi_schemas import check
from tests.helpers import ROOT, demo_config


def _window_payload() -> dict[str, Any]:
    agg = WindowAggregator(demo_config())
    t0 = 1_800_000_000.0 - (1_800_000_000 % 900)
    for tok in range(40):
        agg.presence(
            PresenceEvent(
                PresenceKind.ENTER, tok.to_bytes(16, "big"), 1, "coffee", None, 0.0, 0.0, t0 + tok
            )
        )
    window = agg.close(t0 + 900)
    assert window is not None
    return json.loads(json.dumps(dict(window.payload)))


def _day_payload() -> dict[str, Any]:
    return {
        "release": "day",
        "id": "d-1",
        "site": "s",
        "device": "d",
        "day": "2027-01-15",
        "period_start": 0,
        "period_end": 86_400,
        "partial": False,
        "stats": {
            "footfall": {
                "epsilon": 0.5,
                "sensitivity": 73,
                "noise_scale": 146.0,
                "values": {"coffee": {"visitors": 120}, "dairy": {"visitors": None}},
            },
            "hourly": {
                "epsilon": 0.25,
                "sensitivity": 73,
                "noise_scale": 292.0,
                "values": {"*": {"09": 40, "10": None}},
            },
        },
        "cells": 4,
        "cells_suppressed": 2,
        "privacy": {"k": 5, "epsilon": 0.75, "noise": "discrete_laplace", "tokens_per_person": 73},
    }


def _period_payload() -> dict[str, Any]:
    """A real period release: 30 visits to coffee on Tue and Wed of one week, then a stop."""
    cfg = demo_config()
    cfg = cfg.model_copy(update={"privacy": cfg.privacy.model_copy(update={"day_hours": (8, 20)})})
    agg = PeriodAggregator(cfg, ledger=EpsilonLedger(None, Budget.from_config(cfg)), started=0.0)
    tz = ZoneInfo(cfg.timezone)
    for d in (9, 10):  # 2027-03-09 is a Tuesday: both days in the week of Monday 03-08
        t0 = dt.datetime(2027, 3, d, 10, tzinfo=tz).timestamp()
        for tok in range(30):
            token = (tok + 1000 * d).to_bytes(16, "big")
            enter, leave = PresenceKind.ENTER, PresenceKind.LEAVE
            agg.presence(PresenceEvent(enter, token, 1, "entrance", None, 0, 0, t0))
            agg.presence(PresenceEvent(enter, token, 1, "coffee", "entrance", 0, 0, t0 + 60, 45))
            agg.presence(PresenceEvent(leave, token, 1, "coffee", None, 45, 0, t0 + 99))
        assert agg.close(t0 + 11 * 3600) is None  # the day is folded into the period's sums
    (window,) = agg.close_all(dt.datetime(2027, 3, 11, 9, tzinfo=tz).timestamp())
    return json.loads(json.dumps(dict(window.payload)))


def test_a_real_window_validates_in_code_and_in_the_document() -> None:
    payload = _window_payload()
    message = parse(json.dumps(payload).encode())
    assert isinstance(message, WindowMessage)
    check("Aggregate", payload)
    rows = cells(message)
    assert {r.stat for r in rows} >= {"visitors", "holdout"}
    assert all(r.release == "window" and r.message_id == payload["id"] for r in rows)
    # every zone with a published visitors cell appears with its value
    for zone, body in payload["zones"].items():
        (row,) = [r for r in rows if r.stat == "visitors" and r.zone == zone]
        assert row.value == body["visitors"] and row.suppressed == (body["visitors"] is None)


def test_a_window_without_release_is_still_a_window() -> None:
    payload = _window_payload()
    del payload["release"]
    assert isinstance(parse(payload), WindowMessage)
    check("Aggregate", payload)


def test_a_day_message_flattens_every_cell_with_its_epsilon() -> None:
    payload = _day_payload()
    message = parse(payload)
    assert isinstance(message, DayMessage)
    check("Aggregate", payload)
    rows = {(r.stat, r.zone, r.key): r for r in cells(message)}
    assert set(rows) == {
        ("footfall", "coffee", "visitors"),
        ("footfall", "dairy", "visitors"),
        ("hourly", "*", "09"),
        ("hourly", "*", "10"),
    }
    assert rows["footfall", "coffee", "visitors"].value == 120
    assert rows["footfall", "dairy", "visitors"].suppressed
    assert rows["hourly", "*", "09"].epsilon == 0.25
    assert all(r.period_end == 86_400 for r in rows.values())


def test_a_real_period_message_validates_and_flattens_with_its_epsilon() -> None:
    payload = _period_payload()
    message = parse(json.dumps(payload))
    assert isinstance(message, PeriodMessage)
    check("Aggregate", payload)
    assert len(message.days) == 2 and message.partial
    rows = cells(message)
    foot = message.stats["footfall"]
    assert {r.stat for r in rows} == {"footfall"}
    assert len(rows) == message.cells == len(foot.values)
    assert all(r.release == "period" and r.epsilon == foot.epsilon for r in rows)
    assert all(r.period_start == message.period_start for r in rows)
    assert sum(r.suppressed for r in rows) == message.cells_suppressed
    # ε over the period = sensitivity over the period / noise scale; per day ≤ its share
    assert foot.epsilon == pytest.approx(foot.sensitivity / foot.noise_scale)
    assert foot.epsilon <= len(message.days) * foot.epsilon_per_day + 1e-9
    # round trip: the flattened message parses back to itself
    assert parse(message.model_dump_json()) == message


@pytest.mark.parametrize(
    "change",
    [
        {"release": "week"},  # unknown release kind
        {"token": "00" * 16},  # an extra field (never a raw datum)
        {"cells": "many"},
    ],
)
def test_anything_else_is_rejected_by_both(change: dict[str, Any]) -> None:
    for payload in (_window_payload(), _day_payload(), _period_payload()):
        bad = {**payload, **change}
        with pytest.raises(ValidationError):
            parse(bad)
        with pytest.raises(jsonschema.ValidationError):
            check("Aggregate", bad)


def test_a_day_stat_with_a_fractional_count_is_rejected() -> None:
    payload = _day_payload()
    payload["stats"]["footfall"]["values"]["coffee"]["visitors"] = 1.5
    with pytest.raises(ValidationError):
        parse(payload)
    with pytest.raises(jsonschema.ValidationError):
        check("Aggregate", payload)


def test_a_period_without_its_per_day_epsilon_is_rejected_by_both() -> None:
    payload = _period_payload()
    del payload["stats"]["footfall"]["epsilon_per_day"]
    with pytest.raises(ValidationError):
        parse(payload)
    with pytest.raises(jsonschema.ValidationError):
        check("Aggregate", payload)


def test_releases_listed_are_the_models() -> None:
    assert set(RELEASES) == {"window", "day", "period"}


def test_contract_imports_no_device_code() -> None:
    for path in (ROOT / "edge" / "contract").glob("*.py"):
        tree = ast.parse(Path(path).read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("edge.") or name.startswith("edge.contract"), (
                    f"{path.name} imports {name}"
                )
