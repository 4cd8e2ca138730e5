"""JSON that means one thing: duplicate keys are an error, not "the last one wins".

Used wherever JSON from outside the device is parsed (app sightings, signed commands), so a
message cannot say two things and have the device pick one silently.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"duplicate key {key!r}")
        out[key] = value
    return out


def loads(payload: bytes | str) -> Any:
    """``json.loads`` that raises ``DuplicateKeyError`` on a repeated key (a ValueError)."""
    return json.loads(payload, object_pairs_hook=_no_duplicates)
