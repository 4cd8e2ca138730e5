"""The control socket: a real asyncio Unix-socket server and the blocking CLI client."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from edge.daemon.control import LINE_LIMIT, ControlError, ControlServer, request
from edge.errors import CommandRejected

CANARY = "CANARY-7f3a-token-aa:bb:cc:dd:ee:ff"
STATUS = {
    "online": True,
    "version": "0.1.0",
    "site": "s1",
    "device": "d1",
    "components": {"mqtt": {"state": "running", "restarts": 0, "essential": True}},
    "raw_holdings": {"presence.tracker": {"records": 3, "oldest_age_s": 4.2, "limit_s": 30.0}},
}


class Service:
    """A stand-in device service: records calls, refuses, fails, blocks on request."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.gate = asyncio.Event()

    async def dispatch(self, method: str, args: dict[str, Any]) -> Mapping[str, Any]:
        self.calls.append((method, args))
        match method:
            case "status":
                return STATUS
            case "echo":
                return {"args": args}
            case "reject":
                raise CommandRejected("not_now", "refused on purpose")
            case "boom":
                raise ValueError(f"leaked {CANARY}")
            case "wait":
                await self.gate.wait()
                return {"waited": True}
            case "release":
                self.gate.set()
                return {}
            case "slow":
                await asyncio.sleep(5)
                return {}
        raise CommandRejected("unknown_method", f"unknown method {method!r}")


def _read(path: Path) -> str:
    return path.read_text()


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _plant(kind: str, path: Path, target: Path) -> None:
    """Put a regular file, a directory or a symlink where the socket should go."""
    target.write_text("keep me")
    if kind == "file":
        path.write_text("keep me")
    elif kind == "dir":
        path.mkdir()
    else:
        path.symlink_to(target)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "control.sock"


@pytest.fixture
def service() -> Service:
    return Service()


@pytest.fixture
async def server(sock_path: Path, service: Service) -> AsyncIterator[ControlServer]:
    srv = ControlServer(sock_path, service.dispatch)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


