"""The physical panel: video driver, display surface, rotation and PNG snapshots.

Scenes draw on a logical, upright surface (portrait for rotation 90/270). With rotation 0 and
a display, that surface *is* the display surface; otherwise each dirty rectangle is rotated
(``rotation`` is the clockwise angle of the picture on the panel, multiples of 90° are exact)
onto the framebuffer and only those rectangles are pushed with ``pygame.display.update``.
Without a usable video driver (or with ``windowed=False``) the framebuffer is a plain offscreen
surface, so the renderer, snapshots and tests work the same headless. Must be used only from
the render thread that created it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pygame

from edge.display.errors import DisplayError

_LOGGER = logging.getLogger(__name__)

HEADLESS_DRIVERS = frozenset({"dummy", "offscreen"})


class Panel:
    """Owns the display (or an offscreen framebuffer) and the logical drawing surface."""

    def __init__(
        self,
        width: int,
        height: int,
        rotation: int,
        *,
        fullscreen: bool,
        windowed: bool | None,
    ) -> None:
        if rotation not in (0, 90, 180, 270):
            raise DisplayError(f"rotation must be 0, 90, 180 or 270, not {rotation}")
        self.width, self.height, self.rotation = width, height, rotation
        self.display: pygame.Surface | None = self._open(width, height, fullscreen, windowed)
        self.driver = pygame.display.get_driver() if self.display is not None else "offscreen"
        self.framebuffer = (
            self.display if self.display is not None else pygame.Surface((width, height))
        )
        if rotation == 0:
            self.logical = self.framebuffer
        else:
            size = (height, width) if rotation in (90, 270) else (width, height)
            self.logical = pygame.Surface(size)
        _LOGGER.info("display %dx%d rotation %d on driver %s", width, height, rotation, self.driver)

    @staticmethod
    def _open(
        width: int, height: int, fullscreen: bool, windowed: bool | None
    ) -> pygame.Surface | None:
        if windowed is False:
            return None
        try:
            pygame.display.init()
        except pygame.error as exc:
            if windowed:
                raise DisplayError(f"no video driver: {exc}") from exc
            _LOGGER.warning("no video driver (%s); rendering offscreen", exc)
            return None
        driver = pygame.display.get_driver()
        headless = driver in HEADLESS_DRIVERS
        if windowed and headless:
            pygame.display.quit()
            raise DisplayError(f"a window was asked for but the video driver is {driver!r}")
        flags = pygame.FULLSCREEN if fullscreen and not headless else 0
        try:
            surface = pygame.display.set_mode((width, height), flags)
        except pygame.error as exc:
            pygame.display.quit()
            if windowed:
                raise DisplayError(f"cannot open {width}x{height} on {driver}: {exc}") from exc
            _LOGGER.warning("cannot open display on %s (%s); rendering offscreen", driver, exc)
            return None
        pygame.display.set_caption("ShelfEdge")
        if not headless:
            pygame.mouse.set_visible(False)
        pygame.event.set_blocked(None)
        pygame.event.set_allowed([pygame.QUIT])
        return surface

    def _to_panel(self, r: pygame.Rect) -> pygame.Rect:
        lw, lh = self.logical.get_size()
        if self.rotation == 90:
            return pygame.Rect(lh - r.y - r.h, r.x, r.h, r.w)
        if self.rotation == 180:
            return pygame.Rect(lw - r.x - r.w, lh - r.y - r.h, r.w, r.h)
        if self.rotation == 270:
            return pygame.Rect(r.y, lw - r.x - r.w, r.h, r.w)
        return r

    def present(self, rects: Sequence[pygame.Rect]) -> None:
        """Push the dirty logical rectangles to the panel."""
        if not rects:
            return
        if self.rotation:
            panel_rects = [self._to_panel(r) for r in rects]
            for r, pr in zip(rects, panel_rects, strict=True):
                turned = pygame.transform.rotate(self.logical.subsurface(r), -self.rotation)
                self.framebuffer.blit(turned, pr)
            if self.display is not None:
                pygame.display.update(panel_rects)
        elif self.display is not None:
            pygame.display.update(rects)

    def pump(self) -> None:
        """Keep the window responsive; a close request is logged, the daemon owns lifetime."""
        if self.display is None:
            return
        pygame.event.pump()
        if pygame.event.peek():
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    _LOGGER.info("window close requested; ignored (stop the daemon instead)")

    def save(self, path: Path, *, raw: bool = False) -> Path:
        """Write the upright frame (or, ``raw``, the panel's framebuffer) as PNG, atomically."""
        surface = self.framebuffer if raw else self.logical
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=".snapshot-", suffix=".png", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as fh:
                pygame.image.save(surface, fh, "snapshot.png")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def close(self) -> None:
        """Close the display (if one was opened)."""
        if self.display is not None:
            self.display = None
            pygame.display.quit()
