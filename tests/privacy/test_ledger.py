"""The ε ledger: survives restarts, stops at the day's budget, never publishes a slot twice."""

from __future__ import annotations

from pathlib import Path

from edge.privacy.aggregates import WindowAggregator
from edge.privacy.budget import Budget
from edge.privacy.ledger import EpsilonLedger
from tests.helpers import demo_config

DAY = "2026-11-24"


def _budget(windows: int = 4) -> Budget:
    cfg = demo_config()
    privacy = cfg.privacy.model_copy(update={"max_windows_per_day": windows})
    return Budget.from_config(cfg.model_copy(update={"privacy": privacy}))


def test_ledger_survives_restart_and_stops_at_budget(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite3"
    budget = _budget(4)
    first = EpsilonLedger(path, budget)
    assert first.claim(0, DAY) and first.claim(900, DAY)
    assert first.spent(DAY) == 0.5 and first.remaining(DAY) == 0.5
    first.close()
    second = EpsilonLedger(path, budget)  # a restart
    assert second.published(DAY) == 2
    assert not second.claim(900, DAY)  # already published before the restart
    assert second.claim(1800, DAY) and second.claim(2700, DAY)
    assert not second.claim(3600, DAY)  # the day's budget is spent
    assert second.spent(DAY) == 1.0 and second.remaining(DAY) == 0.0
    assert second.claim(90_000, "2026-11-25")  # a new local day starts afresh
    second.close()


def test_partial_window_at_stop_is_not_published_again_after_restart(tmp_path: Path) -> None:
    cfg = demo_config()
    path = tmp_path / "privacy-ledger.sqlite3"
    budget = Budget.from_config(cfg)
    from edge.events import PresenceKind
    from tests.privacy.test_aggregates import _ev

    t0 = 1_800_000_000 - (1_800_000_000 % 900)
    agg = WindowAggregator(cfg, ledger=EpsilonLedger(path, budget), local_day=lambda ts: DAY)
    agg.presence(_ev(PresenceKind.ENTER, 1, "coffee", t0 + 10))
    first = agg.close(t0 + 300, partial=True)  # SIGTERM mid-window
    assert first is not None and first.payload["partial"] is True
    agg.ledger.close()
    again = WindowAggregator(cfg, ledger=EpsilonLedger(path, budget), local_day=lambda ts: DAY)
    again.presence(_ev(PresenceKind.ENTER, 2, "coffee", t0 + 400))  # same slot after restart
    assert again.due(t0 + 900)
    assert again.close(t0 + 900) is None  # the slot was already published: dropped
    assert again.windows_withheld == 1
    again.presence(_ev(PresenceKind.ENTER, 3, "coffee", t0 + 901))
    assert again.close(t0 + 1800) is not None  # the next slot is fine
    assert again.ledger.published(DAY) == 2


def test_corrupt_ledger_counts_today_as_spent(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite3"
    path.write_bytes(b"garbage, not a database" * 100)
    ledger = EpsilonLedger(path, _budget(4), today=DAY)
    assert ledger.recovered_from is not None
    assert (tmp_path / ledger.recovered_from).exists()
    assert not ledger.claim(0, DAY)
    assert ledger.remaining(DAY) == 0.0
    assert ledger.claim(90_000, "2026-11-25")
    ledger.close()
