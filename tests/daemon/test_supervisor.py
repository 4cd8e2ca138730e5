"""The supervisor: failed components restart and show in health; a stall stops the watchdog."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config.models import AppConfig
from edge.daemon.supervisor import RestartPolicy, RunState, Supervisor
from edge.lifecycle import ComponentHealth, Progress

FAST = RestartPolicy(base_s=0.01, cap_s=0.05, jitter=0.5, max_failures=4, healthy_after_s=60)


class Flaky:
    """Raises on its first ``fail_times`` runs, then serves."""

    essential = True

    def __init__(self, name: str, fail_times: int) -> None:
        self.name = name
        self.fail_times = fail_times
        self.runs = 0

    async def run(self, progress: Progress) -> None:
        self.runs += 1
        if self.runs <= self.fail_times:
            raise ValueError("planted failure")
        while True:
            progress()
            await asyncio.sleep(0.01)

    def health(self) -> ComponentHealth:
        return ComponentHealth(True, {"runs": self.runs})

    def apply_config(self, cfg: AppConfig) -> bool:
        return False


class Staller:
    """Makes progress until ``stall`` is set, then blocks without progress."""

    name = "staller"
    essential = True

    def __init__(self) -> None:
        self.stall = asyncio.Event()

    async def run(self, progress: Progress) -> None:
        while not self.stall.is_set():
            progress()
            await asyncio.sleep(0.01)
        await asyncio.Event().wait()

    def health(self) -> ComponentHealth:
        return ComponentHealth(True)

    def apply_config(self, cfg: AppConfig) -> bool:
        return False


async def _until(cond: object, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not cond():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def test_failed_component_is_restarted_and_reported() -> None:
    sup = Supervisor(policy=FAST, rng=random.Random(0))
    flaky = Flaky("flaky", fail_times=2)
    steady = Flaky("steady", fail_times=0)
    sup.add(flaky)
    sup.add(steady)
    try:
        await _until(lambda: flaky.runs == 3 and sup.statuses()[0].state is RunState.RUNNING)
        status = {s.name: s for s in sup.statuses()}
        assert status["flaky"].restarts == 2
        assert status["flaky"].last_error == "ValueError"
        assert status["flaky"].as_dict()["ok"] is True
        assert status["steady"].restarts == 0 and steady.runs == 1
        # the error's message never reaches status, only its class
        assert "planted" not in str(status["flaky"].as_dict())
    finally:
        await sup.stop()


async def test_component_that_keeps_failing_is_marked_failed_and_rest_serve() -> None:
    sup = Supervisor(policy=FAST, rng=random.Random(0))
    broken = Flaky("broken", fail_times=10**6)
    steady = Flaky("steady", fail_times=0)
    sup.add(broken)
    sup.add(steady)
    try:
        await _until(lambda: sup.statuses()[0].state is RunState.FAILED)
        assert broken.runs == FAST.max_failures
        before = steady.runs
        await asyncio.sleep(0.05)
        status = {s.name: s for s in sup.statuses()}
        assert status["steady"].state is RunState.RUNNING and steady.runs == before
        assert status["broken"].as_dict()["ok"] is False
    finally:
        await sup.stop()


def test_backoff_is_capped_with_jitter() -> None:
    policy = RestartPolicy(base_s=1.0, cap_s=8.0, jitter=0.5)
    sup = Supervisor(policy=policy, rng=random.Random(1))
    delays = [sup._backoff(n) for n in range(1, 12)]
    assert all(0.5 <= d <= 1.0 for d in delays[:1])
    assert all(4.0 <= d <= 8.0 for d in delays[4:])  # capped at 8, jitter takes ≤ half
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jitter, not a fixed delay


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A real datagram socket standing in for systemd's NOTIFY_SOCKET."""
    path = Path(tempfile.mkdtemp(dir="/tmp")) / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()
    os.unlink(path)


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(256))
        except BlockingIOError:
            return out


async def test_stalled_loop_stops_watchdog_pings(notify_socket: socket.socket) -> None:
    sup = Supervisor(policy=FAST, stall_after_s=0.2, watchdog_every_s=0.02)
    staller = Staller()
    sup.add(staller)
    sup.start_watchdog()
    try:
        await asyncio.sleep(0.3)
        pings = _drain(notify_socket)
        assert pings and set(pings) == {b"WATCHDOG=1"}
        staller.stall.set()
        await asyncio.sleep(0.4)  # longer than stall_after_s
        _drain(notify_socket)
        await asyncio.sleep(0.2)
        assert _drain(notify_socket) == []  # no pings while the loop is stalled
        assert not sup.all_progressing()
    finally:
        await sup.stop()


async def test_restart_on_request_runs_a_fresh_instance() -> None:
    sup = Supervisor(policy=FAST)
    comp = Flaky("c", fail_times=0)
    sup.add(comp)
    try:
        await _until(lambda: comp.runs == 1)
        sup.restart("c")
        await _until(lambda: comp.runs == 2)
        assert sup.statuses()[0].restarts == 1
    finally:
        await sup.stop()
