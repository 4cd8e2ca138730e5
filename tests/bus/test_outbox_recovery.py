"""A corrupt or newer-schema outbox is moved aside and a fresh one started; environment
problems still fail loudly (moving a healthy file aside would lose aggregates)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from edge.bus.outbox import SCHEMA_VERSION, Outbox
from edge.errors import OutboxError


def _aside(tmp: Path) -> list[Path]:
    return sorted(p for p in tmp.iterdir() if ".corrupt-" in p.name)


def test_garbage_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not sqlite at all " * 200)
    with pytest.raises(OutboxError):
        Outbox(path)
    with caplog.at_level(logging.ERROR):
        box = Outbox.open_or_recover(path)
    try:
        assert box.put("w1", "agg", b"{}") == 1 and box.pending_count() == 1
        stats = box.stats()
        assert stats["recovery_reason"] == "corrupt"
        moved = _aside(tmp_path)
        assert [p.name for p in moved] == [stats["recovered_from"]]
        assert moved[0].read_bytes().startswith(b"this is not sqlite")
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "moved aside" in errors[0].getMessage()
    finally:
        box.close()


def test_truncated_outbox_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        for i in range(200):
            box.put(f"w{i}", "agg", b"x" * 500)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 3)
    box = Outbox.open_or_recover(path)
    try:
        assert box.stats()["recovery_reason"] == "corrupt"
        assert box.pending_count() == 0
    finally:
        box.close()


def test_newer_schema_is_moved_aside_untouched(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        box.put("w1", "agg", b"{}")
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    box = Outbox.open_or_recover(path)
    try:
        assert box.stats()["recovery_reason"] == "newer_schema"
        old = sqlite3.connect(_aside(tmp_path)[0])
        assert old.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert old.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1  # kept for later
        old.close()
    finally:
        box.close()


def test_healthy_outbox_is_opened_as_is(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        box.put("w1", "agg", b"{}")
    box = Outbox.open_or_recover(path)
    try:
        assert box.pending_count() == 1 and box.stats()["recovered_from"] is None
        assert _aside(tmp_path) == []
    finally:
        box.close()


def test_environment_problem_is_not_treated_as_corruption(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox.open_or_recover(blocker / "outbox.sqlite3")
    as_dir = tmp_path / "outbox.sqlite3"
    as_dir.mkdir()
    with pytest.raises(OutboxError):
        Outbox.open_or_recover(as_dir)
    assert as_dir.is_dir() and _aside(tmp_path) == []
