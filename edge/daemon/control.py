"""The local control socket: JSON lines over a Unix socket, in front of the device service.

Technicians (``shelfedge status``, later ``calibrate``, ``config apply``, ``display
snapshot``) talk to the running daemon here.

Protocol, one JSON object per line (UTF-8, ``\\n``-terminated, at most ``LINE_LIMIT`` bytes):

- request ``{"id": <JSON scalar, optional>, "method": "status", "args": {...}}``
  (``args`` may be left out or ``null``, meaning ``{}``);
- response ``{"id": ..., "ok": true, "result": {...}}`` or
  ``{"id": ..., "ok": false, "error": {"code": "...", "message": "..."}}``.

Error codes: the dispatcher's own ``CommandRejected`` code (``unknown_method``,
``bad_args``, ...); ``bad_request`` for a line that is not a valid request (the connection
stays usable; the message says what is wrong; ``id`` is echoed when it could be read) and
for a client turned away because ``max_clients`` are already connected (``busy``; that
connection is closed); ``internal`` for any other exception, whose message names only the
exception's class, because an exception's text may quote data (the traceback goes to the
daemon log at ERROR).

Requests on one connection are answered in order; connections are served concurrently.

Permissions: the socket is bound inside a fresh private directory (``mkdtemp``, mode 0700)
next to the final path, chmod-ed to 0600 there and only then renamed into place. So it is
never reachable by group or others, not even for an instant, and the process-wide umask is
left alone (other threads may be creating files meanwhile). An existing socket file at the
path is replaced only when nothing answers on it (a stale one from a crash); anything else
there (a regular file, a directory, a symlink, a live daemon) makes ``start`` refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from edge.config.models import AppConfig
from edge.errors import CommandRejected, ShelfEdgeError
from edge.lifecycle import ComponentHealth, Progress

_LOGGER = logging.getLogger(__name__)

LINE_LIMIT = 64 * 1024
"""Longest request line accepted, in bytes (longer ones get ``bad_request``)."""
MAX_CLIENTS = 8
"""Connections served at once; one more gets ``bad_request`` "busy" and is closed."""
IDLE_TIMEOUT_S = 300.0
"""A connection that sends nothing for this long is closed (frees its slot)."""
RESPONSE_LIMIT = 16 * 1024 * 1024
"""Longest answer the client helper accepts, in bytes."""
BEAT_S = 1.0

Dispatch = Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]]
"""``(method, args) -> result``; raises ``CommandRejected`` to refuse."""

_SCALARS = (str, int, float, bool, type(None))


class ControlError(ShelfEdgeError):
    """The control socket could not be used, or the daemon refused the request.

    ``code`` is the daemon's error code when it answered ``ok: false``, else ``None``.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class _BadRequest(Exception):
    """A request line that cannot be dispatched (answered with ``bad_request``)."""

    def __init__(self, rid: Any, message: str) -> None:
        self.rid = rid
        super().__init__(message)


