"""The on-device model as a supervised component: load, verify, swap, probation, rollback.

``run`` loads the active model in a worker thread (the scorer checks the card, hash, shapes
and canary inputs) and then watches it. The active model is the one installed last by
``update_model`` (recorded in ``{state_dir}/models/active.json``, so it survives a restart),
else the configured one. ``install`` writes a new model and card under
``{state_dir}/models/<sha256 of model and card>/``, verifies it, and swaps it in between two
decisions; the previous model is kept. For ``probation_s`` after a swap, a scorer error or a
canary mismatch rolls back to the previous model at once. A model that fails to load at
start raises, so the supervisor retries and finally marks the model failed; meanwhile tier-2
offers are ranked by distance, like tier 1. No unverified file is ever used.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.config.models import AppConfig
from edge.decide.engine import Scorer
from edge.errors import ModelError
from edge.lifecycle import ComponentHealth, Progress

_LOGGER = logging.getLogger(__name__)
BEAT_S = 1.0
PROBATION_S = 300.0


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ModelWorker:
    """Holds the scorer in use; ``current()`` is what the decision engine asks for."""

    name = "model"
    essential = False

    def __init__(
        self,
        cfg: AppConfig,
        *,
        preloaded: Scorer | None = None,
        errors: Callable[[], int] = lambda: 0,
        probation_s: float = PROBATION_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = cfg.model.path
        self._card = cfg.model.card
        self._models_dir = cfg.state_dir / "models"
        self._scorer: Scorer | None = preloaded
        self._previous: Scorer | None = None
        self._errors = errors
        self._probation_s = probation_s
        self._mono = monotonic
        self._probation_until: float | None = None
        self._errors_at_swap = 0
        self.load_error: str | None = None
        self.swaps = 0
        self.rollbacks = 0
        self.last_rollback: str | None = None

    def current(self) -> Scorer | None:
        """The model in use, or None (distance ranking)."""
        return self._scorer

    @property
    def model_id(self) -> str | None:
        """Id of the model in use."""
        return None if self._scorer is None else self._scorer.model_id

    async def load(self, path: Path | None, card: Path | None) -> Scorer:
        """Load and verify a model in a worker thread (raises ModelError when rejected)."""
        try:
            from edge.decide.scorer import CouponScorer
        except ImportError as exc:
            raise ModelError(f"no TFLite runtime: {exc}") from exc
        return await asyncio.to_thread(CouponScorer.load, path, card)

    def _active_paths(self) -> tuple[Path | None, Path | None]:
        """The installed model recorded in active.json, else the configured one."""
        marker = self._models_dir / "active.json"
        try:
            sha = json.loads(marker.read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            return self._path, self._card
        folder = self._models_dir / str(sha)
        return folder / "coupon.tflite", folder / "coupon.card.json"

    async def try_load(self) -> bool:
        """Load the active model once (at start); False when it was rejected."""
        path, card = self._active_paths()
        try:
            self._scorer = await self.load(path, card)
        except ModelError as exc:
            if (path, card) != (self._path, self._card):
                _LOGGER.error("installed model rejected (%s); using the configured one", exc)
                return await self._load_configured()
            self.load_error = type(exc).__name__
            _LOGGER.error("model not loaded; tier 2 falls back to distance ranking: %s", exc)
            return False
        self.load_error = None
        return True

    async def _load_configured(self) -> bool:
        try:
            self._scorer = await self.load(self._path, self._card)
        except ModelError as exc:
            self.load_error = type(exc).__name__
            _LOGGER.error("model not loaded; tier 2 falls back to distance ranking: %s", exc)
            return False
        return True

    async def install(self, model: bytes, card: dict[str, Any]) -> str:
        """Store, verify and swap in a new model; the old one stays when it is rejected."""
        # one folder per (model, card): the same weights may come with a new card
        card_bytes = json.dumps(card, sort_keys=True).encode()
        sha = hashlib.sha256(model + b"\0" + card_bytes).hexdigest()
        folder = self._models_dir / sha
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        model_path, card_path = folder / "coupon.tflite", folder / "coupon.card.json"
        await asyncio.to_thread(_write_atomic, model_path, model)
        await asyncio.to_thread(_write_atomic, card_path, card_bytes)
        scorer = await self.load(model_path, card_path)  # verified before it is used
        self._previous, self._scorer = self._scorer, scorer
        self.swaps += 1
        self.load_error = None
        self._probation_until = self._mono() + self._probation_s
        self._errors_at_swap = self._errors()
        marker = json.dumps({"sha256": sha, "model_id": scorer.model_id}).encode()
        await asyncio.to_thread(_write_atomic, self._models_dir / "active.json", marker)
        _LOGGER.info(
            "model %s installed; on probation for %.0f s", scorer.model_id, self._probation_s
        )
        return scorer.model_id

    async def replace(self, path: Path, card: Path | None = None) -> str:
        """Install a model from files on the device (``update_model`` with paths)."""
        from edge.decide.scorer import card_path_for

        data = await asyncio.to_thread(Path(path).read_bytes)
        card_file = card or card_path_for(Path(path))
        try:
            card_data = json.loads(await asyncio.to_thread(card_file.read_text))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read card {card_file}: {exc}") from exc
        return await self.install(data, card_data)

    async def _probation_check(self) -> None:
        if self._probation_until is None:
            return
        if self._mono() > self._probation_until:
            self._probation_until = None
            self._previous = None
            _LOGGER.info("model %s passed probation", self.model_id)
            return
        reason = None
        if self._errors() > self._errors_at_swap:
            reason = "scorer errors"
        else:
            check = getattr(self._scorer, "check_canaries", None)
            if check is not None:
                try:
                    await asyncio.to_thread(check)
                except ModelError:
                    reason = "canary mismatch"
        if reason is not None:
            await self._rollback(reason)

    async def _rollback(self, reason: str) -> None:
        bad = self.model_id
        self._scorer, self._previous = self._previous, None
        self._probation_until = None
        self.rollbacks += 1
        self.last_rollback = reason
        marker = self._models_dir / "active.json"
        prev = None if self._scorer is None else getattr(self._scorer, "model_path", None)
        if prev is not None and Path(prev).parent.parent == self._models_dir:
            data = json.dumps({"sha256": Path(prev).parent.name, "model_id": self.model_id})
            await asyncio.to_thread(_write_atomic, marker, data.encode())
        else:
            await asyncio.to_thread(marker.unlink, True)
        _LOGGER.error("model %s rolled back to %s: %s", bad, self.model_id, reason)

    async def run(self, progress: Progress) -> None:
        """Load the active model (if none is loaded), then watch probation."""
        if self._scorer is None and not await self.try_load():
            raise ModelError("no model could be loaded")
        while True:
            progress()
            await self._probation_check()
            await asyncio.sleep(BEAT_S)

    def health(self) -> ComponentHealth:
        """Which model is in use, probation and rollbacks."""
        return ComponentHealth(
            self._scorer is not None,
            {
                "model_id": self.model_id,
                "load_error": self.load_error,
                "swaps": self.swaps,
                "on_probation": self._probation_until is not None,
                "rollbacks": self.rollbacks,
                "last_rollback": self.last_rollback,
            },
        )

    def apply_config(self, cfg: AppConfig) -> bool:
        """A different model file needs a restart (or ``update_model``)."""
        return (cfg.model.path, cfg.model.card) != (self._path, self._card)
