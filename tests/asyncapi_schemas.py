"""Validate real messages against the schemas of docs/asyncapi.yaml (the contract document)."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
import yaml

from tests.helpers import ROOT


@cache
def _document() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    return doc


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = _document()["components"]["schemas"]
    return schemas


@cache
def _validator(schema: str) -> jsonschema.Draft202012Validator:
    # The named schema as the root's $ref, with the document's components beside it, so
    # "#/components/schemas/..." references inside it resolve.
    root = {"$ref": f"#/components/schemas/{schema}", "components": _document()["components"]}
    return jsonschema.Draft202012Validator(root)


def check(schema: str, payload: Any) -> None:
    """Raise jsonschema.ValidationError when ``payload`` breaks the named schema."""
    if schema not in _schemas():
        raise KeyError(f"no schema {schema!r} in docs/asyncapi.yaml")
    _validator(schema).validate(payload)
