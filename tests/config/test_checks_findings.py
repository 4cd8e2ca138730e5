"""Every cross-reference check gives exactly its finding: the field path the loader turns into a
YAML line, and a message naming the bad value and what would be valid."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from edge.config.checks import cross_check
from edge.config.models import AppConfig
from tests.helpers import DEMO_STORE

BASE = yaml.safe_load(DEMO_STORE.read_text())
Mutation = Callable[[dict[str, Any]], object]


def _findings(mutate: Mutation) -> list[tuple[tuple[str | int, ...], str]]:
    data = copy.deepcopy(BASE)
    mutate(data)
    return cross_check(AppConfig.model_validate(data))


def _store(d: dict[str, Any]) -> dict[str, Any]:
    store: dict[str, Any] = d["store"]
    return store


def test_the_demo_store_has_no_findings() -> None:
    assert _findings(lambda d: None) == []


@pytest.mark.parametrize("section", ["zones", "beacons", "receivers", "screens"])
def test_a_duplicate_store_id_points_at_the_last_copy(section: str) -> None:
    def dup(d: dict[str, Any]) -> None:
        items = _store(d)[section]
        items.append(copy.deepcopy(items[0]))

    n = len(BASE["store"][section])
    first = BASE["store"][section][0]["id"]
    found = [f for f in _findings(dup) if "duplicate" in f[1]]
    assert found == [(("store", section, n, "id"), f"duplicate id {first!r}")]


def test_three_copies_are_one_finding_at_the_last() -> None:
    def dup(d: dict[str, Any]) -> None:
        zones = _store(d)["zones"]
        zones.insert(2, copy.deepcopy(zones[0]))
        zones.insert(5, copy.deepcopy(zones[0]))

    found = [f for f in _findings(dup) if "duplicate" in f[1]]
    assert found == [(("store", "zones", 5, "id"), "duplicate id 'entrance'")]


def test_a_duplicate_campaign_id() -> None:
    def dup(d: dict[str, Any]) -> None:
        d["campaigns"].append(copy.deepcopy(d["campaigns"][1]))

    assert _findings(dup) == [(("campaigns",), "duplicate campaign id 'bakery-morning'")]


def test_an_unknown_beacon_lists_the_known_ones() -> None:
    known = ", ".join(sorted(b["id"] for b in BASE["store"]["beacons"]))
    index = len(BASE["store"]["zones"][3]["beacons"])  # appended after the zone's own
    found = _findings(lambda d: _store(d)["zones"][3]["beacons"].append("b-nope"))
    assert found == [
        (
            ("store", "zones", 3, "beacons", index),
            f"unknown beacon 'b-nope' (store.beacons has: {known})",
        )
    ]


def test_an_unknown_beacon_when_none_are_defined() -> None:
    def no_beacons(d: dict[str, Any]) -> None:
        _store(d)["beacons"] = []
        for zone in _store(d)["zones"]:
            zone["beacons"] = []
        _store(d)["zones"][0]["beacons"] = ["b-x"]

    assert _findings(no_beacons) == [
        (
            ("store", "zones", 0, "beacons", 0),
            "unknown beacon 'b-x' (store.beacons has: none defined)",
        )
    ]


def test_a_beacon_in_two_zones_is_reported_at_the_second() -> None:
    def share(d: dict[str, Any]) -> None:
        _store(d)["zones"][4]["beacons"].append("b-entrance")
        _store(d)["zones"][6]["beacons"].append("b-entrance")

    at = {z: len(BASE["store"]["zones"][z]["beacons"]) for z in (4, 6)}  # after their own
    assert _findings(share) == [
        (
            ("store", "zones", 4, "beacons", at[4]),
            "beacon 'b-entrance' is already in zone 'entrance'",
        ),
        (
            ("store", "zones", 6, "beacons", at[6]),
            "beacon 'b-entrance' is already in zone 'entrance'",
        ),
    ]


def test_the_same_beacon_twice_in_one_zone_is_not_a_conflict() -> None:
    assert _findings(lambda d: _store(d)["zones"][2]["beacons"].append("b-bakery")) == []


@pytest.mark.parametrize(
    ("mutate", "finding"),
    [
        (
            lambda d: d["store"]["receivers"][2].update(zone="nowhere"),
            (("store", "receivers", 2, "zone"), "unknown zone 'nowhere'"),
        ),
        (
            lambda d: d["store"]["screens"][0].update(zone="nowhere"),
            (("store", "screens", 0, "zone"), "unknown zone 'nowhere'"),
        ),
        (
            lambda d: d["campaigns"][3].update(zone="nowhere"),
            (("campaigns", 3, "zone"), "unknown zone 'nowhere'"),
        ),
        (
            lambda d: d["radio"].update(receiver="rx-nope"),
            (("radio", "receiver"), "unknown receiver 'rx-nope'"),
        ),
        (
            lambda d: d["display"].update(screen="scr-nope"),
            (("display", "screen"), "unknown screen 'scr-nope'"),
        ),
        (
            lambda d: d.update(presence={"token_ttl_s": 30}, privacy={"raw_retention_s": 20}),
            (("presence", "token_ttl_s"), "must not exceed privacy.raw_retention_s (20.0 s)"),
        ),
    ],
)
def test_each_reference_check_gives_its_finding(mutate: Mutation, finding: Any) -> None:
    assert _findings(mutate) == [finding]


def test_token_ttl_equal_to_retention_is_allowed() -> None:
    same = {"presence": {"token_ttl_s": 20}, "privacy": {"raw_retention_s": 20}}
    assert _findings(lambda d: d.update(same)) == []


@pytest.mark.parametrize(
    ("rect", "bad"),
    [
        ([-1, 0, 2, 2], True),
        ([0, -0.5, 2, 2], True),
        ([28, 0, 2, 2], False),  # touches the right wall exactly
        ([28, 0, 2.01, 2], True),
        ([0, 18, 2, 2], False),  # touches the back wall exactly
        ([0, 18, 2, 2.01], True),
        ([0, 0, 30, 20], False),
    ],
)
def test_zones_must_lie_on_the_floor(rect: list[float], bad: bool) -> None:
    found = _findings(lambda d: _store(d)["zones"][9].update(rect=rect))
    expected = [(("store", "zones", 9, "rect"), "zone lies outside the 30.0×20.0 m floor")]
    assert found == (expected if bad else [])


def _adapters(*pairs: tuple[str, str]) -> Mutation:
    def set_adapters(d: dict[str, Any]) -> None:
        d["radio"].pop("receiver", None)
        d["radio"].pop("adapter", None)
        d["radio"]["adapters"] = [{"adapter": a, "receiver": r} for a, r in pairs]

    return set_adapters


def test_adapters_naming_known_receivers_are_fine() -> None:
    assert _findings(_adapters(("hci0", "rx-coffee"), ("hci1", "rx-snacks"))) == []


def test_an_adapter_with_an_unknown_receiver_lists_the_known_ones() -> None:
    known = ", ".join(sorted(r["id"] for r in BASE["store"]["receivers"]))
    assert _findings(_adapters(("hci0", "rx-coffee"), ("hci1", "rx-nope"))) == [
        (
            ("radio", "adapters", 1, "receiver"),
            f"unknown receiver 'rx-nope' (store.receivers has: {known})",
        )
    ]


def test_an_adapter_receiver_when_no_receivers_are_defined() -> None:
    def none(d: dict[str, Any]) -> None:
        _adapters(("hci0", "rx-a"))(d)
        _store(d)["receivers"] = []

    assert _findings(none) == [
        (
            ("radio", "adapters", 0, "receiver"),
            "unknown receiver 'rx-a' (store.receivers has: none defined)",
        )
    ]


def test_an_adapter_or_receiver_twice_is_reported_at_the_repeat() -> None:
    found = _findings(
        _adapters(("hci0", "rx-coffee"), ("hci0", "rx-snacks"), ("hci2", "rx-coffee"))
    )
    assert found == [
        (("radio", "adapters", 1, "adapter"), "adapter 'hci0' twice"),
        (("radio", "adapters", 2, "receiver"), "receiver 'rx-coffee' twice"),
    ]


def test_adapters_and_a_receiver_together_are_refused() -> None:
    def both(d: dict[str, Any]) -> None:
        d["radio"]["adapters"] = [{"adapter": "hci1", "receiver": "rx-snacks"}]

    assert _findings(both) == [
        (("radio", "receiver"), "set either radio.adapters or radio.adapter/receiver, not both")
    ]


def test_an_enabled_radio_needs_a_receiver() -> None:
    message = (
        "radio.enabled needs radio.receiver (or radio.adapters): the store.receivers "
        "id each adapter stands for"
    )

    def enabled_without(d: dict[str, Any]) -> None:
        d["radio"] = {"enabled": True}

    assert _findings(enabled_without) == [(("radio", "enabled"), message)]
    assert _findings(lambda d: d["radio"].update(enabled=True)) == []  # receiver given
    ok = _adapters(("hci0", "rx-coffee"))
    assert _findings(lambda d: (ok(d), d["radio"].update(enabled=True))) == []
    assert _findings(lambda d: d.update(radio={"enabled": False})) == []  # off: nothing needed