class ControlServer:
    """Serves ``dispatch`` on a Unix socket at ``path``; also a supervised component."""

    name = "control"
    essential = False

    def __init__(
        self,
        path: Path,
        dispatch: Dispatch,
        *,
        max_clients: int = MAX_CLIENTS,
        line_limit: int = LINE_LIMIT,
        idle_timeout_s: float | None = IDLE_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self._dispatch = dispatch
        self._max_clients = max_clients
        self._line_limit = line_limit
        self._idle_timeout_s = idle_timeout_s
        self._server: asyncio.Server | None = None
        self._closing = False
        self._inode: tuple[int, int] | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.requests = 0
        self.rejected = 0
        self.bad_requests = 0
        self.errors = 0

    @property
    def serving(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._server is not None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Create the parent directory, clear a stale socket, bind with mode 0600.

        Raises ``ControlError`` when something other than a stale socket is at ``path``
        or the socket cannot be bound.
        """
        if self._server is not None:
            return
        self._closing = False
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self._clear_stale()
        sock = self._bind_private()
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=self._line_limit
            )
        except BaseException:
            sock.close()
            self._unlink_own()
            raise
        _LOGGER.info("control socket listening at %s", self.path)

    async def stop(self) -> None:
        """Stop accepting, close every client connection, remove the socket file."""
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for task in tasks:
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self._unlink_own()

    async def _clear_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path}: exists and is not a socket; not replacing it")
        if await self._answers():
            raise ControlError(f"{self.path}: another daemon is listening there")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        _LOGGER.info("control: removed stale socket %s", self.path)

    async def _answers(self) -> bool:
        """True when something accepts connections on the existing socket file."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.path), 1.0)
        except TimeoutError:
            return True  # a listener with a full backlog: alive, not stale
        except OSError:
            return False
        writer.close()
        return True

    def _bind_private(self) -> socket.socket:
        """Bind in a private 0700 directory, chmod 0600, then rename to ``path``."""
        tmpdir = tempfile.mkdtemp(prefix=".ctl-", dir=self.path.parent)
        tmp = os.path.join(tmpdir, "s")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(tmp)
            os.chmod(tmp, 0o600)
            os.rename(tmp, self.path)
            st = os.lstat(self.path)
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ControlError(f"{self.path}: cannot create the control socket: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(tmpdir)
        self._inode = (st.st_dev, st.st_ino)
        return sock

    def _unlink_own(self) -> None:
        """Remove the socket file, but only if it is still the one this server made."""
        inode, self._inode = self._inode, None
        if inode is None:
            return
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == inode:
                os.unlink(self.path)

    # -- connections --------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.close()
            return
        if len(self._writers) >= self._max_clients:
            msg = f"busy: {self._max_clients} clients already connected; try again"
            await self._send(writer, None, error=("bad_request", msg))
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                line = await self._read_line(reader, writer)
                if line is None:
                    break
                if line.strip():
                    await self._answer(writer, line)
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            # ``stop`` cancels in-flight handlers. Returning normally matters on 3.11:
            # asyncio's done-callback for these tasks logs a cancelled task as an error.
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _read_line(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | None:
        """The next line; ``b""`` after a skipped over-long line; ``None`` at EOF or idle."""
        try:
            async with asyncio.timeout(self._idle_timeout_s):
                try:
                    return await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    return exc.partial or None  # a last line without "\n" still counts
                except asyncio.LimitOverrunError as exc:
                    self.bad_requests += 1
                    msg = f"line longer than {self._line_limit} bytes"
                    await self._send(writer, None, error=("bad_request", msg))
                    return b"" if await _skip_line(reader, exc.consumed) else None
        except TimeoutError:
            return None

    async def _answer(self, writer: asyncio.StreamWriter, line: bytes) -> None:
        self.requests += 1
        try:
            rid, method, args = _parse(line)
        except _BadRequest as exc:
            self.bad_requests += 1
            await self._send(writer, exc.rid, error=("bad_request", str(exc)))
            return
        try:
            result = await self._dispatch(method, args)
        except CommandRejected as exc:
            self.rejected += 1
            await self._send(writer, rid, error=(exc.code, str(exc)))
        except Exception as exc:
            self.errors += 1
            kind = type(exc).__name__
            # The exception's text may quote data: class name at ERROR, traceback at DEBUG only.
            _LOGGER.error("control: method %r failed with %s", method, kind)
            _LOGGER.debug("control: traceback", exc_info=exc)
            await self._send(writer, rid, error=("internal", f"{kind} (see the daemon log)"))
        else:
            await self._send(writer, rid, result=result)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        rid: Any,
        *,
        result: Mapping[str, Any] | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        if error is None:
            msg: dict[str, Any] = {"id": rid, "ok": True, "result": dict(result or {})}
        else:
            msg = {"id": rid, "ok": False, "error": {"code": error[0], "message": error[1]}}
        try:
            data = json.dumps(msg, default=str).encode() + b"\n"
        except (TypeError, ValueError) as exc:  # e.g. a circular result
            self.errors += 1
            _LOGGER.error("control: result not JSON-serialisable: %s", type(exc).__name__)
            err = {"code": "internal", "message": f"{type(exc).__name__} (see the daemon log)"}
            data = json.dumps({"id": rid, "ok": False, "error": err}).encode() + b"\n"
        if writer.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            writer.write(data)
            await writer.drain()

    # -- Component ----------------------------------------------------------------------

    async def run(self, progress: Progress) -> None:
        """Serve until cancelled."""
        await self.start()
        try:
            while True:
                progress()
                await asyncio.sleep(BEAT_S)
        finally:
            await self.stop()

    def health(self) -> ComponentHealth:
        """Socket path and counters."""
        return ComponentHealth(
            self._server is not None,
            {
                "path": str(self.path),
                "clients": len(self._writers),
                "requests": self.requests,
                "rejected": self.rejected,
                "bad_requests": self.bad_requests,
                "errors": self.errors,
            },
        )

    def apply_config(self, cfg: AppConfig) -> bool:
        """A new state directory moves the socket: restart needed."""
        return cfg.state_dir / "control.sock" != self.path


async def _skip_line(reader: asyncio.StreamReader, consumed: int) -> bool:
    """Discard the rest of an over-long line; False when the peer closed first."""
    try:
        await reader.readexactly(consumed)
        while True:
            try:
                await reader.readuntil(b"\n")
                return True
            except asyncio.LimitOverrunError as exc:
                await reader.readexactly(exc.consumed)
    except asyncio.IncompleteReadError:
        return False


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _BadRequest(None, f"duplicate key {key!r}")
        out[key] = value
    return out


def _parse(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """Split a request line into ``(id, method, args)`` or raise ``_BadRequest``."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRequest(None, f"not UTF-8 text (byte {exc.start})") from None
    try:
        req = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise _BadRequest(None, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(req, dict):
        raise _BadRequest(None, "a request must be a JSON object")
    rid = req.get("id")
    if not isinstance(rid, _SCALARS):
        raise _BadRequest(None, "id must be a JSON scalar (string, number, boolean or null)")
    if "method" not in req:
        raise _BadRequest(rid, "missing method")
    method = req["method"]
    if not isinstance(method, str) or not method:
        raise _BadRequest(rid, "method must be a non-empty string")
    args = req.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise _BadRequest(rid, "args must be a JSON object")
    return rid, method, args


def request(
    path: Path, method: str, args: dict[str, Any] | None = None, timeout: float = 5.0
) -> dict[str, Any]:
    """Blocking client for the CLI: send one request, return its ``result``.

    Raises ``ControlError``: no daemon, permission denied, no answer within ``timeout``
    seconds, a garbled answer, or the daemon's refusal (then ``code`` is set).
    """
    path = Path(path)
    rid = os.getpid()
    line = json.dumps({"id": rid, "method": method, "args": args or {}}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
        except TimeoutError:
            raise ControlError(f"no answer from {path} within {timeout:g} s") from None
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"no daemon listening at {path} (is shelfedge running?)") from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {path} (run as the shelfedge user or root)"
            ) from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(line)
            raw = _recv_line(sock)
        except TimeoutError:
            raise ControlError(
                f"no answer from {path} within {timeout:g} s (daemon busy or stuck?)"
            ) from None
        except OSError as exc:
            raise ControlError(f"connection to {path} failed: {exc.strerror or exc}") from None
    if not raw:
        raise ControlError(f"the daemon at {path} closed the connection without answering")
    try:
        resp = json.loads(raw)
    except ValueError:
        raise ControlError(f"the answer from {path} is not JSON") from None
    if not isinstance(resp, dict):
        raise ControlError(f"the answer from {path} is not a JSON object")
    if resp.get("ok") is not True:
        err = resp.get("error")
        err = err if isinstance(err, dict) else {}
        code = str(err.get("code") or "error")
        raise ControlError(f"the daemon answered {code}: {err.get('message', '')}", code=code)
    if resp.get("id") != rid:
        raise ControlError(f"the answer from {path} is for another request")
    result = resp.get("result")
    if not isinstance(result, dict):
        raise ControlError(f"the answer from {path} has no result object")
    return result


def _recv_line(sock: socket.socket) -> bytes:
    """Read up to the first newline (or EOF); refuse answers over ``RESPONSE_LIMIT``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk:
            break
        if size > RESPONSE_LIMIT:
            raise ControlError(f"the daemon's answer is longer than {RESPONSE_LIMIT} bytes")
    return b"".join(chunks).split(b"\n", 1)[0]
