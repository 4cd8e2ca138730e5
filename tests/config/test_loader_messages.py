"""Config errors say what and where: the exact text for each kind of mistake, in process.

(The CLI tests in test_config.py run `shelfedge` in a subprocess; these call the loader directly
so that a wrong hint, field path or line is caught by mutation testing too.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import config_hash, load_config, parse_config
from edge.errors import ConfigError
from tests.helpers import DEMO_STORE

BASE = yaml.safe_load(DEMO_STORE.read_text())


def _text(mutate: Callable[[dict[str, Any]], object]) -> str:
    data = copy.deepcopy(BASE)
    mutate(data)
    return yaml.safe_dump(data, sort_keys=False)


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "s.yaml")
    return info.value


def _line_of(text: str, needle: str) -> int:
    hits = [i for i, ln in enumerate(text.splitlines(keepends=True), 1) if needle in ln]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


@pytest.mark.parametrize(
    ("mutate", "needle", "expected"),
    [
        (lambda d: d.update(sitee="x"), "sitee:", "sitee: unknown field; did you mean 'site'?"),
        (
            lambda d: d["privacy"].update(raw_retension_s=3),
            "raw_retension_s",
            "privacy.raw_retension_s: unknown field; did you mean 'raw_retention_s'?",
        ),
        (
            lambda d: d["store"]["zones"][0].update(idd="x"),
            "idd:",
            "store.zones.0.idd: unknown field; did you mean 'id'?",
        ),
        (
            lambda d: d["store"]["beacons"][0]["identity"].update(uuidd="x"),
            "uuidd",
            "store.beacons.0.identity.uuidd: unknown field; did you mean 'uuid'?",
        ),
        (
            lambda d: d["store"]["zones"][0].update(zzzzzz="x"),
            "zzzzzz",
            "store.zones.0.zzzzzz: unknown field; see `shelfedge config schema`",
        ),
        (
            lambda d: d["campaigns"][2].update(colur="#000000"),
            "colur",
            "campaigns.2.colur: unknown field; did you mean 'colour'?",
        ),
    ],
)
def test_an_unknown_field_names_its_line_and_the_closest_valid_name(
    mutate: Callable[[dict[str, Any]], object], needle: str, expected: str
) -> None:
    text = _text(mutate)
    assert str(_error(text)) == f"s.yaml:{_line_of(text, needle)}: {expected}"


def test_a_missing_required_field_points_at_the_document() -> None:
    err = _error(_text(lambda d: d.pop("site")))
    assert str(err) == "s.yaml:1: site: required field is missing"
    assert [(p.field, p.line) for p in err.problems] == [("site", 1)]


def test_a_missing_nested_field_points_at_its_parent() -> None:
    text = _text(lambda d: d["store"]["zones"][2].pop("rect"))
    line = _line_of(text, "- id: bakery\n")
    assert str(_error(text)) == f"s.yaml:{line}: store.zones.2.rect: required field is missing"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (123, "expected a string; put the value in quotes (YAML read it as a number)"),
        (1.5, "expected a string; put the value in quotes (YAML read it as a number)"),
        ([1], "Input should be a valid string"),
        ("Bad Id", "does not match the expected form ^[a-z0-9][a-z0-9_-]{0,62}$"),
    ],
)
def test_value_errors_say_what_is_expected(value: object, message: str) -> None:
    text = _text(lambda d: d.update(device=value))
    line = _line_of(text, "device:")
    assert str(_error(text)) == f"s.yaml:{line}: device: {message}"


def test_literal_and_range_errors() -> None:
    text = _text(lambda d: d["display"].update(rotation=45))
    assert str(_error(text)) == (
        f"s.yaml:{_line_of(text, 'rotation:')}: display.rotation: expected one of 0, 90, 180 or 270"
    )
    text = _text(lambda d: d["privacy"].update(k=1))
    assert str(_error(text)) == (
        f"s.yaml:{_line_of(text, '  k: 1')}: privacy.k: Input should be greater than or equal to 2"
    )


def test_every_problem_is_reported_each_on_its_line() -> None:
    def two(d: dict[str, Any]) -> None:
        d["privacy"]["k"] = 1
        d["display"]["rotation"] = 45

    text = _text(two)
    err = _error(text)
    assert [(p.field, p.line) for p in err.problems] == [
        ("privacy.k", _line_of(text, "  k: 1")),
        ("display.rotation", _line_of(text, "rotation:")),
    ]


def test_a_problem_in_a_list_item_points_at_the_item() -> None:
    text = _text(lambda d: d["campaigns"][4].update(url="http://frozen.example"))
    line = _line_of(text, "http://frozen.example")
    assert str(_error(text)) == (
        f"s.yaml:{line}: campaigns.4.url: does not match the expected form ^https://"
    )


@pytest.mark.parametrize(
    ("index", "field", "value"),
    [(1, "uuid", "zz"), (4, "namespace", "zz"), (5, "instance", "zz"), (8, "beacon_id", "zz")],
)
def test_a_beacon_identity_error_names_the_field_not_the_union_tag(
    index: int, field: str, value: str
) -> None:
    # one of each kind (ibeacon, eddystone_uid, altbeacon): pydantic puts the tag in the path
    text = _text(lambda d: d["store"]["beacons"][index]["identity"].update({field: value}))
    err = _error(text)
    assert [p.field for p in err.problems] == [f"store.beacons.{index}.identity.{field}"]
    assert err.problems[0].line == _line_of(text, f"{field}: {value}")


def test_cross_check_findings_name_their_line() -> None:
    text = _text(lambda d: d["store"]["screens"][0].update(zone="cofee"))
    line = _line_of(text, "zone: cofee")
    assert str(_error(text)) == f"s.yaml:{line}: store.screens.0.zone: unknown zone 'cofee'"


def test_a_path_past_the_yaml_stops_at_the_deepest_node() -> None:
    # the duplicate campaign finding points at "campaigns" (no index): the key's line
    def dup(d: dict[str, Any]) -> None:
        d["campaigns"].append(copy.deepcopy(d["campaigns"][0]))

    text = _text(dup)
    line = _line_of(text, "campaigns:")
    assert str(_error(text)) == (
        f"s.yaml:{line}: campaigns: duplicate campaign id 'coffee-beans-2for1'"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("site: a\nsite: b\n", "s.yaml:2: <root>: duplicate key 'site'"),
        ("a:\n  b: 1\n  c: 2\n  b: 3\n", "s.yaml:4: a: duplicate key 'b'"),
        ("a:\n  - x: 1\n  - x: 1\n    y: 2\n    x: 3\n", "s.yaml:5: a.1: duplicate key 'x'"),
        ("- x: 1\n  x: 2\n", "s.yaml:2: 0: duplicate key 'x'"),
        ("a:\n  b:\n    c: 1\n    c: 2\nd: 1\nd: 2\n", "s.yaml:4: a.b: duplicate key 'c'"),
    ],
)
def test_the_first_duplicate_key_is_named_with_its_path_and_line(text: str, expected: str) -> None:
    assert str(_error(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("site: a\ndevice: [unclosed\nstore: 1\n", "s.yaml:3: <root>: not valid YAML: "),
        ("- 1\n- 2\n", "s.yaml:1: <root>: expected a mapping at the top level"),
        ("", "s.yaml:1: <root>: expected a mapping at the top level"),
    ],
)
def test_not_yaml_or_not_a_mapping(text: str, expected: str) -> None:
    assert str(_error(text)).startswith(expected)


def test_a_relative_state_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    text = _text(lambda d: d.update(state_dir="state"))
    path = tmp_path / "conf" / "store.yaml"
    path.parent.mkdir()
    path.write_text(text)
    assert load_config(path).state_dir == tmp_path / "conf" / "state"
    assert parse_config(text).state_dir == Path("state")  # no file: left as written
    absolute = _text(lambda d: d.update(state_dir=str(tmp_path / "abs")))
    assert parse_config(absolute, str(path)).state_dir == tmp_path / "abs"


def test_an_unreadable_file_names_the_path_and_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"{missing}: <root>: cannot read file: No such file or directory"
    assert info.value.path == str(missing)
    assert [(p.field, p.line) for p in info.value.problems] == [("", None)]


def test_not_utf8_has_no_field_or_line(tmp_path: Path) -> None:
    path = tmp_path / "l1.yaml"
    path.write_bytes(b"site: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 9)"
    assert [(p.field, p.line) for p in info.value.problems] == [("", None)]


def test_config_hash_is_short_stable_and_ignores_the_password() -> None:
    cfg = parse_config(DEMO_STORE.read_text())
    h = config_hash(cfg)
    assert len(h) == 16 and int(h, 16) >= 0
    assert config_hash(parse_config(DEMO_STORE.read_text())) == h
    secret = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update={"password": "hunter2"})})
    assert config_hash(secret) == h
    other = cfg.model_copy(update={"device": "another-device"})
    assert config_hash(other) != h


def test_config_hash_does_not_depend_on_the_order_keys_were_written() -> None:
    cfg = parse_config(DEMO_STORE.read_text())
    ab = cfg.commands.model_copy(update={"trusted_keys": {"a": "A" * 44, "b": "B" * 44}})
    ba = cfg.commands.model_copy(update={"trusted_keys": {"b": "B" * 44, "a": "A" * 44}})
    one = config_hash(cfg.model_copy(update={"commands": ab}))
    two = config_hash(cfg.model_copy(update={"commands": ba}))
    assert one == two
    assert one != config_hash(cfg)


def test_a_yaml_syntax_error_gives_the_problem_and_its_line() -> None:
    err = _error("site: a\nkey: b: c\n")
    assert str(err) == "s.yaml:2: <root>: not valid YAML: mapping values are not allowed here"
    assert [(p.field, p.line) for p in err.problems] == [("", 2)]


def test_a_character_yaml_refuses_has_no_line_but_says_what() -> None:
    err = _error("site: a\x07\n")  # a ReaderError: no problem_mark, no problem attribute
    assert str(err).startswith(
        "s.yaml: <root>: not valid YAML: unacceptable character #x0007: "
        "special characters are not allowed"
    )
    assert err.problems[0].line is None


def test_text_without_a_file_name_is_called_string() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("- 1\n")
    assert str(info.value) == "<string>:1: <root>: expected a mapping at the top level"
    assert [(p.field, p.line) for p in info.value.problems] == [("", 1)]
    assert info.value.path == "<string>"
