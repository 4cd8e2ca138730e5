"""Outbox: order, idempotency, durability across reopen and SIGKILL, bounded size, errors."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.bus.outbox import _MIGRATIONS, SCHEMA_VERSION, Outbox, OutboxRow
from edge.errors import OutboxError

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(30)


def test_put_pending_mark_in_seq_order(state_dir: Path) -> None:
    with Outbox(state_dir / "outbox.sqlite3") as ob:
        seqs = [ob.put(f"w{i}", "agg", f"payload {i}".encode()) for i in range(5)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        rows = ob.pending()
        assert [r.id for r in rows] == [f"w{i}" for i in range(5)]
        assert all(isinstance(r, OutboxRow) and r.topic == "agg" for r in rows)
        assert rows[2].payload == b"payload 2" and rows[2].created_at > 0
        assert [r.id for r in ob.pending(limit=2)] == ["w0", "w1"]
        assert [r.seq for r in ob.pending(after=seqs[2])] == seqs[3:]
        ob.mark_delivered(seqs[1])
        ob.mark_delivered(seqs[1])  # twice: a late duplicate PUBACK is not an error
        assert [r.id for r in ob.pending()] == ["w0", "w2", "w3", "w4"]
        assert ob.pending_count() == 4
        assert ob.stats() == {
            "pending": 4,
            "delivered_total": 1,
            "evicted_total": 0,
            "last_seq": seqs[-1],
            "max_rows": 100_000,
            "recovered_from": None,
            "recovery_reason": None,
        }
        with pytest.raises(dataclasses.FrozenInstanceError):
            rows[0].seq = 99  # type: ignore[misc]


def test_put_is_idempotent_on_id(state_dir: Path) -> None:
    with Outbox(state_dir / "o.db") as ob:
        first = ob.put("same", "agg", b"a")
        ob.put("other", "agg", b"b")
        assert ob.put("same", "agg", b"changed") == first
        assert ob.pending_count() == 2
        assert ob.pending()[0].payload == b"a"


def test_rows_and_counters_survive_reopen_and_seq_is_never_reused(state_dir: Path) -> None:
    path = state_dir / "nested" / "dir" / "outbox.sqlite3"
    ob = Outbox(path)
    a, b, c = (ob.put(f"id{i}", "agg", bytes([i]) * 10) for i in range(3))
    ob.mark_delivered(c)
    ob.close()
    ob.close()  # idempotent
    with pytest.raises(OutboxError, match="closed"):
        ob.pending()

    with Outbox(path) as again:
        assert [(r.seq, r.id) for r in again.pending()] == [(a, "id0"), (b, "id1")]
        stats = again.stats()
        assert stats["delivered_total"] == 1 and stats["last_seq"] == c
        again.mark_delivered_many([a, b])
        assert again.put("id3", "agg", b"x") == c + 1  # AUTOINCREMENT: never reused
        assert again.integrity_check() == "ok"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    db.close()


def test_oldest_undelivered_rows_are_evicted_and_counted(state_dir: Path) -> None:
    with Outbox(state_dir / "o.db", max_rows=5) as ob:
        for i in range(8):
            ob.put(f"w{i}", "agg", b"x")
        assert [r.id for r in ob.pending()] == ["w3", "w4", "w5", "w6", "w7"]
        assert ob.stats()["evicted_total"] == 3
        assert ob.pending_count() == 5
    with Outbox(state_dir / "o.db", max_rows=5) as ob:
        assert ob.stats()["evicted_total"] == 3  # persisted with the rows


def test_errors_are_outbox_errors_naming_the_path(state_dir: Path) -> None:
    not_a_db = state_dir / "garbage.db"
    not_a_db.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(OutboxError, match=r"garbage\.db"):
        Outbox(not_a_db)

    newer = state_dir / "newer.db"
    Outbox(newer).close()
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(OutboxError, match="newer than this code"):
        Outbox(newer)

    with Outbox(state_dir / "ok.db") as ob, pytest.raises(ValueError):
        ob.put("x", "agg/#", b"")


def test_concurrent_puts_from_threads(state_dir: Path) -> None:
    with Outbox(state_dir / "o.db") as ob:

        def writer(n: int) -> None:
            for i in range(25):
                ob.put(f"t{n}-{i}", "agg", b"x")

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows = ob.pending(limit=1000)
        assert len(rows) == 100 and [r.seq for r in rows] == sorted(r.seq for r in rows)
        assert ob.integrity_check() == "ok"


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.integers(0, 15)),
            st.tuples(st.just("ack"), st.integers(0, 20)),
        ),
        max_size=40,
    )
)
def test_matches_a_simple_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    path = tmp_path_factory.mktemp("model") / "o.db"
    model: dict[str, int] = {}  # id → seq, undelivered, bounded at 6
    evicted = 0
    with Outbox(path, max_rows=6) as ob:
        for op, n in ops:
            if op == "put":
                seq = ob.put(f"m{n}", "agg", b"p")
                if f"m{n}" in model:
                    assert model[f"m{n}"] == seq
                model[f"m{n}"] = seq
                while len(model) > 6:
                    del model[min(model, key=model.__getitem__)]
                    evicted += 1
            else:
                seqs = sorted(model.values())
                if seqs:
                    seq = seqs[n % len(seqs)]
                    ob.mark_delivered(seq)
                    model = {k: v for k, v in model.items() if v != seq}
            assert [(r.id, r.seq) for r in ob.pending()] == sorted(
                model.items(), key=lambda kv: kv[1]
            )
        assert ob.stats()["evicted_total"] == evicted


WRITER = """
import sys
from pathlib import Path
from edge.bus.outbox import Outbox

