"""Split a model and its card into ``update_model`` commands that fit the size bound."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

DEFAULT_CHUNK_BYTES = 24 * 1024  # base64 grows it by a third: well inside the 64 KiB default


def model_update_args(
    model: bytes, card: dict[str, Any], version: int, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> list[dict[str, Any]]:
    """The ``args`` of each command, in order; one command when the model fits in one chunk."""
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be >= 1")
    pieces = [model[i : i + chunk_bytes] for i in range(0, len(model), chunk_bytes)] or [b""]
    sha = hashlib.sha256(model).hexdigest()
    return [
        {
            "version": version,
            "card": card,
            "sha256": sha,
            "index": i,
            "chunks": len(pieces),
            "model_b64": base64.b64encode(piece).decode(),
        }
        for i, piece in enumerate(pieces)
    ]
