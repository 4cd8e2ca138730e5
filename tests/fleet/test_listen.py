"""`shelfedge fleet listen`: real listener processes, a real Mosquitto, real SQLite/PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge.contract.aggregate import cells, parse
from edge.fleet.store import TABLES, open_store
from tests.conftest import Mosquitto, MqttCapture
from tests.fleet.day import simulate_day

STOPPED_RE = re.compile(
    r"stopped: stored=(\d+) duplicates=(\d+) states=(\d+) acks=(\d+) rejected=(\d+) \((.*)\)"
)


class ListenProc:
    """A ``shelfedge fleet listen`` subprocess whose stderr is collected by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "fleet", "listen", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not any(text in ln for ln in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from fleet listen:\n{self.stderr}")
            time.sleep(0.05)

    def stop(self) -> tuple[int, int, int, int, dict[str, int]]:
        """SIGTERM; returns (stored, duplicates, states, acks, rejected by kind)."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, self.stderr
        self._reader.join(timeout=5)
        m = STOPPED_RE.search(self.stderr)
        assert m is not None, self.stderr
        kinds = {} if m.group(6) == "-" else dict(kv.split("=") for kv in m.group(6).split(","))
        rejected = {k: int(v) for k, v in kinds.items()}
        assert sum(rejected.values()) == int(m.group(5))
        return int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), rejected


@contextmanager
def listeners(n: int, mosquitto: Mosquitto, db: str, group: str) -> Iterator[list[ListenProc]]:
    procs = [
        ListenProc(
            [
                "--db",
                db,
                "--host",
                mosquitto.host,
                "--port",
                str(mosquitto.port),
                "--group",
                group,
                "--progress-s",
                "0.5",
            ]
        )
        for _ in range(n)
    ]
    try:
        for p in procs:
            p.wait_for("listening on")
        yield procs
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(timeout=10)


def _wait_rows(db: str, want: int, site: str, within: float = 60.0) -> int:
    deadline = time.monotonic() + within
    while True:
        store = open_store(db)
        try:
            got = len(store.aggregates(site, None, None))
        finally:
            store.close()
        if got >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


@pytest.mark.timeout(240)
def test_two_listeners_store_a_simulated_day_exactly_once(
    db_url: str,
    tmp_path: Path,
    mosquitto: Mosquitto,
    mqtt_capture: Callable[[str], MqttCapture],
) -> None:
    site = f"site-{uuid.uuid4().hex[:8]}"
    for d in ("shelf-a", "shelf-b"):
        (tmp_path / d).mkdir()
    days = [simulate_day(tmp_path / d, site=site, device=d, seed=i)
            for i, d in enumerate(("shelf-a", "shelf-b"))]  # fmt: skip
    messages = [m for day in days for m in day.messages()]
    assert len(messages) > 80  # two devices, a trading day of 15-minute windows each
    peer = mqtt_capture(f"shelfedge/v1/{site}/none")
    with listeners(2, mosquitto, db_url, f"g{uuid.uuid4().hex[:6]}") as procs:
        for m in messages:
            peer.publish(f"shelfedge/v1/{site}/{m['device']}/agg", json.dumps(m).encode())
        again = messages[::7]  # at-least-once: the outbox may deliver a window twice
        for m in again:
            peer.publish(f"shelfedge/v1/{site}/{m['device']}/agg", json.dumps(m).encode())
        state = {"online": True, "site": site, "device": "shelf-a", "version": "0.1.0"}
        peer.publish(f"shelfedge/v1/{site}/shelf-a/state", json.dumps(state).encode(), retain=True)
        assert _wait_rows(db_url, len(messages), site) == len(messages)
        time.sleep(1.0)  # let the re-sent copies arrive too
        results = [p.stop() for p in procs]
    stored = [r[0] for r in results]
    assert sum(stored) == len(messages)
    assert all(s > 0 for s in stored), f"the shared subscription did not split: {stored}"
    assert sum(r[1] for r in results) == len(again)
    assert all(r[4] == {} for r in results)
    assert all(r[2] >= 1 for r in results)  # state is not shared: both see (and upsert) it

    store = open_store(db_url)
    try:
        rows = store.aggregates(site, None, None)
        assert sorted(r.id for r in rows) == sorted(m["id"] for m in messages)
        want_cells = sum(len(cells(parse(m))) for m in messages)
        assert len(store.cells(site, None, None)) == want_cells
        states = store.states(site)
        assert [(s.device, s.online) for s in states] == [("shelf-a", True)]
        assert store.schema_version() == 1
    finally:
        store.close()
    peer.publish(f"shelfedge/v1/{site}/shelf-a/state", b"", retain=True)  # clear retained


def test_malformed_messages_are_rejected_counted_and_not_logged(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_capture: Callable[[str], MqttCapture]
) -> None:
    site = f"site-{uuid.uuid4().hex[:8]}"
    day = simulate_day(tmp_path, site=site, device="d1", close_h=10)
    good = day.windows[0]
    canary = "CANARY-" + uuid.uuid4().hex
    bad: list[tuple[str, bytes, str]] = [
        ("d1/agg", b"{not json " + canary.encode(), "bad_json"),
        ("d1/agg", b"\xff\xfe" + canary.encode(), "bad_json"),
        ("d1/agg", json.dumps({**good, "id": canary, "zones": canary}).encode(), "schema"),
        ("d1/agg", json.dumps({**good, "extra": canary}).encode(), "schema"),
        ("d1/agg", json.dumps([canary]).encode(), "schema"),
        ("d2/agg", json.dumps({**good, "id": canary}).encode(), "topic_mismatch"),
        ("d1/agg", json.dumps({**good, "id": canary, "holdout": 1}).encode(), "below_k"),
        ("d1/agg", json.dumps({**good, "pad": canary * 9000}).encode(), "too_large"),
        (
            "d1/state",
            json.dumps({"online": "yes", "site": site, "device": "d1", "x": canary}).encode(),
            "schema",
        ),
        ("d1/ack", json.dumps({"id": canary, "status": "maybe"}).encode(), "schema"),
    ]
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    peer = mqtt_capture(f"shelfedge/v1/{site}/none")
    with listeners(1, mosquitto, db, f"g{uuid.uuid4().hex[:6]}") as (proc,):
        for sub, payload, _kind in bad:
            peer.publish(f"shelfedge/v1/{site}/{sub}", payload)
        peer.publish(f"shelfedge/v1/{site}/d1/agg", json.dumps(good).encode())
        ack = {"id": str(uuid.uuid4()), "status": "ok", "code": "ok", "message": "", "result": {}}
        peer.publish(f"shelfedge/v1/{site}/d1/ack", json.dumps(ack).encode())
        assert _wait_rows(db, 1, site) == 1
        time.sleep(1.0)
        stored, dups, _states, acks, rejected = proc.stop()
    want: dict[str, int] = {}
    for _s, _p, kind in bad:
        want[kind] = want.get(kind, 0) + 1
    assert (stored, dups, acks) == (1, 0, 1)
    assert rejected == want
    assert canary not in proc.stderr
    for kind in want:
        assert re.search(rf"rejected a message on shelfedge/v1/{site}/d\d/\w+: {kind}", proc.stderr)
    assert re.search(r"progress: stored=\d+", proc.stderr)  # periodic health line
    store = open_store(db)
    try:
        assert [r.id for r in store.aggregates(site, None, None)] == [good["id"]]
        assert store.states(site) == []
    finally:
        store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("fleet.db*"))
    assert canary.encode() not in raw


def test_the_schema_is_created_once_with_a_migration_table(db_url: str) -> None:
    first = open_store(db_url)
    second = open_store(db_url)  # a second listener on the same database
    try:
        assert first.schema_version() == second.schema_version() == 1
        if db_url.startswith("sqlite"):
            names = {
                r[0] for r in first._query("SELECT name FROM sqlite_master WHERE type='table'", [])
            }
        else:
            names = {
                r[0]
                for r in first._query(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema='public'",
                    [],
                )
            }
        assert names == set(TABLES)  # nothing but aggregates and device state
    finally:
        first.close()
        second.close()


def test_a_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "edge", "fleet", "listen", "--db", "mysql://x/y"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert res.returncode == 1
    assert "sqlite:///" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.timeout(240)
def test_a_demo_on_the_broker_feeds_fleet_listen_end_to_end(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_capture: Callable[[str], MqttCapture]
) -> None:
    import datetime as dt

    import yaml

    from tests.helpers import DEMO_STORE

    site = f"site-{uuid.uuid4().hex[:8]}"
    data = yaml.safe_load(DEMO_STORE.read_text())
    data.update(site=site)
    data["display"]["enabled"] = False
    data["mqtt"].update(enabled=True, host=mosquitto.host, port=mosquitto.port)
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    sim_start = dt.datetime.fromisoformat(str(data["simulator"]["start"]))
    if sim_start.tzinfo is None:
        from zoneinfo import ZoneInfo

        sim_start = sim_start.replace(tzinfo=ZoneInfo(data["timezone"]))
    t0 = sim_start.timestamp()
    capture = mqtt_capture(f"shelfedge/v1/{site}/#")
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    with listeners(1, mosquitto, db, f"g{uuid.uuid4().hex[:6]}") as (proc,):
        res = subprocess.run(
            [sys.executable, "-m", "edge", "demo", "--minutes", "35", "--speed", "0",
             "--no-display", "--config", str(cfg), "--out", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["outbox_pending_at_end"] == 0
        aggs = [json.loads(m.payload) for m in capture.messages() if m.topic.endswith("/agg")]
        assert aggs  # whatever the release design publishes (windows, a partial day)
        assert _wait_rows(db, len(aggs), site) == len(aggs)
        time.sleep(0.5)
        stored, dups, states, _acks, rejected = proc.stop()
    assert (stored, dups, rejected) == (len(aggs), 0, {})
    assert states >= 2  # online at connect, offline at the clean stop
    # payload times are the simulated clock's, not the wall clock's
    for a in aggs:
        start = a.get("window_start", a.get("period_start"))
        assert t0 - 86_400 < start < t0 + 35 * 60, start
    offers = [json.loads(m.payload) for m in capture.messages() if m.topic.endswith("/offer")]
    assert offers, "the demo made no offers on the broker"
    assert all(t0 < o["expires_at"] < t0 + 3 * 86_400 for o in offers)
    store = open_store(db)
    try:
        assert sorted(r.id for r in store.aggregates(site, None, None)) == sorted(
            a["id"] for a in aggs
        )
        (state,) = store.states(site)
        assert (state.device, state.online) == (data["device"], False)
    finally:
        store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("fleet.db*"))
    for o in offers:  # offers carry tokens: never subscribed to, never stored
        assert o["token"].encode() not in raw and bytes.fromhex(o["token"]) not in raw
