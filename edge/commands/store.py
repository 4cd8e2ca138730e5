"""Replay and version guards on disk: command ids until they expire, last versions applied.

One SQLite file (``{state_dir}/commands.sqlite3``) so both survive restarts: a command
replayed after a reboot is still refused, and a state-setting command older than the one
applied before the reboot is still stale.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS versions (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
"""


class CommandStore:
    """Seen command ids and applied versions; ``path=None`` keeps them in RAM (tests)."""

    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            ":memory:" if path is None else str(path),
            isolation_level=None,
            check_same_thread=False,
        )
        if path is not None:
            # no mutate on SQL lines below: SQL keywords and names are case-insensitive
            self._db.execute("PRAGMA journal_mode=WAL")  # pragma: no mutate
            self._db.execute("PRAGMA synchronous=FULL")  # pragma: no mutate
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def remember(self, command_id: str, expires_at: int, now: float) -> bool:
        """Record a command id; False when it was seen before (a replay). Prunes expired ids."""
        with self._lock:
            self._db.execute(
                "DELETE FROM seen WHERE expires_at < ?",  # pragma: no mutate
                (int(now),),
            )
            try:
                self._db.execute(
                    "INSERT INTO seen (id, expires_at) VALUES (?, ?)",  # pragma: no mutate
                    (command_id, expires_at),
                )
            except sqlite3.IntegrityError:
                return False
            return True

    def version(self, name: str) -> int:
        """The last version applied for a state-setting command (0 when none)."""
        with self._lock:
            sql = "SELECT version FROM versions WHERE name = ?"  # pragma: no mutate
            row = self._db.execute(sql, (name,))
            found = row.fetchone()
        return 0 if found is None else int(found[0])

    def set_version(self, name: str, version: int) -> None:
        """Record the version just applied."""
        with self._lock:
            self._db.execute(
                "INSERT INTO versions (name, version) VALUES (?, ?) "  # pragma: no mutate
                "ON CONFLICT(name) DO UPDATE SET version = excluded.version",  # pragma: no mutate
                (name, version),
            )

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