ob = Outbox(Path(sys.argv[1]))
i = 0
while True:
    seq = ob.put(f"window-{i}", "agg", b"{\\"n\\": %d}" % i + b" " * 500)
    print(seq, f"window-{i}", flush=True)
    i += 1
"""


@pytest.mark.parametrize("rows_before_kill", [1, 150])
def test_sigkill_loses_no_committed_row(state_dir: Path, rows_before_kill: int) -> None:
    path = state_dir / "outbox.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    reported: list[tuple[int, str]] = []
    try:
        assert proc.stdout is not None
        while len(reported) < rows_before_kill:
            line = proc.stdout.readline()
            assert line, f"writer died: {proc.stderr.read() if proc.stderr else ''}"
            seq, msg_id = line.split()
            reported.append((int(seq), msg_id))
        os.kill(proc.pid, signal.SIGKILL)  # most likely in the middle of a put
        proc.wait(timeout=10)
        # Lines the writer printed before it died stand for committed rows too.
        for line in proc.stdout.read().splitlines():
            if len(line.split()) == 2:
                seq, msg_id = line.split()
                reported.append((int(seq), msg_id))
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL

    with Outbox(path) as ob:
        assert ob.integrity_check() == "ok"
        present = {(r.seq, r.id) for r in ob.pending(limit=100_000)}
        assert set(reported) <= present
        assert len(present) - len(reported) <= 1  # at most the put that was running


def test_v1_outbox_is_migrated_in_place_and_rows_survive(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[0])
    db.execute(
        "INSERT INTO outbox (id, topic, payload, created_at) VALUES ('w1', 'agg', x'7b7d', 1.0)"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Outbox(path) as box:
        (row,) = box.pending()
        assert (row.id, row.topic, row.payload, row.full_topic, row.correlation) == (
            "w1",
            "agg",
            b"{}",
            None,
            None,
        )
        box.put("a1", "ack", b"{}", full_topic="central/replies/1", correlation=b"\x01\x02")
        ack = box.pending()[1]
        assert (ack.full_topic, ack.correlation) == ("central/replies/1", b"\x01\x02")
