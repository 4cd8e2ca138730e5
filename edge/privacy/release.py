"""Which release the device publishes (``privacy.release``): the one aggregator of the app.

``day`` (the default) publishes one day release per site-local day and, with
``privacy.period_days`` ≥ 2 (default 7), the period release of footfall beside it
(edge/privacy/period.py); ``window`` publishes every ``window_s`` window.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge.config.models import AppConfig
from edge.events import AggregateWindow
from edge.privacy.aggregates import WindowAggregator
from edge.privacy.daily import DayAggregator
from edge.privacy.ledger import EpsilonLedger
from edge.privacy.period import DayAndPeriod

Aggregator = WindowAggregator | DayAggregator


def make_aggregator(
    cfg: AppConfig,
    *,
    ledger: EpsilonLedger,
    local_day: Callable[[float], str],
    monotonic: Callable[[], float] = time.monotonic,
    started: float | None = None,
) -> Aggregator:
    """The aggregator for the configured release (``day`` with a 7-day period by default)."""
    if cfg.privacy.release == "window":
        return WindowAggregator(cfg, ledger=ledger, local_day=local_day, monotonic=monotonic)
    if cfg.privacy.period_days >= 2:
        return DayAndPeriod(cfg, ledger=ledger, monotonic=monotonic, started=started)
    return DayAggregator(cfg, ledger=ledger, monotonic=monotonic, started=started)


def close_all(aggregator: Aggregator, now: float) -> list[AggregateWindow]:
    """At a stop: everything counted so far, published early (``partial``) where granted."""
    if isinstance(aggregator, DayAndPeriod):
        return aggregator.close_all(now)
    window = aggregator.close(now, partial=True)
    return [] if window is None else [window]
