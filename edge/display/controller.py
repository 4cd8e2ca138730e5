"""The display controller: a render thread that owns pygame, fed by a bounded message queue.

The asyncio daemon never touches pygame: ``show_offer``, ``set_online``, ``set_campaigns`` and
``show_message`` only put a small message on a bounded queue (when full the oldest message is
dropped and counted), and return at once. The render thread imports pygame, opens the panel,
and then, at ``display.fps``, drains the queue, asks the ``Director`` which scene to show,
lets the ``SceneRenderer`` redraw only what changed and presents those rectangles; in steady
state it draws nothing. ``snapshot`` is the one blocking call (the daemon runs it in a worker
thread): the request is served after the next frame, so it shows every message sent before it.
Content errors fall back to the default slide and are counted; an error that escapes a frame
is recorded, and after repeated ones the thread stops with the error kept in ``health()``
(restart-on-crash belongs to the supervisor, see issue 6). pygame is process-global, so only
one controller may run at a time.
"""

from __future__ import annotations

import array
import contextlib
import logging
import os
import queue
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from edge.display.errors import DisplayError

if TYPE_CHECKING:
    from edge.config.models import AppConfig, Campaign
    from edge.display.panel import Panel
    from edge.display.scenes import SceneRenderer
    from edge.display.state import Director
    from edge.events import OfferCue

_LOGGER = logging.getLogger(__name__)

QUEUE_SIZE = 64
START_TIMEOUT_S = 15.0
MAX_CONSECUTIVE_FRAME_ERRORS = 30
_RING = 512

# pygame (SDL video, fonts) is process-global: one render thread at a time.
_ACTIVE = threading.Lock()


@dataclass(frozen=True, slots=True)
class _ShowOffer:
    cue: OfferCue


@dataclass(frozen=True, slots=True)
class _SetOnline:
    online: bool


@dataclass(frozen=True, slots=True)
class _SetCampaigns:
    campaigns: tuple[Campaign, ...]


@dataclass(frozen=True, slots=True)
class _ShowMessage:
    text: str
    seconds: float


@dataclass(frozen=True, slots=True)
class _ShowTestPattern:
    seconds: float


_Message = _ShowOffer | _SetOnline | _SetCampaigns | _ShowMessage | _ShowTestPattern


