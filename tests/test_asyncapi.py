"""docs/asyncapi.yaml is a valid AsyncAPI 3 document whose schemas accept what the code sends
and reject what it must never send."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from edge.commands.envelope import Ack, AckCode
from edge.contract.aggregate import RELEASES
from tests.asyncapi_schemas import _schemas, check
from tests.helpers import ROOT


def test_document_shape() -> None:
    doc = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert "shelfedge/v1/{site}/{device}/cmd/{name}" in addresses
    assert "shelfedge/v1/{site}/sightings" in addresses
    for schema in _schemas().values():
        jsonschema.Draft202012Validator.check_schema(schema)
    codes = _schemas()["Ack"]["properties"]["code"]["enum"]
    assert set(codes) == {c.value for c in AckCode}  # the document lists every code, no more


def test_ack_model_matches_the_document() -> None:
    ack = Ack(id=None, status="rejected", code=AckCode.BAD_JSON, message="x")
    check("Ack", json.loads(ack.model_dump_json()))
    with pytest.raises(jsonschema.ValidationError):
        check("Ack", {**json.loads(ack.model_dump_json()), "token": "00" * 16})


def test_state_schema_rejects_exact_counts() -> None:
    with pytest.raises(jsonschema.ValidationError):
        check("State", {"online": True, "site": "s", "device": "d", "live_tokens": 3})


def test_every_release_kind_of_the_contract_has_its_schema() -> None:
    schemas = _schemas()
    kinds = set()
    for ref in schemas["Aggregate"]["oneOf"]:
        name = ref["$ref"].rsplit("/", 1)[-1]
        kinds.add(schemas[name]["properties"]["release"]["const"])
    assert kinds == set(RELEASES)
    period = schemas["AggregatePeriod"]
    assert {"first_day", "last_day", "days"} <= set(period["required"])
    stat = period["properties"]["stats"]["additionalProperties"]
    assert "epsilon_per_day" in stat["required"]
