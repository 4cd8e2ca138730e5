"""ε ledger edges on a real SQLite file: the 14-day pruning boundary (window and day slots,
and recovered days), recovery of a corrupt file with its WAL companions and the log line,
what is re-raised instead, a failed claim leaving the ledger usable, claims from another
thread, explicit ε per claim, and remaining never below zero."""

from __future__ import annotations

import datetime as dt
import logging
import re
import sqlite3
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

from edge.privacy.ledger import KEEP_DAYS, EpsilonLedger
from tests.privacy.test_ledger import _budget

DAY = "2027-01-01"
KEEP_S = KEEP_DAYS * 86_400


def _day(offset: int) -> str:
    return (dt.date.fromisoformat(DAY) + dt.timedelta(days=offset)).isoformat()


def test_keep_days_is_two_weeks() -> None:
    assert KEEP_DAYS == 14


def test_window_slots_older_than_keep_days_are_pruned_at_the_boundary(tmp_path: Path) -> None:
    ledger = EpsilonLedger(tmp_path / "l.sqlite3", _budget(4))
    assert ledger.claim(1000, DAY)
    assert ledger.claim(1000 + KEEP_S, _day(KEEP_DAYS))  # exactly KEEP_DAYS later: kept
    assert ledger.published(DAY) == 1
    assert not ledger.claim(1000, DAY)  # still refused as published
    assert ledger.claim(1001 + KEEP_S, _day(KEEP_DAYS))  # one second more: pruned
    assert ledger.published(DAY) == 0 and ledger.spent(DAY) == 0.0
    assert ledger.published(_day(KEEP_DAYS)) == 2
    ledger.close()


def test_day_segment_slots_are_pruned_by_their_magnitude(tmp_path: Path) -> None:
    ledger = EpsilonLedger(tmp_path / "l.sqlite3", _budget(4))
    assert ledger.claim(-1000, DAY)  # a day segment: minus its start
    assert ledger.claim(-(1000 + KEEP_S), _day(KEEP_DAYS))
    assert ledger.published(DAY) == 1
    assert ledger.claim(-(1001 + KEEP_S), _day(KEEP_DAYS))
    assert ledger.published(DAY) == 0
    ledger.close()


def test_a_recovered_day_stays_spent_for_keep_days_then_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    path.write_bytes(b"not a database " * 200)
    ledger = EpsilonLedger(path, _budget(4), today=DAY)
    assert ledger.remaining(DAY) == 0.0
    assert ledger.claim(10, _day(KEEP_DAYS))
    assert ledger.remaining(DAY) == 0.0  # 14 days later: still recorded
    assert ledger.claim(20, _day(KEEP_DAYS + 1))
    assert ledger.remaining(DAY) == 1.0  # 15 days later: pruned
    assert ledger.claim(30, "not-a-date")  # a day name that is no date prunes no day
    assert ledger.published("not-a-date") == 1
    ledger.close()


def test_a_ledger_in_a_new_directory_is_created_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deeper" / "l.sqlite3"
    first = EpsilonLedger(path, _budget(4))
    assert first.claim(0, DAY)
    first.close()
    second = EpsilonLedger(path, _budget(4))
    assert second.recovered_from is None and second.published(DAY) == 1
    assert second.spent_exact(DAY) == Fraction(1, 4)
    second.close()


def _corrupt_leaves(path: Path) -> None:
    """A ledger file whose table leaves are damaged: it opens, but fails ``quick_check``."""
    ledger = EpsilonLedger(path, _budget(96))
    for i in range(400):
        assert ledger.claim(900 * i, f"2026-11-{1 + i // 96:02d}")
    ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()
    raw, page = bytearray(path.read_bytes()), 4096
    for start in [at for at in range(page, len(raw), page) if raw[at] == 13]:
        raw[start + page // 2 : start + page] = b"\xa5" * (page // 2)
    path.write_bytes(bytes(raw))


def test_a_corrupt_file_is_moved_aside_with_its_companions_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "privacy-ledger.sqlite3"
    _corrupt_leaves(path)
    # another process (a technician's sqlite3 shell) holds the file open in WAL mode, so
    # its -wal and -shm files stay when the ledger gives up on it
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN")
    other.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    assert (tmp_path / "privacy-ledger.sqlite3-wal").exists()
    assert (tmp_path / "privacy-ledger.sqlite3-shm").exists()
    before = int(time.time())
    with caplog.at_level(logging.ERROR, logger="edge.privacy.ledger"):
        ledger = EpsilonLedger(path, _budget(4), today=DAY)
    after = int(time.time())
    other.close()
    aside = ledger.recovered_from
    assert aside is not None
    m = re.fullmatch(r"privacy-ledger\.sqlite3\.corrupt-(\d+)", aside)
    assert m and before <= int(m.group(1)) <= after
    assert (tmp_path / aside).stat().st_size > 3 * 4096
    assert (tmp_path / f"{aside}-wal").exists() and (tmp_path / f"{aside}-shm").exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"privacy ledger {path} unreadable; moved aside to {aside}; {DAY} counts as fully spent"
    ]
    assert ledger.published("2026-11-01") == 0  # a fresh, working ledger
    assert ledger.claim(0, _day(1))
    ledger.close()


