"""edge/contract/aggregate.py: the agg contract accepts what the device publishes, rejects
anything else, agrees with docs/asyncapi.yaml, and flattens every release kind into cells."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from edge.contract.aggregate import RELEASES, DayMessage, WindowMessage, cells, parse
from edge.events import PresenceEvent, PresenceKind
from edge.privacy import WindowAggregator
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


@pytest.mark.parametrize(
    "change",
    [
        {"release": "week"},  # unknown release kind
        {"token": "00" * 16},  # an extra field (never a raw datum)
        {"cells": "many"},
    ],
)
def test_anything_else_is_rejected_by_both(change: dict[str, Any]) -> None:
    for payload in (_window_payload(), _day_payload()):
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


def test_releases_listed_are_the_models() -> None:
    assert set(RELEASES) == {"window", "day"}


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
