"""The central store: aggregates and device state in SQLite or PostgreSQL, one small interface.

``open_store(url)`` takes ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or
``postgresql://user@host:port/db`` (psycopg 3). The schema is created on first start and
versioned in ``schema_migrations``; migrations run under a lock (SQLite ``BEGIN IMMEDIATE``,
a PostgreSQL advisory lock), so several listeners may start on one database at once.
Aggregates are de-duplicated by their ``id`` (the primary key): a second copy, from the same
listener or another one, changes nothing. Only aggregates and device state are stored.

Every method blocks: callers on an event loop run them in one worker thread (the connection
belongs to that thread).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edge.contract.aggregate import Cell

from .messages import Aggregate

PG_LOCK_ID = 0x5E1FED6E  # advisory lock key for migrations

# Each migration: (version, statements). Types valid in both SQLite and PostgreSQL.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            "CREATE TABLE aggregates ("
            " id TEXT PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL,"
            " release TEXT NOT NULL, period_start BIGINT NOT NULL, period_end BIGINT NOT NULL,"
            " epsilon DOUBLE PRECISION NOT NULL, k INTEGER NOT NULL,"
            " noise_scale DOUBLE PRECISION, cells_total INTEGER NOT NULL,"
            " cells_suppressed INTEGER NOT NULL, received_at DOUBLE PRECISION NOT NULL,"
            " body TEXT NOT NULL)",
            "CREATE INDEX aggregates_site_period ON aggregates (site, period_start)",
            "CREATE TABLE cells ("
            " aggregate_id TEXT NOT NULL REFERENCES aggregates (id),"
            " site TEXT NOT NULL, device TEXT NOT NULL, release TEXT NOT NULL,"
            " period_start BIGINT NOT NULL, period_end BIGINT NOT NULL,"
            " stat TEXT NOT NULL, zone TEXT NOT NULL, key TEXT NOT NULL, value BIGINT,"
            " suppressed BOOLEAN NOT NULL, epsilon DOUBLE PRECISION)",
            "CREATE INDEX cells_site_period ON cells (site, period_start)",
            "CREATE TABLE device_state ("
            " site TEXT NOT NULL, device TEXT NOT NULL, online BOOLEAN NOT NULL,"
            " body TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL,"
            " PRIMARY KEY (site, device))",
        ),
    ),
)
TABLES = ("schema_migrations", "aggregates", "cells", "device_state")


class StoreError(Exception):
    """A database URL that cannot be used, or a database that cannot be opened."""


@dataclass(frozen=True, slots=True)
class AggregateRow:
    """The privacy bookkeeping of one stored aggregate (for the report)."""

    id: str
    device: str
    release: str
    period_start: int
    period_end: int
    epsilon: float
    k: int
    noise_scale: float | None
    cells_total: int
    cells_suppressed: int


@dataclass(frozen=True, slots=True)
class DeviceState:
    """The latest state of one device."""

    site: str
    device: str
    online: bool
    body: str
    updated_at: float


class Store(Protocol):
    """What the listener and the report need from a database."""

    def add_aggregate(self, agg: Aggregate) -> bool:
        """Store one aggregate and its cells; False if its id was already stored."""
        ...

    def put_state(self, site: str, device: str, online: bool, body: str) -> None:
        """Insert or replace the device's latest state."""
        ...

    def aggregates(self, site: str, start: int | None, end: int | None) -> list[AggregateRow]:
        """Aggregates of a site whose period starts in ``[start, end)``."""
        ...

    def cells(self, site: str, start: int | None, end: int | None) -> list[Cell]:
        """Cells of a site whose period starts in ``[start, end)``."""
        ...

    def bodies(self, site: str, start: int | None, end: int | None) -> list[str]:
        """Stored messages (validated JSON) of a site whose period starts in the range."""
        ...

    def states(self, site: str) -> list[DeviceState]:
        """Latest state of every device of a site."""
        ...

    def schema_version(self) -> int:
        """Highest applied migration."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


class SqlStore:
    """``Store`` over a DB-API connection (sqlite3 or psycopg)."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self._conn = conn
        self.dialect = dialect
        self._p = "?" if dialect == "sqlite" else "%s"
        self._migrate()

    # -- plumbing ---------------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text.replace("?", self._p)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        if self.dialect == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            self._conn.rollback()
            raise
        else:
            self._conn.commit()
        finally:
            cur.close()

    def _migrate(self) -> None:
        with self._tx() as cur:
            if self.dialect == "postgresql":
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK_ID,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            cur.execute("SELECT version FROM schema_migrations")
            applied = {int(r[0]) for r in cur.fetchall()}
            for version, statements in MIGRATIONS:
                if version in applied:
                    continue
                for stmt in statements:
                    cur.execute(stmt)
                cur.execute(
                    self._sql("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"),
                    (version, time.time()),
                )

    def _query(self, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cur = self._conn.cursor()
        try:
            cur.execute(self._sql(text), tuple(params))
            rows = [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()
        self._conn.commit()  # end the read transaction (psycopg opens one)
        return rows

    @staticmethod
    def _period(start: int | None, end: int | None) -> tuple[str, list[int]]:
        where, params = "", []
        if start is not None:
            where += " AND period_start >= ?"
            params.append(start)
        if end is not None:
            where += " AND period_start < ?"
            params.append(end)
        return where, params

    # -- Store ------------------------------------------------------------------------------

    def add_aggregate(self, agg: Aggregate) -> bool:
        with self._tx() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO aggregates (id, site, device, release, period_start, period_end,"
                    " epsilon, k, noise_scale, cells_total, cells_suppressed, received_at, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
                ),
                (
                    agg.id,
                    agg.site,
                    agg.device,
                    agg.release,
                    agg.period_start,
                    agg.period_end,
                    agg.epsilon,
                    agg.k,
                    agg.noise_scale,
                    agg.cells_total,
                    agg.cells_suppressed,
                    time.time(),
                    agg.body,
                ),
            )
            if cur.rowcount != 1:
                return False
            cur.executemany(
                self._sql(
                    "INSERT INTO cells (aggregate_id, site, device, release, period_start,"
                    " period_end, stat, zone, key, value, suppressed, epsilon)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                [
                    (
                        agg.id,
                        c.site,
                        c.device,
                        c.release,
                        c.period_start,
                        c.period_end,
                        c.stat,
                        c.zone,
                        c.key,
                        c.value,
                        c.suppressed,
                        c.epsilon,
                    )
                    for c in agg.cells
                ],
            )
            return True

    def put_state(self, site: str, device: str, online: bool, body: str) -> None:
        with self._tx() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO device_state (site, device, online, body, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (site, device) DO UPDATE SET"
                    " online = excluded.online, body = excluded.body,"
                    " updated_at = excluded.updated_at"
                ),
                (site, device, online, body, time.time()),
            )

    def aggregates(self, site: str, start: int | None, end: int | None) -> list[AggregateRow]:
        where, params = self._period(start, end)
        rows = self._query(
            "SELECT id, device, release, period_start, period_end, epsilon, k, noise_scale,"
            " cells_total, cells_suppressed FROM aggregates WHERE site = ?"
            + where
            + " ORDER BY period_start, device, id",
            [site, *params],
        )
        return [
            AggregateRow(
                str(r[0]),
                str(r[1]),
                str(r[2]),
                int(r[3]),
                int(r[4]),
                float(r[5]),
                int(r[6]),
                None if r[7] is None else float(r[7]),
                int(r[8]),
                int(r[9]),
            )
            for r in rows
        ]

    def cells(self, site: str, start: int | None, end: int | None) -> list[Cell]:
        where, params = self._period(start, end)
        rows = self._query(
            "SELECT aggregate_id, site, device, release, period_start, period_end, stat, zone,"
            " key, value, suppressed, epsilon FROM cells WHERE site = ?"
            + where
            + " ORDER BY period_start, device, stat, zone, key",
            [site, *params],
        )
        return [
            Cell(
                message_id=str(r[0]),
                site=str(r[1]),
                device=str(r[2]),
                release=str(r[3]),
                period_start=int(r[4]),
                period_end=int(r[5]),
                stat=str(r[6]),
                zone=str(r[7]),
                key=str(r[8]),
                value=None if r[9] is None else int(r[9]),
                suppressed=bool(r[10]),
                epsilon=None if r[11] is None else float(r[11]),
            )
            for r in rows
        ]

    def bodies(self, site: str, start: int | None, end: int | None) -> list[str]:
        """The stored messages (validated JSON) of a site whose period starts in the range."""
        where, params = self._period(start, end)
        rows = self._query(
            "SELECT body FROM aggregates WHERE site = ?" + where + " ORDER BY period_start, id",
            [site, *params],
        )
        return [str(r[0]) for r in rows]

    def states(self, site: str) -> list[DeviceState]:
        rows = self._query(
            "SELECT site, device, online, body, updated_at FROM device_state WHERE site = ?"
            " ORDER BY device",
            [site],
        )
        return [DeviceState(str(r[0]), str(r[1]), bool(r[2]), str(r[3]), float(r[4])) for r in rows]

    def schema_version(self) -> int:
        rows = self._query("SELECT MAX(version) FROM schema_migrations", [])
        return int(rows[0][0] or 0)

    def close(self) -> None:
        self._conn.close()