def test_a_corrupt_file_without_companions_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    path.write_bytes(b"garbage " * 512)
    ledger = EpsilonLedger(path, _budget(4), today=DAY)
    assert ledger.recovered_from is not None
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == [
        ledger.recovered_from
    ]
    ledger.close()


def test_recovery_without_a_named_day_spends_this_process_local_date(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    path.write_bytes(b"garbage " * 512)
    before = time.strftime("%Y-%m-%d")
    ledger = EpsilonLedger(path, _budget(4))
    after = time.strftime("%Y-%m-%d")
    assert {ledger.remaining(before), ledger.remaining(after)} == {0.0} or before != after
    assert ledger.remaining(_day(-400)) == 1.0  # only that day
    ledger.close()


def test_an_unopenable_path_is_an_error_not_a_recovery(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    path.mkdir()  # a directory where the file should be: SQLite cannot open it
    with pytest.raises(sqlite3.OperationalError):
        EpsilonLedger(path, _budget(4), today=DAY)
    assert path.is_dir() and [p.name for p in tmp_path.iterdir()] == ["l.sqlite3"]


def test_a_failed_claim_rolls_back_and_leaves_the_ledger_usable(tmp_path: Path) -> None:
    ledger = EpsilonLedger(tmp_path / "l.sqlite3", _budget(4))
    with pytest.raises(sqlite3.Error):
        ledger.claim(object(), DAY)  # type: ignore[arg-type]
    assert ledger.claim(0, DAY) and ledger.published(DAY) == 1
    ledger.close()


def test_claims_from_another_thread_share_the_ledger(tmp_path: Path) -> None:
    ledger = EpsilonLedger(tmp_path / "l.sqlite3", _budget(4))
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.append(ledger.claim(0, DAY)))
    worker.start()
    worker.join()
    assert results == [True]
    assert not ledger.claim(0, DAY) and ledger.published(DAY) == 1
    ledger.close()


def test_explicit_epsilon_per_claim_is_summed_exactly() -> None:
    ledger = EpsilonLedger(None, _budget(96))
    third = Fraction(1, 3)
    assert all(ledger.claim(-i, DAY, epsilon=third) for i in range(1, 4))
    assert ledger.spent_exact(DAY) == 1 and ledger.remaining_exact(DAY) == 0
    assert not ledger.claim(-4, DAY, epsilon=Fraction(1, 10**9))
    assert ledger.claim(-5, _day(1), epsilon=Fraction(1, 2))
    assert ledger.remaining_exact(_day(1)) == Fraction(1, 2)
    assert ledger.remaining(_day(1)) == 0.5 and ledger.spent(_day(1)) == 0.5
    assert ledger.published(DAY) == 3
    empty = ledger.spent_exact(_day(9))  # a day with nothing recorded: an exact zero
    assert isinstance(empty, Fraction) and empty == 0
    ledger.close()


def test_remaining_is_never_below_zero_when_the_day_budget_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    first = EpsilonLedger(path, _budget(4))
    assert all(first.claim(900 * i, DAY) for i in range(4))
    first.close()
    cfg_half = _budget(4)
    half = type(cfg_half)(**{**{f: getattr(cfg_half, f) for f in cfg_half.__slots__},
                             "epsilon_per_day": Fraction(1, 2)})  # fmt: skip
    second = EpsilonLedger(path, half)
    assert second.spent_exact(DAY) == 1
    assert second.remaining_exact(DAY) == 0 and second.remaining(DAY) == 0.0
    assert not second.claim(10**6, DAY, epsilon=Fraction(0))  # 1 + 0 > 1/2
    second.close()