class Conn:
    """One client connection speaking JSON lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path) -> Conn:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        return cls(reader, writer)

    async def send(self, line: bytes | dict[str, Any]) -> None:
        data = json.dumps(line).encode() if isinstance(line, dict) else line
        self.writer.write(data + b"\n")
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), 5)
        assert line.endswith(b"\n"), line
        out: dict[str, Any] = json.loads(line)
        return out

    async def call(self, line: bytes | dict[str, Any]) -> dict[str, Any]:
        await self.send(line)
        return await self.recv()

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    def close(self) -> None:
        self.writer.close()


async def test_status_round_trip(server: ControlServer, service: Service) -> None:
    conn = await Conn.open(server.path)
    resp = await conn.call({"id": 7, "method": "status", "args": {}})
    assert resp == {"id": 7, "ok": True, "result": STATUS}
    assert service.calls == [("status", {})]
    resp = await conn.call({"id": "x", "method": "echo", "args": {"a": [1, 2]}})
    assert resp == {"id": "x", "ok": True, "result": {"args": {"a": [1, 2]}}}
    conn.close()


async def test_id_and_args_are_optional(server: ControlServer) -> None:
    conn = await Conn.open(server.path)
    assert await conn.call({"method": "echo"}) == {"id": None, "ok": True, "result": {"args": {}}}
    resp = await conn.call({"method": "echo", "args": None, "id": 1.5})
    assert resp == {"id": 1.5, "ok": True, "result": {"args": {}}}
    conn.close()


async def test_rejection_keeps_code_and_message(server: ControlServer) -> None:
    conn = await Conn.open(server.path)
    resp = await conn.call({"id": 1, "method": "reject", "args": {}})
    assert resp == {
        "id": 1,
        "ok": False,
        "error": {"code": "not_now", "message": "refused on purpose"},
    }
    resp = await conn.call({"id": 2, "method": "nope"})
    assert resp["error"]["code"] == "unknown_method"
    assert server.rejected == 2
    conn.close()


async def test_internal_error_names_only_the_class(
    server: ControlServer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await Conn.open(server.path)
    with caplog.at_level(logging.ERROR, logger="edge.daemon.control"):
        await conn.send({"id": 3, "method": "boom", "args": {}})
        raw = await asyncio.wait_for(conn.reader.readline(), 5)
    assert CANARY.encode() not in raw
    resp = json.loads(raw)
    assert resp["id"] == 3 and resp["ok"] is False
    assert resp["error"]["code"] == "internal"
    assert "ValueError" in resp["error"]["message"]
    # The traceback goes to the local log at ERROR, for the technician.
    records = [r for r in caplog.records if r.name == "edge.daemon.control"]
    assert records and records[0].levelno == logging.ERROR
    # the exception's text may quote data: ERROR names the class, the traceback is DEBUG only
    assert records[0].exc_info is None and "ValueError" in records[0].getMessage()
    assert all(CANARY not in r.getMessage() for r in caplog.records)
    # The connection still serves.
    assert (await conn.call({"id": 4, "method": "status"}))["ok"] is True
    conn.close()


@pytest.mark.parametrize(
    ("line", "rid", "words"),
    [
        (b"{not json", None, "malformed JSON"),
        (b'{"method": "status", ', None, "malformed JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b'"status"', None, "must be a JSON object"),
        (b"\xff\xfe{}", None, "not UTF-8"),
        (b'{"id": 9}', 9, "missing method"),
        (b'{"id": 9, "method": 5}', 9, "method must be a non-empty string"),
        (b'{"id": 9, "method": ""}', 9, "method must be a non-empty string"),
        (b'{"id": 9, "method": "status", "args": [1]}', 9, "args must be a JSON object"),
        (b'{"id": 9, "method": "status", "args": "x"}', 9, "args must be a JSON object"),
        (b'{"id": [9], "method": "status"}', None, "id must be a JSON scalar"),
        (b'{"id": 9, "method": "status", "method": "boom"}', None, "duplicate key 'method'"),
    ],
)
async def test_bad_line_then_good_line_on_one_connection(
    server: ControlServer, service: Service, line: bytes, rid: Any, words: str
) -> None:
    conn = await Conn.open(server.path)
    resp = await conn.call(line)
    assert resp["ok"] is False and resp["id"] == rid
    assert resp["error"]["code"] == "bad_request"
    assert words in resp["error"]["message"]
    assert service.calls == []
    assert await conn.call({"id": 10, "method": "status"}) == {
        "id": 10,
        "ok": True,
        "result": STATUS,
    }
    conn.close()


async def test_blank_lines_are_ignored(server: ControlServer) -> None:
    conn = await Conn.open(server.path)
    await conn.send(b"\n  \r")
    assert (await conn.call({"id": 1, "method": "status"}))["id"] == 1
    conn.close()


async def test_pipelined_requests_are_answered_in_order(server: ControlServer) -> None:
    conn = await Conn.open(server.path)
    lines = [json.dumps({"id": i, "method": "echo", "args": {"i": i}}) for i in range(5)]
    await conn.send("\n".join(lines).encode())
    answers = [await conn.recv() for _ in range(5)]
    assert [a["id"] for a in answers] == list(range(5))
    assert [a["result"]["args"]["i"] for a in answers] == list(range(5))
    conn.close()


async def test_last_line_without_newline_is_answered(server: ControlServer) -> None:
    conn = await Conn.open(server.path)
    conn.writer.write(b'{"id": 1, "method": "status"}')
    conn.writer.write_eof()
    assert (await conn.recv())["ok"] is True
    assert await conn.at_eof()
    conn.close()


async def test_too_long_line_is_refused_and_the_next_line_served(server: ControlServer) -> None:
    conn = await Conn.open(server.path)
    pad = "a" * LINE_LIMIT
    resp = await conn.call({"id": 1, "method": "echo", "args": {"pad": pad}})
    assert resp["ok"] is False and resp["error"]["code"] == "bad_request"
    assert "longer than" in resp["error"]["message"]
    assert (await conn.call({"id": 2, "method": "status"}))["id"] == 2
    conn.close()


async def test_too_long_line_arriving_in_pieces_is_skipped(
    server: ControlServer, service: Service
) -> None:
    conn = await Conn.open(server.path)
    # More than the limit and no newline yet: refused before the line even ends ...
    conn.writer.write(b'{"id": 1, "method": "echo", "args": {"pad": "' + b"b" * (LINE_LIMIT + 10))
    await conn.writer.drain()
    resp = await conn.recv()
    assert resp["error"]["code"] == "bad_request" and "longer than" in resp["error"]["message"]
    # ... and the rest of it, however long, is discarded up to its newline.
    conn.writer.write(b"c" * (3 * LINE_LIMIT) + b'"}}\n')
    assert (await conn.call({"id": 2, "method": "status"}))["id"] == 2
    assert service.calls == [("status", {})]
    conn.close()


async def test_line_at_the_limit_is_accepted(server: ControlServer) -> None:
    conn = await Conn.open(server.path)
    head = json.dumps({"id": 1, "method": "echo", "args": {"pad": ""}})
    pad = "p" * (LINE_LIMIT - len(head))
    line = json.dumps({"id": 1, "method": "echo", "args": {"pad": pad}}).encode()
    assert len(line) == LINE_LIMIT
    resp = await conn.call(line)
    assert resp["ok"] is True and len(resp["result"]["args"]["pad"]) == len(pad)
    conn.close()


async def test_socket_is_0600_and_nothing_else_is_left(server: ControlServer) -> None:
    st = os.lstat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert sorted(p.name for p in server.path.parent.iterdir()) == ["control.sock"]


async def test_start_creates_the_parent_and_leaves_the_umask_alone(
    tmp_path: Path, service: Service
) -> None:
    path = tmp_path / "a" / "b" / "control.sock"
    before = os.umask(0o022)
    os.umask(before)
    srv = ControlServer(path, service.dispatch)
    await srv.start()
    try:
        after = os.umask(0o022)
        os.umask(after)
        assert after == before
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        conn = await Conn.open(path)
        assert (await conn.call({"method": "status"}))["ok"] is True
        conn.close()
    finally:
        await srv.stop()


async def test_stale_socket_is_replaced(sock_path: Path, service: Service) -> None:
    sock_path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # the file stays behind, nothing listens: what a crash leaves
    os.chmod(sock_path, 0o666)
    srv = ControlServer(sock_path, service.dispatch)
    await srv.start()
    try:
        assert stat.S_IMODE(os.lstat(sock_path).st_mode) == 0o600
        conn = await Conn.open(sock_path)
        assert (await conn.call({"id": 1, "method": "status"}))["ok"] is True
        conn.close()
    finally:
        await srv.stop()
    assert not _exists(sock_path)


async def test_live_socket_is_not_taken_over(server: ControlServer, service: Service) -> None:
    second = ControlServer(server.path, service.dispatch)
    with pytest.raises(ControlError, match="another daemon is listening"):
        await second.start()
    conn = await Conn.open(server.path)
    assert (await conn.call({"id": 1, "method": "status"}))["ok"] is True
    conn.close()


@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
async def test_non_socket_at_the_path_is_refused(
    sock_path: Path, service: Service, kind: str
) -> None:
    sock_path.parent.mkdir(parents=True)
    target = sock_path.parent / "elsewhere"
    _plant(kind, sock_path, target)
    srv = ControlServer(sock_path, service.dispatch)
    with pytest.raises(ControlError, match="not a socket"):
        await srv.start()
    assert not srv.serving
    if kind == "file":
        assert _read(sock_path) == "keep me"
    assert _read(target) == "keep me"
    assert not [p for p in sock_path.parent.iterdir() if p.name.startswith(".ctl-")]


async def test_stop_closes_clients_and_unlinks(sock_path: Path, service: Service) -> None:
    srv = ControlServer(sock_path, service.dispatch)
    await srv.start()
    idle = await Conn.open(sock_path)
    assert (await idle.call({"id": 1, "method": "status"}))["ok"] is True
    busy = await Conn.open(sock_path)
    await busy.send({"id": 2, "method": "wait"})  # in flight when stop comes
    await asyncio.sleep(0.05)
    await asyncio.wait_for(srv.stop(), 5)
    assert await idle.at_eof()
    assert await busy.at_eof()
    assert not _exists(sock_path)
    assert not srv.serving
    idle.close()
    busy.close()


async def test_stop_leaves_a_socket_it_does_not_own(sock_path: Path, service: Service) -> None:
    srv = ControlServer(sock_path, service.dispatch)
    await srv.start()
    os.unlink(sock_path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(sock_path))  # someone else's socket now
    try:
        await srv.stop()
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    finally:
        other.close()


async def test_connections_are_served_concurrently(server: ControlServer) -> None:
    a, b = await Conn.open(server.path), await Conn.open(server.path)
    await a.send({"id": "a", "method": "wait"})  # blocks until b releases it
    await asyncio.sleep(0.05)
    assert await b.call({"id": "b", "method": "release"}) == {"id": "b", "ok": True, "result": {}}
    assert await a.recv() == {"id": "a", "ok": True, "result": {"waited": True}}
    a.close()
    b.close()


async def test_extra_client_is_told_busy_and_closed(sock_path: Path, service: Service) -> None:
    srv = ControlServer(sock_path, service.dispatch, max_clients=2)
    await srv.start()
    try:
        first, second = await Conn.open(sock_path), await Conn.open(sock_path)
        for conn in (first, second):  # both registered before the third arrives
            assert (await conn.call({"method": "status"}))["ok"] is True
        third = await Conn.open(sock_path)
        resp = await third.recv()
        assert resp["ok"] is False and resp["error"]["code"] == "bad_request"
        assert "busy" in resp["error"]["message"]
        assert await third.at_eof()
        first.close()
        await asyncio.sleep(0.05)
        fourth = await Conn.open(sock_path)  # a freed slot is usable again
        assert (await fourth.call({"method": "status"}))["ok"] is True
        for conn in (second, third, fourth):
            conn.close()
    finally:
        await srv.stop()


async def test_idle_client_is_disconnected(sock_path: Path, service: Service) -> None:
    srv = ControlServer(sock_path, service.dispatch, idle_timeout_s=0.1)
    await srv.start()
    try:
        conn = await Conn.open(sock_path)
        assert await conn.at_eof()
        conn.close()
    finally:
        await srv.stop()


async def test_runs_as_a_supervised_component(sock_path: Path, service: Service) -> None:
    srv = ControlServer(sock_path, service.dispatch)
    beats: list[int] = []
    task = asyncio.create_task(srv.run(lambda: beats.append(1)))
    for _ in range(100):
        if srv.serving:
            break
        await asyncio.sleep(0.01)
    conn = await Conn.open(sock_path)
    assert (await conn.call({"method": "status"}))["ok"] is True
    health = srv.health()
    assert health.ok and health.detail["requests"] == 1 and health.detail["clients"] == 1
    assert beats
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _exists(sock_path) and not srv.health().ok
    conn.close()


# -- the blocking client (run in a worker thread; the server runs in the test's loop) ------


async def test_request_returns_the_result(server: ControlServer, service: Service) -> None:
    result = await asyncio.to_thread(request, server.path, "echo", {"k": 1})
    assert result == {"args": {"k": 1}}
    assert await asyncio.to_thread(request, server.path, "status") == STATUS


async def test_request_raises_the_refusal_with_its_code(server: ControlServer) -> None:
    with pytest.raises(ControlError, match="not_now: refused on purpose") as info:
        await asyncio.to_thread(request, server.path, "reject")
    assert info.value.code == "not_now"
    with pytest.raises(ControlError) as info:
        await asyncio.to_thread(request, server.path, "boom")
    assert info.value.code == "internal" and CANARY not in str(info.value)


async def test_request_times_out(server: ControlServer) -> None:
    with pytest.raises(ControlError, match=r"no answer from .* within 0.2 s") as info:
        await asyncio.to_thread(request, server.path, "slow", None, 0.2)
    assert info.value.code is None


def test_request_without_daemon(tmp_path: Path) -> None:
    missing = tmp_path / "control.sock"
    with pytest.raises(ControlError) as info:
        request(missing, "status")
    assert str(info.value) == f"no daemon listening at {missing} (is shelfedge running?)"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(missing))
    stale.close()
    with pytest.raises(ControlError, match="no daemon listening at"):
        request(missing, "status")


def test_request_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root ignores file modes, so the kernel's EACCES is simulated at connect().
    def deny(self: socket.socket, address: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", deny)
    path = tmp_path / "control.sock"
    with pytest.raises(ControlError) as info:
        request(path, "status")
    assert str(info.value) == f"permission denied on {path} (run as the shelfedge user or root)"


async def test_request_permission_denied_for_real(server: ControlServer) -> None:
    os.chmod(server.path, 0o000)
    if os.geteuid() != 0:
        with pytest.raises(ControlError, match="permission denied on"):
            await asyncio.to_thread(request, server.path, "status")
        return

    # root bypasses file modes: ask as the unprivileged user "nobody" in a forked child
    # (its modules are already in memory, so it needs no file access but the socket)
    def as_nobody() -> str:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: drop privileges, try, report, leave at once
            message, code = "no error", 3
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                request(server.path, "status", timeout=5.0)
            except ControlError as exc:
                message, code = str(exc), 0
            except BaseException as exc:
                message = repr(exc)
            os.write(write, message.encode())
            os._exit(code)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        out = os.read(read, 4096).decode()
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0, out
        return out

    assert "permission denied on" in await asyncio.to_thread(as_nobody)