def describe(url: str) -> str:
    """The URL without a password, for log lines."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    auth, host = rest.rsplit("@", 1)
    return f"{scheme}://{auth.split(':', 1)[0]}@{host}"


def open_store(url: str) -> SqlStore:
    """Open (and migrate) the database named by ``url``; ``StoreError`` says what is wrong."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.name:
            raise StoreError(f"{url}: no file name (e.g. sqlite:///fleet.db)")
        try:
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            return SqlStore(_SqliteTx(conn), "sqlite")
        except sqlite3.Error as exc:
            raise StoreError(f"{url}: {exc}") from None
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        try:
            return SqlStore(psycopg.connect(url), "postgresql")
        except psycopg.Error as exc:
            raise StoreError(f"{describe(url)}: {exc}") from None
    raise StoreError(f"{url}: the database URL must start with sqlite:/// or postgresql://")


class _SqliteTx:
    """sqlite3 in autocommit mode with explicit BEGIN/COMMIT (``_tx`` issues BEGIN)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def cursor(self) -> sqlite3.Cursor:
        return self._c.cursor()

    def commit(self) -> None:
        if self._c.in_transaction:
            self._c.execute("COMMIT")

    def rollback(self) -> None:
        if self._c.in_transaction:
            self._c.execute("ROLLBACK")

    def close(self) -> None:
        self._c.close()
