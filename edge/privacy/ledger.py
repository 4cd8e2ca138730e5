"""The ε ledger: which window slots were published each local day, on disk, across restarts.

Before a window is published its slot (window start) is claimed here in one SQLite
transaction. A claim fails when the slot was already published (a stop publishes a partial
window; the rest of that slot after a restart is dropped, never published again) or when the
day already has ``max_windows_per_day`` windows (the budget is spent). Spent ε is the number
of published windows times ε per window, so it can reach but never pass ``ε_day``.

A ledger file that cannot be read is moved aside and a fresh one started; the day of the
recovery is then treated as fully spent (nothing more is published that day), because the
lost file may have recorded a full day.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from edge.privacy.budget import Budget

_LOGGER = logging.getLogger(__name__)
KEEP_DAYS = 14
_SCHEMA = """
CREATE TABLE IF NOT EXISTS published (
    slot INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS published_day ON published (day);
CREATE TABLE IF NOT EXISTS exhausted (day TEXT PRIMARY KEY);
"""


class EpsilonLedger:
    """Claims window slots against the daily budget; ``path=None`` keeps it in RAM (tests)."""

    def __init__(self, path: Path | None, budget: Budget, *, today: str | None = None) -> None:
        self.path = path
        self.budget = budget
        self._lock = threading.Lock()
        self.recovered_from: str | None = None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if path is None or isinstance(exc, sqlite3.OperationalError):
                raise
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            path.rename(aside)
            for suffix in ("-wal", "-shm"):
                companion = path.with_name(path.name + suffix)
                if companion.exists():
                    companion.rename(aside.with_name(aside.name + suffix))
            self.recovered_from = aside.name
            self._db = self._open()
            if today is not None:
                self._db.execute("INSERT OR IGNORE INTO exhausted (day) VALUES (?)", (today,))
            _LOGGER.error(
                "privacy ledger %s unreadable; moved aside to %s; today counts as fully spent",
                path,
                aside.name,
            )

    def _open(self) -> sqlite3.Connection:
        target = ":memory:" if self.path is None else str(self.path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        try:
            if self.path is not None:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM published").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def claim(self, slot_start: int, local_day: str) -> bool:
        """Record the slot as published; False when already published or the day is spent."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM published WHERE slot = ?", (slot_start,)).fetchone():
                    db.execute("ROLLBACK")
                    return False
                if self._spent_windows(local_day) >= self.budget.max_windows_per_day:
                    db.execute("ROLLBACK")
                    return False
                db.execute(
                    "INSERT INTO published (slot, day, at) VALUES (?, ?, ?)",
                    (slot_start, local_day, time.time()),
                )
                cutoff = slot_start - KEEP_DAYS * 86_400
                db.execute("DELETE FROM published WHERE slot < ?", (cutoff,))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return True

    def _spent_windows(self, local_day: str) -> int:
        if self._db.execute("SELECT 1 FROM exhausted WHERE day = ?", (local_day,)).fetchone():
            return self.budget.max_windows_per_day
        row = self._db.execute("SELECT COUNT(*) FROM published WHERE day = ?", (local_day,))
        return int(row.fetchone()[0])

    def published(self, local_day: str) -> int:
        """Windows published (or counted as spent) on that local day."""
        with self._lock:
            return min(self._spent_windows(local_day), self.budget.max_windows_per_day)

    def spent(self, local_day: str) -> float:
        """Worst-case ε one person has spent on that day."""
        per_window = self.budget.worst_case_per_day / self.budget.max_windows_per_day
        return float(self.published(local_day) * per_window)

    def remaining(self, local_day: str) -> float:
        """ε left for that day."""
        return float(self.budget.worst_case_per_day) - self.spent(local_day)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
