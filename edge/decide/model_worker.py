"""The on-device model as a supervised component: load, verify, swap.

``run`` loads the configured model in a worker thread (the scorer checks the card, hash,
shapes and canary inputs) and then idles. A model that fails to load raises, so the
supervisor retries with backoff and finally marks the model failed; meanwhile the decision
stage ranks tier-2 offers by distance, like tier 1. ``replace`` loads and verifies a new
model before swapping it in; the old one stays in use when the new one is rejected.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edge.config.models import AppConfig
from edge.decide.engine import Scorer
from edge.errors import ModelError
from edge.lifecycle import ComponentHealth, Progress

_LOGGER = logging.getLogger(__name__)
BEAT_S = 1.0


class ModelWorker:
    """Holds the scorer in use; ``current()`` is what the decision engine asks for."""

    name = "model"
    essential = False

    def __init__(self, cfg: AppConfig, *, preloaded: Scorer | None = None) -> None:
        self._path = cfg.model.path
        self._card = cfg.model.card
        self._scorer: Scorer | None = preloaded
        self.load_error: str | None = None
        self.swaps = 0

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

    async def replace(self, path: Path, card: Path | None = None) -> str:
        """Verify a new model and swap it in atomically; the old one stays on failure."""
        scorer = await self.load(path, card)
        self._scorer = scorer
        self._path, self._card = path, card
        self.swaps += 1
        self.load_error = None
        return scorer.model_id

    async def try_load(self) -> bool:
        """Load the configured model once (at start); False when it was rejected."""
        try:
            self._scorer = await self.load(self._path, self._card)
        except ModelError as exc:
            self.load_error = type(exc).__name__
            _LOGGER.error("model not loaded; tier 2 falls back to distance ranking: %s", exc)
            return False
        self.load_error = None
        return True

    async def run(self, progress: Progress) -> None:
        """Load the configured model (if none is loaded), then idle."""
        if self._scorer is None:
            try:
                self._scorer = await self.load(self._path, self._card)
            except ModelError as exc:
                self.load_error = type(exc).__name__
                _LOGGER.error("model not loaded; tier 2 falls back to distance ranking: %s", exc)
                raise
            self.load_error = None
        while True:
            progress()
            await asyncio.sleep(BEAT_S)

    def health(self) -> ComponentHealth:
        """Which model is in use and whether the last load failed."""
        return ComponentHealth(
            self._scorer is not None,
            {"model_id": self.model_id, "load_error": self.load_error, "swaps": self.swaps},
        )

    def apply_config(self, cfg: AppConfig) -> bool:
        """A different model file needs a restart (or ``update_model``)."""
        return (cfg.model.path, cfg.model.card) != (self._path, self._card)
