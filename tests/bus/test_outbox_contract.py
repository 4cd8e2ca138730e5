"""Outbox edges the delivery guarantee rests on: argument checks, limits, counters, closed and
broken files, failed migrations, and what the operator is told (killed mutants, docs/TESTING.md).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

import pytest

from edge.bus.outbox import _MIGRATIONS, SCHEMA_VERSION, Outbox, OutboxRow
from edge.errors import OutboxError

pytestmark = pytest.mark.timeout(30)


def test_max_rows_must_be_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^max_rows must be >= 1$"):
        Outbox(tmp_path / "o.db", max_rows=0)
    assert not (tmp_path / "o.db").exists()  # refused before anything was created
    with Outbox(tmp_path / "o.db", max_rows=1) as ob:
        ob.put("a", "agg", b"1")
        ob.put("b", "agg", b"2")
        assert [r.id for r in ob.pending()] == ["b"]
        assert ob.stats()["evicted_total"] == 1 and ob.pending_count() == 1


@pytest.mark.parametrize("topic", ["", "agg/#", "agg/+/x", "a\0b", "/agg", "#", "+"])
def test_bad_topic_suffixes_are_refused_and_nothing_is_written(tmp_path: Path, topic: str) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        with pytest.raises(ValueError) as info:
            ob.put("x", topic, b"")
        assert str(info.value) == f"invalid topic suffix {topic!r}"
        assert ob.pending() == [] and ob.stats()["last_seq"] == 0


def test_empty_message_id_is_refused(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        with pytest.raises(ValueError, match=r"^msg_id must not be empty$"):
            ob.put("", "agg", b"")
        assert ob.pending_count() == 0


@pytest.mark.parametrize("full", ["", "central/#", "central/+/r", "a\0"])
def test_bad_full_topics_are_refused(tmp_path: Path, full: str) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        with pytest.raises(ValueError, match=r"^invalid full topic$"):
            ob.put("x", "ack", b"", full_topic=full)
        assert ob.pending_count() == 0


def test_a_full_topic_and_correlation_round_trip(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        ob.put("r", "ack", bytearray(b"{}"), full_topic="central/replies/7", correlation=b"\x00c")
        ob.put("p", "agg", b"{}")
        rows = ob.pending()
    assert rows[0] == OutboxRow(
        rows[0].seq, "r", "ack", b"{}", rows[0].created_at, "central/replies/7", b"\x00c"
    )
    assert type(rows[0].payload) is bytes and type(rows[0].correlation) is bytes
    assert (rows[1].full_topic, rows[1].correlation) == (None, None)


def test_pending_limit_zero_or_negative_returns_nothing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        for i in range(3):
            ob.put(f"w{i}", "agg", b"x")
        assert ob.pending(limit=0) == []
        assert ob.pending(limit=-1) == []  # SQLite would read LIMIT -1 as "no limit"
        assert len(ob.pending(limit=1)) == 1
        assert len(ob.pending()) == 3


def test_pending_defaults_to_a_hundred_rows(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        for i in range(101):
            ob.put(f"w{i}", "agg", b"x")
        assert len(ob.pending()) == 100
        assert ob.pending(after=0)[0].id == "w0"


def test_mark_delivered_many_counts_only_rows_that_were_there(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as ob:
        seqs = [ob.put(f"w{i}", "agg", b"x") for i in range(4)]
        assert ob.mark_delivered_many([]) == 0
        assert ob.mark_delivered_many([seqs[0], seqs[1], 999]) == 2
        assert ob.mark_delivered_many([seqs[0]]) == 0  # a late duplicate PUBACK
        assert ob.stats()["delivered_total"] == 2
        assert ob.pending_count() == 2
    with Outbox(path) as ob:
        stats = ob.stats()
        assert (stats["pending"], stats["delivered_total"], stats["last_seq"]) == (2, 2, seqs[-1])


def test_a_fresh_outbox_starts_at_zero(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_rows=7) as ob:
        assert ob.stats() == {
            "pending": 0,
            "delivered_total": 0,
            "evicted_total": 0,
            "last_seq": 0,
            "max_rows": 7,
            "recovered_from": None,
            "recovery_reason": None,
        }
        assert ob.put("a", "agg", b"") == 1


def test_every_call_on_a_closed_outbox_names_it(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = Outbox(path)
    seq = ob.put("a", "agg", b"")
    ob.close()
    for call in (
        lambda: ob.put("b", "agg", b""),
        lambda: ob.pending(),
        lambda: ob.mark_delivered(seq),
        lambda: ob.integrity_check(),
    ):
        with pytest.raises(OutboxError) as info:
            call()
        assert str(info.value) == f"{path}: outbox is closed"


def test_sqlite_errors_while_writing_are_outbox_errors_and_roll_back(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as ob:
        ob.put("a", "agg", b"")
        other = sqlite3.connect(path)
        other.execute("DROP TABLE counters")  # the counters update inside the write fails
        other.commit()
        other.close()
        with pytest.raises(OutboxError) as info:
            ob.mark_delivered(1)
        assert str(info.value) == f"{path}: no such table: counters"
        assert ob.pending_count() == 1 and [r.id for r in ob.pending()] == ["a"]  # rolled back
        assert ob.put("b", "agg", b"") == 2  # the connection is still usable


def test_sqlite_errors_while_reading_are_outbox_errors(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as ob:
        other = sqlite3.connect(path)
        other.execute("DROP TABLE outbox")
        other.commit()
        other.close()
        with pytest.raises(OutboxError) as info:
            ob.pending()
        assert str(info.value) == f"{path}: no such table: outbox"


def test_cannot_open_names_the_path_and_the_cause(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError) as info:
        Outbox(blocker / "o.db")
    assert str(info.value).startswith(f"{blocker / 'o.db'}: cannot open outbox: ")
    garbage = tmp_path / "g.db"
    garbage.write_bytes(b"not sqlite " * 500)
    with pytest.raises(OutboxError) as info:
        Outbox(garbage)
    assert str(info.value) == f"{garbage}: cannot open outbox: file is not a database"
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_newer_schema_error_names_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    Outbox(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.close()
    with pytest.raises(OutboxError) as info:
        Outbox(path)
    assert str(info.value) == (
        f"{path}: schema version {SCHEMA_VERSION + 5} is newer than this code "
        f"({SCHEMA_VERSION}); refusing to touch it"
    )


def test_a_schema_at_this_version_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as ob:
        ob.put("a", "agg", b"")
    with Outbox(path) as ob:  # user_version == SCHEMA_VERSION: neither newer nor migrated
        assert ob.pending_count() == 1


def test_a_failed_migration_leaves_the_old_schema(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[0])
    db.execute("ALTER TABLE outbox ADD COLUMN correlation BLOB")  # v2's second step will fail
    db.execute("INSERT INTO outbox (id, topic, payload, created_at) VALUES ('w', 'agg', x'', 1)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with pytest.raises(OutboxError, match="duplicate column name: correlation"):
        Outbox(path)
    db = sqlite3.connect(path)
    cols = [r[1] for r in db.execute("PRAGMA table_info(outbox)")]
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "full_topic" not in cols  # v2's first step was rolled back with the rest
    assert db.execute("SELECT id FROM outbox").fetchall() == [("w",)]
    db.close()


def test_a_v1_file_is_migrated_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "o.db"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with caplog.at_level(logging.INFO, logger="edge.bus.outbox"), Outbox(path):
        pass
    messages = [r.getMessage() for r in caplog.records]
    assert f"outbox {path}: schema migrated to version 2" in messages
    assert f"outbox {path} open: 0 pending, last seq 0" in messages


def test_open_is_logged_with_pending_and_last_seq(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as ob:
        ob.put("a", "agg", b"")
        ob.put("b", "agg", b"")
        ob.mark_delivered(1)
    with caplog.at_level(logging.INFO, logger="edge.bus.outbox"), Outbox(path):
        pass
    assert [r.getMessage() for r in caplog.records] == [
        f"outbox {path} open: 1 pending, last seq 2"
    ]


def test_eviction_is_logged_with_the_numbers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Outbox(tmp_path / "o.db", max_rows=2) as ob:
        ob.put("a", "agg", b"")
        ob.put("b", "agg", b"")
        with caplog.at_level(logging.WARNING, logger="edge.bus.outbox"):
            ob.put("c", "agg", b"")
            ob.put("d", "agg", b"")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "outbox full (2 rows): evicted 1 oldest undelivered row(s), 1 in total"),
        (logging.WARNING, "outbox full (2 rows): evicted 1 oldest undelivered row(s), 2 in total"),
    ]


def test_without_wal_the_outbox_warns(caplog: pytest.LogCaptureFixture) -> None:
    # an in-memory database cannot use WAL: the only way to see the fallback here
    with caplog.at_level(logging.WARNING, logger="edge.bus.outbox"), Outbox(Path(":memory:")):
        pass
    assert [r.getMessage() for r in caplog.records] == [
        "outbox :memory:: WAL not available, journal_mode=memory"
    ]


def test_companion_files_move_aside_with_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as ob:
        ob.put("a", "agg", b"kept")
    other = sqlite3.connect(path)  # another open connection keeps the -wal and -shm files
    other.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    other.commit()
    other.execute("INSERT INTO outbox (id, topic, payload, created_at) VALUES ('b', 'agg', x'', 1)")
    other.commit()  # this row is only in the WAL so far
    assert (tmp_path / "outbox.sqlite3-wal").exists()
    try:
        with caplog.at_level(logging.ERROR, logger="edge.bus.outbox"):
            box = Outbox.open_or_recover(path)
    finally:
        other.close()
    try:
        aside = box.recovered_from
        assert aside is not None and box.recovery_reason == "newer_schema"
        assert re.fullmatch(r"outbox\.sqlite3\.corrupt-\d{8}T\d{6}Z", aside), aside
        names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(aside))
        assert names == [aside, f"{aside}-shm", f"{aside}-wal"]
        old = sqlite3.connect(tmp_path / aside)  # the moved file with its WAL: nothing lost
        assert sorted(r[0] for r in old.execute("SELECT id FROM outbox")) == ["a", "b"]
        old.close()
        assert [r.getMessage() for r in caplog.records] == [
            f"outbox {path} is unusable (newer_schema); moved aside to {aside}, "
            "starting a fresh outbox"
        ]
        assert box.pending_count() == 0
    finally:
        box.close()


def test_putting_the_same_id_again_evicts_and_logs_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Outbox(tmp_path / "o.db", max_rows=1) as ob:
        ob.put("a", "agg", b"")
        with caplog.at_level(logging.DEBUG, logger="edge.bus.outbox"):
            assert ob.put("a", "agg", b"") == 1
        assert caplog.records == []
        assert ob.stats()["evicted_total"] == 0 and ob.pending_count() == 1


def test_open_or_recover_keeps_the_bound_on_both_paths(tmp_path: Path) -> None:
    healthy = tmp_path / "ok.db"
    with Outbox.open_or_recover(healthy, max_rows=3) as ob:
        assert ob.stats()["max_rows"] == 3
    broken = tmp_path / "bad.db"
    broken.write_bytes(b"garbage " * 600)
    with Outbox.open_or_recover(broken, max_rows=4) as ob:
        assert ob.stats()["max_rows"] == 4 and ob.recovery_reason == "corrupt"


def test_the_aside_name_carries_the_utc_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30: a local stamp would be far off
    time.tzset()
    try:
        path = tmp_path / "outbox.sqlite3"
        path.write_bytes(b"garbage " * 600)
        before = dt.datetime.now(dt.UTC).replace(microsecond=0)
        with Outbox.open_or_recover(path) as ob:
            aside = ob.recovered_from
        after = dt.datetime.now(dt.UTC)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert aside is not None
    stamp = dt.datetime.strptime(aside.rsplit("-", 1)[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert before <= stamp <= after


def test_an_outbox_that_cannot_be_moved_aside_is_an_error_naming_it(tmp_path: Path) -> None:
    import datetime as dt

    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"garbage " * 600)
    # every name the move could take in the next minute is a non-empty directory
    now = dt.datetime.now(dt.UTC)
    for s in range(-2, 60):
        stamp = (now + dt.timedelta(seconds=s)).strftime("%Y%m%dT%H%M%SZ")
        blocker = tmp_path / f"outbox.sqlite3.corrupt-{stamp}"
        blocker.mkdir(exist_ok=True)
        (blocker / "x").write_text("x")
    with pytest.raises(OutboxError) as info:
        Outbox.open_or_recover(path)
    assert str(info.value).startswith(f"{path}: unreadable outbox cannot be moved aside: ")
    assert path.read_bytes().startswith(b"garbage")  # left where it was


def test_only_wildcards_nul_and_a_leading_slash_are_refused_in_topics(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        ob.put("a", "X/agg-1_2", b"")  # any other character is fine
        ob.put("b", "ack", b"", full_topic="central/X/replies/Xy")
        assert [(r.topic, r.full_topic) for r in ob.pending()] == [
            ("X/agg-1_2", None),
            ("ack", "central/X/replies/Xy"),
        ]
