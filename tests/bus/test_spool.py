"""The window spool: a full disk keeps windows in RAM (bounded), in order, logged sparingly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import subprocess
from pathlib import Path

import pytest

from edge.bus.outbox import Outbox
from edge.bus.spool import WindowSpool
from edge.events import AggregateWindow


def _window(i: int) -> AggregateWindow:
    return AggregateWindow(f"w{i}", "s", "d", i * 900, (i + 1) * 900, {"id": f"w{i}", "n": i})


class Disk:
    """A real outbox whose writes fail while ``full`` is set (the disk is the only fake)."""

    def __init__(self, box: Outbox) -> None:
        self.box = box
        self.full = False

    def put(self, msg_id: str, topic: str, body: bytes) -> int:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        return self.box.put(msg_id, topic, body)


class Mono:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_full_disk_keeps_windows_in_order_and_loses_nothing_committed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    disk = Disk(box)
    mono = Mono()
    spool = WindowSpool(disk.put, max_windows=5, log_every_s=60.0, monotonic=mono)
    spool.add(_window(0))
    assert await spool.flush() == 1
    disk.full = True
    with caplog.at_level(logging.WARNING, logger="edge.bus.spool"):
        for i in range(1, 9):
            spool.add(_window(i))
            mono.t += 10.0
            assert await spool.flush() == 0
        assert spool.pending == 5 and spool.dropped == 3  # windows 1..3 dropped, oldest first
        failures = [r for r in caplog.records if "write failed" in r.getMessage()]
        assert len(failures) == 2  # at t=10 and t=70 (once per minute), not 8 times
        assert "more failures since the last report" in failures[1].getMessage()
        disk.full = False
        assert await spool.flush() == 5
        assert any("writable again" in r.getMessage() for r in caplog.records)
    rows = box.pending(100)
    assert [r.id for r in rows] == ["w0", "w4", "w5", "w6", "w7", "w8"]
    assert json.loads(rows[0].payload) == {"id": "w0", "n": 0}
    assert spool.stats() == {
        "pending": 0,
        "written": 6,
        "dropped": 3,
        "failures": 8,
        "last_error": "OperationalError",
    }
    box.close()


def test_real_full_filesystem(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root in a permissive sandbox)")
    box: Outbox | None = None
    try:
        box = Outbox(mnt / "outbox.sqlite3")
        spool = WindowSpool(box.put, max_windows=1000)
        big = "x" * 4000
        i = 0
        while spool.pending == 0 and i < 500:
            spool.add(AggregateWindow(f"w{i}", "s", "d", i, i + 1, {"pad": big, "i": i}))
            asyncio.run(spool.flush())
            i += 1
        assert spool.pending > 0, "the tmpfs never filled up"
        assert spool.last_error == "OutboxError"
        committed = box.pending_count()
        assert committed == spool.written  # everything written is still in the outbox
        assert [r.id for r in box.pending(1000)] == [f"w{n}" for n in range(committed)]
    finally:
        # Closed before the unmount even when an assertion failed: an open database keeps
        # the tmpfs busy and the mount would outlive the test.
        if box is not None:
            with contextlib.suppress(Exception):
                box.close()
        subprocess.run(["umount", str(mnt)], check=False)


class Recorder:
    """A put that records what reached it (the outbox itself is tested in test_outbox*)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []

    def put(self, msg_id: str, topic: str, body: bytes) -> None:
        self.calls.append((msg_id, topic, body))


def test_max_windows_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match=r"^max_windows must be >= 1$"):
        WindowSpool(Recorder().put, max_windows=0)
    spool = WindowSpool(Recorder().put, max_windows=1)
    spool.add(_window(0))
    spool.add(_window(1))
    assert (spool.pending, spool.dropped) == (1, 1)


def test_default_bound_is_one_day_of_windows() -> None:
    spool = WindowSpool(Recorder().put)
    for i in range(96):
        spool.add(_window(i))
    assert (spool.pending, spool.dropped) == (96, 0)
    spool.add(_window(96))
    assert (spool.pending, spool.dropped) == (96, 1)


async def test_windows_go_to_the_agg_topic_as_compact_json(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()
    spool = WindowSpool(rec.put)
    spool.add(_window(3))
    spool.add(_window(4))
    with caplog.at_level(logging.DEBUG, logger="edge.bus.spool"):
        assert await spool.flush() == 2
    assert caplog.records == []  # healthy from the start: no "writable again"
    assert rec.calls == [
        ("w3", "agg", b'{"id":"w3","n":3}'),
        ("w4", "agg", b'{"id":"w4","n":4}'),
    ]
    assert await spool.flush() == 0  # nothing left
    assert spool.stats() == {
        "pending": 0,
        "written": 2,
        "dropped": 0,
        "failures": 0,
        "last_error": None,
    }


async def test_a_window_dropped_while_it_was_being_written_takes_no_other_with_it() -> None:
    import threading

    started, gate = threading.Event(), threading.Event()
    written: list[str] = []

    def slow_put(msg_id: str, topic: str, body: bytes) -> None:
        started.set()
        assert gate.wait(10)
        written.append(msg_id)

    spool = WindowSpool(slow_put, max_windows=2)
    spool.add(_window(0))
    task = asyncio.create_task(spool.flush())
    assert await asyncio.to_thread(started.wait, 10)
    spool.add(_window(1))
    spool.add(_window(2))  # the spool is full: w0, being written, is the one dropped
    gate.set()
    assert await task == 3
    assert written == ["w0", "w1", "w2"]
    assert spool.pending == 0


async def test_failure_reports_are_rate_limited_at_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mono = Mono()
    full = True

    def put(msg_id: str, topic: str, body: bytes) -> None:
        if full:
            raise OSError("disk full: /var/lib/shelfedge")

    spool = WindowSpool(put, max_windows=4, monotonic=mono)  # reports once a minute by default
    spool.add(_window(0))
    with caplog.at_level(logging.WARNING, logger="edge.bus.spool"):
        for t in (0.0, 30.0, 59.9, 60.0, 61.0, 120.0):
            mono.t = t
            assert await spool.flush() == 0
        full = False
        spool.add(_window(1))
        assert await spool.flush() == 2
        spool.add(_window(2))
        assert await spool.flush() == 1  # healthy again: no second recovery report
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "outbox write failed (OSError); 1 window(s) kept in RAM (at most 4)"),
        (
            logging.ERROR,
            "outbox write failed (OSError); 1 window(s) kept in RAM (at most 4)"
            " (2 more failures since the last report)",
        ),
        (
            logging.ERROR,
            "outbox write failed (OSError); 1 window(s) kept in RAM (at most 4)"
            " (1 more failures since the last report)",
        ),
        (logging.WARNING, "outbox writable again; 2 window(s) written, 0 dropped while it failed"),
    ]
    assert "disk full" not in caplog.text  # the class only, never the text
    assert spool.stats()["failures"] == 6 and spool.stats()["last_error"] == "OSError"
