"""The on-disk outbox: every outbound QoS 1 message that must survive outages, restarts and power
loss is committed here first and deleted only once the broker has acknowledged it (PUBACK). One
SQLite file in WAL mode with ``synchronous=FULL``; rows get a per-device, never-reused ``seq``
(``INTEGER PRIMARY KEY AUTOINCREMENT``) so the central side can detect gaps, and a caller-chosen
``id`` that makes ``put`` idempotent and lets consumers de-duplicate. The outbox is bounded: past
``max_rows`` undelivered rows the oldest are evicted and counted (``evicted_total``), because the
newest aggregates are the most useful ones after a long outage. One connection, shared by threads
behind a lock (the daemon calls it through ``asyncio.to_thread``); the schema carries a version in
``PRAGMA user_version`` so later issues can migrate it in place.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge.errors import OutboxError

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_MAX_ROWS = 100_000

# Each entry migrates the schema from version i to i + 1, inside one transaction together with
# the ``user_version`` bump, so a crash mid-migration leaves the old schema intact.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO counters (name, value) VALUES ('delivered_total', 0), ('evicted_total', 0);
    """,
    # v2: a row may go to a full topic (an MQTT 5 response topic) with correlation data.
    """
    ALTER TABLE outbox ADD COLUMN full_topic TEXT;
    ALTER TABLE outbox ADD COLUMN correlation BLOB;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


class NewerSchemaError(OutboxError):
    """The outbox file was written by a newer ShelfEdge (its schema version is unknown here)."""


def _recoverable(exc: OutboxError) -> str | None:
    """Why a failed open may be recovered by starting afresh, or None (an environment error)."""
    if isinstance(exc, NewerSchemaError):
        return "newer_schema"
    cause = exc.__cause__
    if isinstance(cause, sqlite3.DatabaseError) and not isinstance(cause, sqlite3.OperationalError):
        return "corrupt"  # "file is not a database", "database disk image is malformed"
    return None


def _move_aside(path: Path) -> Path:
    """Rename the outbox and its WAL/SHM companions to ``…corrupt-<UTC time>``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm", ""):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(aside.with_name(aside.name + suffix) if suffix else aside)
    return aside


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One undelivered message: ``topic`` is the suffix under the device root (e.g. ``agg``)."""

    seq: int
    id: str
    topic: str
    payload: bytes
    created_at: float
    full_topic: str | None = None  # when set, published there instead of root/topic
    correlation: bytes | None = None  # MQTT 5 correlation data to send with it


class Outbox:
    """SQLite WAL outbox; see the module docstring for the delivery and full policies.

    ``synchronous=FULL`` makes every commit fsync the WAL, so a row ``put`` returned for is on
    the medium even if power fails a moment later (``NORMAL`` in WAL mode only survives process
    crashes and may lose the last commits on power loss). Writes are rare (one aggregate window
    every few minutes, one delete batch per PUBACK burst), so the fsync costs nothing that
    matters; the power-loss guarantee is what the outbox is for.
    """

    def __init__(self, path: Path, *, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.path = Path(path)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        # Counters mirrored in RAM so stats() never waits behind a writer's fsync.
        self._counts_lock = threading.Lock()
        # no mutate: placeholders; _setup() sets them (and __init__ sets _db) before any use
        self._pending = 0  # pragma: no mutate
        self._delivered_total = 0  # pragma: no mutate
        self._evicted_total = 0  # pragma: no mutate
        self._last_seq = 0  # pragma: no mutate
        self.recovered_from: str | None = None
        self.recovery_reason: str | None = None
        self._db: sqlite3.Connection | None = None  # pragma: no mutate
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"{self.path}: cannot open outbox: {exc}") from exc
        try:
            self._setup(db)
        except sqlite3.Error as exc:
            db.close()
            raise OutboxError(f"{self.path}: cannot open outbox: {exc}") from exc
        except OutboxError:
            db.close()
            raise
        self._db = db
        _LOGGER.info(
            "outbox %s open: %d pending, last seq %d", self.path, self._pending, self._last_seq
        )

    @classmethod
    def open_or_recover(cls, path: Path, *, max_rows: int = DEFAULT_MAX_ROWS) -> Outbox:
        """Open the outbox; a corrupt or newer-schema file is moved aside and a fresh one used.

        An environment problem (permissions, a missing or read-only directory) still raises
        ``OutboxError``: moving a healthy file aside would lose undelivered aggregates.
        """
        path = Path(path)
        try:
            return cls(path, max_rows=max_rows)
        except OutboxError as exc:
            reason = _recoverable(exc)
            if reason is None:
                raise
        try:
            aside = _move_aside(path)
        except OSError as exc:
            raise OutboxError(f"{path}: unreadable outbox cannot be moved aside: {exc}") from exc
        _LOGGER.error(
            "outbox %s is unusable (%s); moved aside to %s, starting a fresh outbox",
            path,
            reason,
            aside.name,
        )
        box = cls(path, max_rows=max_rows)
        box.recovered_from = aside.name
        box.recovery_reason = reason
        return box

    # -- setup --------------------------------------------------------------------------

    def _setup(self, db: sqlite3.Connection) -> None:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            _LOGGER.warning("outbox %s: WAL not available, journal_mode=%s", self.path, mode)
        db.execute("PRAGMA synchronous=FULL")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        self._migrate(db)
        self._pending = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        self._delivered_total = int(counters.get("delivered_total", 0))
        self._evicted_total = int(counters.get("evicted_total", 0))
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        self._last_seq = int(row[0]) if row else 0

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise NewerSchemaError(
                f"{self.path}: schema version {version} is newer than this code "
                f"({SCHEMA_VERSION}); refusing to touch it"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target:d}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            _LOGGER.info("outbox %s: schema migrated to version %d", self.path, target)

    # -- internals ----------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"{self.path}: outbox is closed")
        return self._db

    def _write(self, db: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work(db)`` in one IMMEDIATE transaction; map SQLite errors to OutboxError."""
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: {exc}") from exc
        return result

    # -- public API ---------------------------------------------------------------------

    def put(
        self,
        msg_id: str,
        topic: str,
        payload: bytes,
        *,
        full_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> int:
        """Commit one message and return its ``seq``; the same ``msg_id`` again is a no-op.

        Idempotency holds while the row is undelivered (a delivered row is deleted). When the
        outbox then holds more than ``max_rows`` rows, the oldest are evicted and counted.
        """
        if not msg_id:
            raise ValueError("msg_id must not be empty")
        if not topic or any(c in topic for c in "#+\0") or topic.startswith("/"):
            raise ValueError(f"invalid topic suffix {topic!r}")
        if full_topic is not None and (not full_topic or any(c in full_topic for c in "#+\0")):
            raise ValueError("invalid full topic")
        payload = bytes(payload)
        now = time.time()

        def work(db: sqlite3.Connection) -> tuple[int, bool, int]:
            row = db.execute(
                "SELECT seq FROM outbox WHERE id = ?",
                (msg_id,),
            ).fetchone()
            if row is not None:
                return int(row[0]), False, 0
            cur = db.execute(
                "INSERT INTO outbox (id, topic, payload, created_at, full_topic, correlation) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (msg_id, topic, payload, now, full_topic, correlation),
            )
            seq = int(cur.lastrowid or 0)
            excess = self._pending + 1 - self.max_rows
            evicted = 0
            if excess > 0:
                evicted = db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                    (excess,),
                ).rowcount
                db.execute(
                    "UPDATE counters SET value = value + ? WHERE name = 'evicted_total'",
                    (evicted,),
                )
            return seq, True, evicted

        with self._lock:
            seq, inserted, evicted = self._write(self._conn(), work)
            if inserted:
                with self._counts_lock:
                    self._pending += 1 - evicted
                    self._evicted_total += evicted
                    self._last_seq = max(self._last_seq, seq)
        if evicted:
            _LOGGER.warning(
                "outbox full (%d rows): evicted %d oldest undelivered row(s), %d in total",
                self.max_rows,
                evicted,
                self._evicted_total,
            )
        return seq

    def pending(self, limit: int = 100, *, after: int = 0) -> list[OutboxRow]:
        """Undelivered rows in ``seq`` order (only those with ``seq > after``)."""
        with self._lock:
            try:
                rows = (
                    self._conn()
                    .execute(
                        "SELECT seq, id, topic, payload, created_at, full_topic, correlation "
                        "FROM outbox "
                        "WHERE seq > ? ORDER BY seq LIMIT ?",
                        (after, max(0, limit)),
                    )
                    .fetchall()
                )
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: {exc}") from exc
        return [
            OutboxRow(
                int(s), str(i), str(t), bytes(p), float(c), ft, None if cd is None else bytes(cd)
            )
            for s, i, t, p, c, ft, cd in rows
        ]

    def mark_delivered(self, seq: int) -> None:
        """The broker acknowledged ``seq``: delete it (a missing row is not an error)."""
        self.mark_delivered_many((seq,))

    def mark_delivered_many(self, seqs: Iterable[int]) -> int:
        """Delete several acknowledged rows in one transaction; return how many were there."""
        batch = [(int(s),) for s in seqs]
        if not batch:
            return 0

        def work(db: sqlite3.Connection) -> int:
            deleted = 0
            for params in batch:
                deleted += db.execute(
                    "DELETE FROM outbox WHERE seq = ?",
                    params,
                ).rowcount
            if deleted:
                db.execute(
                    "UPDATE counters SET value = value + ? WHERE name = 'delivered_total'",
                    (deleted,),
                )
            return deleted

        with self._lock:
            deleted = self._write(self._conn(), work)
            with self._counts_lock:
                self._pending -= deleted
                self._delivered_total += deleted
        return deleted

    def pending_count(self) -> int:
        """Undelivered rows right now."""
        with self._counts_lock:
            return self._pending

    def stats(self) -> dict[str, Any]:
        """Counters for the device state, and whether a broken file was moved aside at start."""
        with self._counts_lock:
            return {
                "pending": self._pending,
                "delivered_total": self._delivered_total,
                "evicted_total": self._evicted_total,
                "last_seq": self._last_seq,
                "max_rows": self.max_rows,
                "recovered_from": self.recovered_from,
                "recovery_reason": self.recovery_reason,
            }

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` or SQLite's findings, one per line."""
        with self._lock:
            try:
                rows = self._conn().execute("PRAGMA integrity_check").fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: {exc}") from exc
        return "\n".join(str(r[0]) for r in rows)

    def close(self) -> None:
        """Close the database (idempotent); later calls raise OutboxError."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.close()
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: {exc}") from exc
            finally:
                self._db = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