@dataclass(slots=True)
class _SnapshotRequest:
    path: Path
    raw: bool
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class _Stats:
    """Counters written by the render thread, read (unlocked, best effort) by ``health``."""

    __slots__ = (
        "content_errors",
        "crashed",
        "driver",
        "frame_errors",
        "frame_ms",
        "frames",
        "last_error",
        "last_frame_ms",
        "last_redraw_ms",
        "redraws",
        "scene",
    )

    def __init__(self) -> None:
        self.frames = 0
        self.redraws = 0
        self.last_frame_ms = 0.0
        self.last_redraw_ms = 0.0
        self.frame_ms = array.array("d", bytes(8 * _RING))
        self.content_errors = 0
        self.frame_errors = 0
        self.last_error: str | None = None
        self.crashed: str | None = None
        self.scene = ""
        self.driver = ""


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class DisplayController:
    """Thread-safe front of the shelf screen; see the module docstring."""

    def __init__(
        self,
        cfg: AppConfig,
        *,
        clock: Callable[[], float] = time.time,
        windowed: bool | None = None,
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._windowed = windowed
        self._queue: queue.Queue[_Message] = queue.Queue(maxsize=QUEUE_SIZE)
        self._post_lock = threading.Lock()
        self._dropped = 0
        self._snap_lock = threading.Lock()
        self._snaps: list[_SnapshotRequest] = []
        self._closed = False
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._life_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._online = True
        self._stats = _Stats()

    # -- public API (any thread) -----------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the render thread; returns once the first frame is on screen."""
        if not os.environ.get("XDG_RUNTIME_DIR"):
            # SDL complains on stderr without one (a technician reads it as a fault); systemd
            # sets it through RuntimeDirectory, a shell over SSH or the demo may not.
            os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="shelfedge-xdg-")
        with self._life_lock:
            if self._thread is not None:
                if self._thread.is_alive():
                    return
                raise DisplayError("a stopped DisplayController cannot restart; make a new one")
            if not _ACTIVE.acquire(blocking=False):
                raise DisplayError("another DisplayController is running in this process")
            thread = threading.Thread(target=self._run, name="shelfedge-display", daemon=True)
            self._thread = thread
            try:
                thread.start()
            except BaseException:
                _ACTIVE.release()
                raise
        if not self._ready.wait(timeout):
            self.stop()
            raise DisplayError(f"display did not render a first frame within {timeout:.1f} s")
        if self._startup_error is not None:
            thread.join(timeout)
            raise DisplayError(f"display failed to start: {self._startup_error}") from (
                self._startup_error
            )
        if not thread.is_alive() and self._stats.crashed:
            raise DisplayError(f"display thread died: {self._stats.crashed}")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join the render thread (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                _LOGGER.warning("display thread did not stop within %.1f s", timeout)

    def show_offer(self, cue: OfferCue) -> None:
        """Show the zone offer cue for ``display.offer_cue_s`` (or until it expires)."""
        self._post(_ShowOffer(cue))

    def set_online(self, online: bool) -> None:
        """Show (False) or hide (True) the offline badge."""
        self._post(_SetOnline(bool(online)))

    def set_campaigns(self, campaigns: list[Campaign]) -> None:
        """Replace the campaign catalogue; the playlist restarts from its first slide."""
        self._post(_SetCampaigns(tuple(campaigns)))

    def show_message(self, text: str, seconds: float) -> None:
        """Override every scene with ``text`` for ``seconds`` (empty text or 0 s clears)."""
        self._post(_ShowMessage(str(text), float(seconds)))

    def show_test_pattern(self, seconds: float) -> None:
        """Colour bars, resolution and an "up" arrow over everything for ``seconds``."""
        self._post(_ShowTestPattern(float(seconds)))

    def snapshot(self, path: Path, timeout: float = 5.0, *, raw: bool = False) -> Path:
        """Write the current frame as PNG to ``path`` and return it (blocks up to ``timeout``).

        The frame is upright (as a shopper sees it); ``raw=True`` writes the panel's
        framebuffer as scanned out, i.e. rotated by ``display.rotation``.
        """
        req = _SnapshotRequest(Path(path), raw)
        with self._snap_lock:
            if self._closed or not self.alive:
                raise DisplayError("display is not running")
            self._snaps.append(req)
        if not req.done.wait(timeout):
            with self._snap_lock:
                if req in self._snaps:
                    self._snaps.remove(req)
            raise DisplayError(f"snapshot not written within {timeout:.1f} s")
        if req.error is not None:
            raise DisplayError(f"snapshot failed: {req.error}") from req.error
        return req.path

    @property
    def alive(self) -> bool:
        """True while the render thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def health(self) -> dict[str, Any]:
        """Render statistics and errors, for the device state and ``doctor``."""
        s = self._stats
        n = min(s.frames, _RING)
        recent = list(s.frame_ms[:n])
        d = self._cfg.display
        return {
            "alive": self.alive,
            "driver": s.driver,
            "size": [d.width, d.height],
            "rotation": d.rotation,
            "fps": d.fps,
            "scene": s.scene,
            "online": self._online,
            "frames": s.frames,
            "redraws": s.redraws,
            "last_frame_ms": round(s.last_frame_ms, 3),
            "frame_ms_p50": round(_percentile(recent, 0.5), 3),
            "frame_ms_p99": round(_percentile(recent, 0.99), 3),
            "last_redraw_ms": round(s.last_redraw_ms, 3),
            "queued_messages": self._queue.qsize(),
            "dropped_messages": self._dropped,
            "content_errors": s.content_errors,
            "frame_errors": s.frame_errors,
            "last_error": s.last_error,
            "crashed": s.crashed,
        }

    # -- producer side ---------------------------------------------------------------------

    def _post(self, msg: _Message) -> None:
        with self._post_lock:
            try:
                self._queue.put_nowait(msg)
                return
            except queue.Full:
                pass
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            self._dropped += 1
            self._queue.put_nowait(msg)
        _LOGGER.debug("display queue full; dropped the oldest message")

    # -- render thread ---------------------------------------------------------------------

    def _record_content_error(self, msg: str) -> None:
        self._stats.content_errors += 1
        self._stats.last_error = msg

    def _run(self) -> None:
        try:
            import pygame

            from edge.display.panel import Panel
            from edge.display.scenes import SceneRenderer
            from edge.display.state import Director

            d = self._cfg.display
            tz = ZoneInfo(self._cfg.timezone)
            pygame.font.init()
            panel = Panel(
                d.width, d.height, d.rotation, fullscreen=d.fullscreen, windowed=self._windowed
            )
        except BaseException as exc:
            self._startup_error = exc
            _LOGGER.exception("display failed to start")
            self._finish(None, None)
            return
        renderer: SceneRenderer | None = None
        try:
            self._stats.driver = panel.driver
            renderer = SceneRenderer(
                panel.logical,
                notice_en=d.privacy_notice.en,
                notice_de=d.privacy_notice.de,
                tz=tz,
                store_name=self._cfg.store.name,
                on_error=self._record_content_error,
                rotation=d.rotation,
            )
            director = Director(
                self._cfg.campaigns,
                tz=tz,
                slide_s=d.slide_s,
                offer_cue_s=d.offer_cue_s,
                on_error=self._record_content_error,
            )
            self._loop(panel, renderer, director, 1.0 / d.fps)
        except BaseException as exc:
            self._stats.crashed = f"{exc!r}"
            self._stats.last_error = "".join(traceback.format_exception_only(exc)).strip()
            _LOGGER.exception("display thread crashed")
        finally:
            self._finish(panel, renderer)

    def _loop(
        self, panel: Panel, renderer: SceneRenderer, director: Director, period: float
    ) -> None:
        stats = self._stats
        consecutive = 0
        next_t = time.monotonic()
        while not self._stop.is_set():
            t0 = time.perf_counter()
            snaps = self._take_snapshots()
            try:
                redrew = self._frame(panel, renderer, director)
                consecutive = 0
            except Exception as exc:
                consecutive += 1
                stats.frame_errors += 1
                stats.last_error = f"frame failed: {exc!r}"
                _LOGGER.exception("display frame failed")
                if consecutive >= MAX_CONSECUTIVE_FRAME_ERRORS:
                    raise
                redrew = False
            if snaps:
                self._serve_snapshots(panel, snaps)
            ms = (time.perf_counter() - t0) * 1000.0
            stats.frame_ms[stats.frames % _RING] = ms
            stats.last_frame_ms = ms
            if redrew:
                stats.redraws += 1
                stats.last_redraw_ms = ms
            stats.frames += 1
            if not self._ready.is_set():
                self._ready.set()
            next_t += period
            now = time.monotonic()
            if next_t < now - period:
                next_t = now  # fell behind: skip frames rather than burst
            self._stop.wait(max(0.0, next_t - now))

    def _frame(self, panel: Panel, renderer: SceneRenderer, director: Director) -> bool:
        now_mono, now_wall = time.monotonic(), self._clock()
        while self._queue.qsize():
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                break
            self._apply(director, msg, now_mono, now_wall)
        panel.pump()
        scene = director.tick(now_mono, now_wall)
        rects = renderer.frame(scene, director.online, now_wall)
        if not rects:
            return False
        panel.present(rects)
        self._stats.scene = scene.name
        return True

    def _apply(self, director: Director, msg: _Message, now_mono: float, now_wall: float) -> None:
        if isinstance(msg, _ShowOffer):
            director.show_offer(msg.cue, now_mono, now_wall)
        elif isinstance(msg, _SetOnline):
            director.online = msg.online
            self._online = msg.online
        elif isinstance(msg, _SetCampaigns):
            director.set_campaigns(msg.campaigns)
        elif isinstance(msg, _ShowMessage):
            director.show_message(msg.text, msg.seconds, now_mono)
        elif isinstance(msg, _ShowTestPattern):
            director.show_test_pattern(msg.seconds, now_mono)

    def _take_snapshots(self) -> list[_SnapshotRequest] | None:
        if not self._snaps:
            return None
        with self._snap_lock:
            taken, self._snaps = self._snaps, []
        return taken

    def _serve_snapshots(self, panel: Panel, snaps: list[_SnapshotRequest]) -> None:
        for req in snaps:
            try:
                panel.save(req.path, raw=req.raw)
            except Exception as exc:
                req.error = exc
                _LOGGER.warning("snapshot to %s failed: %r", req.path, exc)
            finally:
                req.done.set()

    def _finish(self, panel: Panel | None, renderer: SceneRenderer | None) -> None:
        with self._snap_lock:
            self._closed = True
            pending, self._snaps = self._snaps, []
        for req in pending:
            req.error = DisplayError("display stopped")
            req.done.set()
        try:
            if renderer is not None:
                renderer.close()
            if panel is not None:
                panel.close()
            import pygame

            pygame.font.quit()
        except Exception:
            _LOGGER.exception("display cleanup failed")
        finally:
            self._ready.set()
            _ACTIVE.release()
