"""The ε ledger: which window slots were published each local day, and the ε each spent.

Before a window is published its slot (window start) is claimed here in one SQLite
transaction, recording the window's ε exactly (a fraction). A claim fails when the slot was
already published (a stop publishes a partial window; the rest of that slot after a restart
is dropped, never published again) or when the day's recorded ε plus this window's would pass
``ε_day`` (the budget is spent). Because each row carries its own ε, the sum stays true when
the privacy parameters change between restarts (e.g. fewer, costlier windows in the morning
and the default later the same day): spent ε is the exact sum of what was published, and it
can reach but never pass the ``ε_day`` in force when a window is claimed.

A ledger file that cannot be read (or fails SQLite's ``quick_check``) is moved aside and a
fresh one started; the day of the recovery is then treated as fully spent (nothing more is
published that day), because the lost file may have recorded a full day.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from fractions import Fraction
from pathlib import Path

from edge.privacy.budget import Budget

_LOGGER = logging.getLogger(__name__)
KEEP_DAYS = 14
_SCHEMA = """
CREATE TABLE IF NOT EXISTS published (
    slot INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    at REAL NOT NULL,
    epsilon TEXT
);
CREATE INDEX IF NOT EXISTS published_day ON published (day);
CREATE TABLE IF NOT EXISTS exhausted (day TEXT PRIMARY KEY);
"""


class EpsilonLedger:
    """Claims window slots against the daily budget; ``path=None`` keeps it in RAM (tests).

    ``today`` names the local day a corrupt file is recovered on (that day counts as fully
    spent); the daemon passes the site's local date, the default is this process's local date.
    """

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
            day = today if today is not None else time.strftime("%Y-%m-%d")
            self._db.execute(
                "INSERT OR IGNORE INTO exhausted (day) VALUES (?)",
                (day,),
            )
            _LOGGER.error(
                "privacy ledger %s unreadable; moved aside to %s; %s counts as fully spent",
                path,
                aside.name,
                day,
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
                check = db.execute("PRAGMA quick_check").fetchone()
                if check is None or check[0] != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {check!r}")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(published)")}
            if "epsilon" not in columns:  # a ledger from before ε was recorded per window
                db.execute("ALTER TABLE published ADD COLUMN epsilon TEXT")
            db.execute("SELECT COUNT(*) FROM published").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def claim(self, slot_start: int, local_day: str, *, epsilon: Fraction | None = None) -> bool:
        """Record the slot as published; False when already published or the day is spent.

        ``epsilon`` is what the release spends (default: one window's ε). Window slots are
        their start; day-release segments are recorded under minus their start.
        """
        eps = self.budget.epsilon_per_window if epsilon is None else epsilon
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute(
                    "SELECT 1 FROM published WHERE slot = ?",
                    (slot_start,),
                ).fetchone():
                    db.execute("ROLLBACK")
                    return False
                if self._spent(local_day) + eps > self.budget.epsilon_per_day:
                    db.execute("ROLLBACK")
                    return False
                db.execute(
                    "INSERT INTO published (slot, day, at, epsilon) VALUES (?, ?, ?, ?)",
                    (slot_start, local_day, time.time(), str(eps)),
                )
                self._prune(slot_start, local_day)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return True

    def _prune(self, slot_start: int, local_day: str) -> None:
        self._db.execute(
            "DELETE FROM published WHERE abs(slot) < ?",
            (abs(slot_start) - KEEP_DAYS * 86_400,),
        )
        try:
            oldest = dt.date.fromisoformat(local_day) - dt.timedelta(days=KEEP_DAYS)
        except ValueError:
            return
        self._db.execute(
            "DELETE FROM exhausted WHERE day < ?",
            (oldest.isoformat(),),
        )

    def _spent(self, local_day: str) -> Fraction:
        """Exact ε recorded for the day (the whole day's budget if the day was lost)."""
        rows = self._db.execute(
            "SELECT epsilon FROM published WHERE day = ?",
            (local_day,),
        )
        fallback = self.budget.epsilon_per_window  # rows written before ε was recorded
        total = sum(
            (Fraction(eps) if eps is not None else fallback for (eps,) in rows), Fraction(0)
        )
        if self._db.execute(
            "SELECT 1 FROM exhausted WHERE day = ?",
            (local_day,),
        ).fetchone():
            return max(total, self.budget.epsilon_per_day)
        return total

    def published(self, local_day: str) -> int:
        """Windows published on that local day."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM published WHERE day = ?",
                (local_day,),
            )
            return int(row.fetchone()[0])

    def spent_exact(self, local_day: str) -> Fraction:
        """Worst-case ε one person has spent on that day, exactly."""
        with self._lock:
            return self._spent(local_day)

    def spent(self, local_day: str) -> float:
        """Worst-case ε one person has spent on that day."""
        return float(self.spent_exact(local_day))

    def remaining_exact(self, local_day: str) -> Fraction:
        """ε left for that day, exactly (never below 0)."""
        return max(Fraction(0), self.budget.epsilon_per_day - self.spent_exact(local_day))

    def remaining(self, local_day: str) -> float:
        """ε left for that day (never below 0)."""
        return float(max(Fraction(0), self.budget.epsilon_per_day - self.spent_exact(local_day)))

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
