"""Validate real messages against the schemas of docs/asyncapi.yaml (the contract document)."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
import yaml

from tests.helpers import ROOT


@cache
def _schemas() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    schemas: dict[str, Any] = doc["components"]["schemas"]
    return schemas


def check(schema: str, payload: Any) -> None:
    """Raise jsonschema.ValidationError when ``payload`` breaks the named schema."""
    validator = jsonschema.Draft202012Validator(_schemas()[schema])
    validator.validate(payload)
