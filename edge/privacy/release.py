"""Which release the device publishes (``privacy.release``): the one aggregator of the app."""

from __future__ import annotations

import time
from collections.abc import Callable

from edge.config.models import AppConfig
from edge.privacy.aggregates import WindowAggregator
from edge.privacy.daily import DayAggregator
from edge.privacy.ledger import EpsilonLedger

Aggregator = WindowAggregator | DayAggregator


def make_aggregator(
    cfg: AppConfig,
    *,
    ledger: EpsilonLedger,
    local_day: Callable[[float], str],
    monotonic: Callable[[], float] = time.monotonic,
    started: float | None = None,
) -> Aggregator:
    """The aggregator for the configured release (``day`` by default)."""
    if cfg.privacy.release == "window":
        return WindowAggregator(cfg, ledger=ledger, local_day=local_day, monotonic=monotonic)
    return DayAggregator(cfg, ledger=ledger, monotonic=monotonic, started=started)
