"""The ε ledger: survives restarts, stops at the day's budget, never publishes a slot twice."""

from __future__ import annotations

import sqlite3
from fractions import Fraction
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


def test_spent_is_the_exact_sum_when_parameters_change_between_restarts(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite3"
    morning = EpsilonLedger(path, _budget(4))  # ε_w = 1/4
    assert morning.claim(0, DAY) and morning.claim(900, DAY)
    morning.close()
    later = EpsilonLedger(path, _budget(96))  # restarted with ε_w = 1/96
    assert later.spent_exact(DAY) == Fraction(1, 2) and later.published(DAY) == 2
    claimed = sum(later.claim(1800 + 900 * i, DAY) for i in range(96))
    assert claimed == 48  # 1/2 + 48/96 = 1: counting windows against W would allow 94
    assert later.spent_exact(DAY) == 1 and later.remaining(DAY) == 0.0
    later.close()
    tighter = EpsilonLedger(path, _budget(2))  # ε_w = 1/2: nothing fits any more
    assert not tighter.claim(200_000 - 200_000 % 900, DAY)
    assert tighter.spent(DAY) == 1.0
    tighter.close()


def test_a_full_day_of_windows_spends_exactly_epsilon_day() -> None:
    ledger = EpsilonLedger(None, _budget(96))
    assert all(ledger.claim(900 * i, DAY) for i in range(96))
    assert not ledger.claim(900 * 96, DAY)
    assert ledger.spent_exact(DAY) == 1 and ledger.published(DAY) == 96
    ledger.close()


def test_corruption_inside_the_file_is_caught_and_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite3"
    ledger = EpsilonLedger(path, _budget(96))
    for i in range(400):  # a few pages of rows and index
        assert ledger.claim(900 * i, f"2026-11-{1 + i // 96:02d}")
    ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    assert len(raw) > 3 * page
    # cells of the table's leaf pages (type 13) only: COUNT(*) still reads the index fine,
    # so only the quick_check at open finds it
    leaves = [at for at in range(page, len(raw), page) if raw[at] == 13]
    assert leaves
    for start in leaves:
        raw[start + page // 2 : start + page] = b"\xa5" * (page // 2)
    path.write_bytes(bytes(raw))
    recovered = EpsilonLedger(path, _budget(96), today=DAY)
    assert recovered.recovered_from is not None
    assert recovered.remaining(DAY) == 0.0 and not recovered.claim(10**9, DAY)
    recovered.close()


def test_a_ledger_from_before_per_window_epsilon_still_counts(tmp_path: Path) -> None:
    path = tmp_path / "privacy-ledger.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE published (slot INTEGER PRIMARY KEY, day TEXT NOT NULL, at REAL NOT NULL);"
        "CREATE TABLE exhausted (day TEXT PRIMARY KEY);"
        f"INSERT INTO published VALUES (0, '{DAY}', 0), (900, '{DAY}', 0);"
    )
    old.commit()
    old.close()
    ledger = EpsilonLedger(path, _budget(4))
    assert ledger.recovered_from is None
    assert ledger.spent_exact(DAY) == Fraction(1, 2)  # old rows count at today's ε_w
    assert not ledger.claim(900, DAY)
    assert ledger.claim(1800, DAY) and ledger.claim(2700, DAY) and not ledger.claim(3600, DAY)
    ledger.close()
