"""Drawing the scenes onto the logical surface, with the overlays every scene shares.

``SceneRenderer.frame`` compares the scene, the online flag and the clock's minute with what
it drew last and redraws only what changed: a new scene or online state repaints the whole
surface (content, then badge and clock, then the pre-composited privacy band); a new minute
repaints only the clock's opaque pill; otherwise nothing is drawn and no rectangle returned.
Each content drawer (campaign slide, offer cue, message, default slide) works on cached text
and QR surfaces; if one raises (bad colour, absurd text, unencodable URL), the default slide
is drawn instead and the error reported through ``on_error``. The privacy band, with the
English and German notice from config, is drawn last on every full redraw, so no scene can
hide it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pygame

from edge.display.layout import Layout, make_layout
from edge.display.qr import module_px_for, qr_surface
from edge.display.state import Scene, SceneKind
from edge.display.text import Colour, Typesetter

if TYPE_CHECKING:
    from edge.config.models import Campaign
    from edge.events import OfferCue

_LOGGER = logging.getLogger(__name__)

WHITE: Colour = (250, 250, 250)
INK: Colour = (20, 20, 20)
BAND_BG: Colour = (18, 18, 18)
BAND_FG: Colour = (240, 240, 240)
DEFAULT_BG: Colour = (22, 44, 66)
OFFER_BG: Colour = (255, 196, 0)
MESSAGE_BG: Colour = (0, 70, 140)
# SMPTE-style bars for the technician test pattern (pure primaries, checkable by pixel).
TEST_BARS: tuple[Colour, ...] = (
    (255, 255, 255),
    (255, 255, 0),
    (0, 255, 255),
    (0, 255, 0),
    (255, 0, 255),
    (255, 0, 0),
    (0, 0, 255),
    (0, 0, 0),
)
BADGE_BG: Colour = (200, 30, 30)
CLOCK_BG: Colour = (30, 30, 30)
QR_LIGHT: Colour = (255, 255, 255)

CUE_EN = "Offer available in your app"
CUE_DE = "Angebot in Ihrer App"
OFFLINE_TEXT = "OFFLINE"

_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def parse_colour(value: object) -> Colour:
    """``"#rrggbb"`` as an RGB tuple; anything else raises ``ValueError``."""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise ValueError(f"colour must be '#rrggbb', got {value!r}")
    return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))


def ink_for(bg: Colour) -> Colour:
    """Dark or light text, whichever contrasts better with ``bg`` (WCAG relative luminance)."""

    def lin(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else float(((s + 0.055) / 1.055) ** 2.4)

    lum = 0.2126 * lin(bg[0]) + 0.7152 * lin(bg[1]) + 0.0722 * lin(bg[2])
    return INK if lum > 0.179 else WHITE


class SceneRenderer:
    """Draws scenes on one logical surface; owns the text and QR caches of the render thread."""

    def __init__(
        self,
        surface: pygame.Surface,
        *,
        notice_en: str,
        notice_de: str,
        tz: dt.tzinfo,
        store_name: str = "",
        on_error: Callable[[str], None] | None = None,
        rotation: int = 0,
    ) -> None:
        self.surface = surface
        self._rotation = rotation
        self.layout: Layout = make_layout(*surface.get_size())
        self.text = Typesetter()
        self._tz = tz
        self._store_name = store_name
        self._on_error = on_error
        self._notice = (notice_en, notice_de)
        self._qr_cache: OrderedDict[tuple[str, int], pygame.Surface] = OrderedDict()
        self._full = [pygame.Rect(0, 0, *surface.get_size())]
        self._clock_rects = [self.layout.clock]
        self._none: list[pygame.Rect] = []
        self._scene: Scene | None = None
        self._online: bool | None = None
        self._clock_text = ""
        self._minute_start = math.inf
        self._minute_end = -math.inf
        self.content_errors = 0
        self.band = self._compose_band()
        self.badge = self._compose_badge()
        self._drawers: dict[SceneKind, Callable[[Scene], None]] = {
            SceneKind.DEFAULT: self._draw_default,
            SceneKind.CAMPAIGN: self._draw_campaign,
            SceneKind.OFFER: self._draw_offer,
            SceneKind.MESSAGE: self._draw_message,
            SceneKind.TEST_PATTERN: self._draw_test_pattern,
        }

    # -- per frame -------------------------------------------------------------------------

    def frame(self, scene: Scene, online: bool, now_wall: float) -> Sequence[pygame.Rect]:
        """Redraw what changed; returns the dirty rectangles (empty in steady state)."""
        clock_changed = self._update_clock(now_wall)
        if scene is not self._scene or online is not self._online:
            self.draw_full(scene, online)
            return self._full
        if clock_changed:
            self._draw_clock()
            return self._clock_rects
        return self._none

    def draw_full(self, scene: Scene, online: bool) -> None:
        """Repaint everything: content (with fallback), badge, clock, privacy band."""
        self._scene = scene
        self._online = online
        self._draw_content(scene)
        if not online:
            self.surface.blit(self.badge, self.layout.badge)
        self._draw_clock()
        self.surface.blit(self.band, self.layout.band)

    def _update_clock(self, now_wall: float) -> bool:
        if self._minute_start <= now_wall < self._minute_end:
            return False
        local = dt.datetime.fromtimestamp(now_wall, self._tz)
        start = now_wall - local.second - local.microsecond / 1e6
        self._minute_start, self._minute_end = start, start + 60.0
        text = local.strftime("%H:%M")
        if text == self._clock_text:
            return False
        self._clock_text = text
        return True

    # -- overlays --------------------------------------------------------------------------

    def _compose_band(self) -> pygame.Surface:
        lay = self.layout
        band = pygame.Surface(lay.band.size)
        band.fill(BAND_BG)
        pad_y = max(2, lay.band.h // 12)
        inner = pygame.Rect(lay.margin, pad_y, lay.band.w - 2 * lay.margin, lay.band.h - 2 * pad_y)
        max_size = max(8, round(min(lay.width, lay.height) * 0.035))
        if lay.portrait:
            fitted = self.text.fit(self._notice, inner.w, inner.h, max_size=max_size)
            self.text.draw(band, inner, fitted, BAND_FG, BAND_BG, valign="middle")
            self._check_notice(fitted.truncated)
            return band
        gap = lay.margin
        col_w = (inner.w - gap) // 2
        cols = [pygame.Rect(inner.x, inner.y, col_w, inner.h)]
        cols.append(pygame.Rect(inner.x + col_w + gap, inner.y, col_w, inner.h))
        size = min(
            self.text.fit([p], col.w, col.h, max_size=max_size).size
            for p, col in zip(self._notice, cols, strict=True)
        )
        truncated = False
        for p, col in zip(self._notice, cols, strict=True):
            fitted = self.text.fit([p], col.w, col.h, max_size=size, min_size=min(size, 8))
            self.text.draw(band, col, fitted, BAND_FG, BAND_BG, valign="middle")
            truncated = truncated or fitted.truncated
        self._check_notice(truncated)
        return band

    def _check_notice(self, truncated: bool) -> None:
        if truncated:
            msg = "privacy notice does not fit the band even at the smallest size; cut with ..."
            _LOGGER.error("%s", msg)
            if self._on_error is not None:
                self._on_error(msg)

    def _compose_badge(self) -> pygame.Surface:
        rect = self.layout.badge
        badge = pygame.Surface(rect.size)
        badge.fill(BADGE_BG)
        pad = max(1, rect.h // 6)
        inner = pygame.Rect(pad, pad, rect.w - 2 * pad, rect.h - 2 * pad)
        fitted = self.text.fit([OFFLINE_TEXT], inner.w, inner.h, max_size=inner.h)
        self.text.draw(badge, inner, fitted, WHITE, BADGE_BG, align="center", valign="middle")
        return badge

    def _draw_clock(self) -> None:
        rect = self.layout.clock
        self.surface.fill(CLOCK_BG, rect)
        pad = max(1, rect.h // 6)
        inner = rect.inflate(-2 * pad, -2 * pad)
        fitted = self.text.fit([self._clock_text or "--:--"], inner.w, inner.h, max_size=inner.h)
        self.text.draw(
            self.surface, inner, fitted, WHITE, CLOCK_BG, align="center", valign="middle"
        )

    # -- content ---------------------------------------------------------------------------

    def _draw_content(self, scene: Scene) -> None:
        try:
            self._drawers[scene.kind](scene)
        except Exception as exc:
            self.content_errors += 1
            msg = f"scene {scene.name} failed, default slide shown: {exc!r}"
            _LOGGER.warning("%s", msg)
            if self._on_error is not None:
                self._on_error(msg)
            self._draw_default(scene)

    def _qr(self, url: str, side: int) -> pygame.Surface:
        key = (url, side)
        surf = self._qr_cache.get(key)
        if surf is None:
            surf = qr_surface(url, module_px_for(url, side))
            self._qr_cache[key] = surf
            if len(self._qr_cache) > 32:
                self._qr_cache.popitem(last=False)
        return surf

    def _blit_centered(self, surf: pygame.Surface, box: pygame.Rect) -> None:
        self.surface.blit(surf, surf.get_rect(center=box.center))

    def _split(self, share: float) -> tuple[pygame.Rect, pygame.Rect]:
        """Body split into (text box, square media box): media right, or below in portrait."""
        body, m = self.layout.body, self.layout.margin
        if self.layout.portrait:
            side = max(0, min(body.w, round(body.h * share)))
            media = pygame.Rect(body.centerx - side // 2, body.bottom - side, side, side)
            text = pygame.Rect(body.x, body.y, body.w, max(0, body.h - side - m))
        else:
            side = max(0, min(body.h, round(body.w * share)))
            media = pygame.Rect(body.right - side, body.centery - side // 2, side, side)
            text = pygame.Rect(body.x, body.y, max(0, body.w - side - m), body.h)
        return text, media

    def _big(self, share: float) -> int:
        return max(10, round(min(self.layout.width, self.layout.height) * share))

    def _draw_default(self, _scene: Scene | None = None) -> None:
        lay = self.layout
        self.surface.fill(DEFAULT_BG, lay.content)
        body = lay.body
        title = pygame.Rect(body.x, body.y, body.w, body.h * 55 // 100)
        rest = pygame.Rect(body.x, title.bottom, body.w, body.bottom - title.bottom)
        fitted = self.text.fit(["ShelfEdge"], title.w, title.h, max_size=self._big(0.2))
        self.text.draw(
            self.surface, title, fitted, WHITE, DEFAULT_BG, align="center", valign="middle"
        )
        lines = ["Welcome · Willkommen"] + ([self._store_name] if self._store_name else [])
        fitted = self.text.fit(lines, rest.w, rest.h, max_size=self._big(0.07))
        self.text.draw(self.surface, rest, fitted, WHITE, DEFAULT_BG, align="center")

    def _draw_campaign(self, scene: Scene) -> None:
        campaign: Campaign | None = scene.campaign
        if campaign is None:
            raise ValueError("campaign scene without campaign")
        bg = parse_colour(campaign.colour)
        ink = ink_for(bg)
        self.surface.fill(bg, self.layout.content)
        url = campaign.url
        text_box, media = self._split(0.34 if not self.layout.portrait else 0.4)
        if not url:
            text_box = self.layout.body
        head_h = text_box.h * 6 // 10
        head = pygame.Rect(text_box.x, text_box.y, text_box.w, head_h)
        body = pygame.Rect(text_box.x, head.bottom, text_box.w, text_box.h - head_h)
        fitted = self.text.fit([campaign.headline], head.w, head.h, max_size=self._big(0.13))
        self.text.draw(self.surface, head, fitted, ink, bg, valign="middle")
        if campaign.body:
            size = max(8, min(fitted.size * 6 // 10, self._big(0.06)))
            fb = self.text.fit([campaign.body], body.w, body.h, max_size=size)
            self.text.draw(self.surface, body, fb, ink, bg)
        if url and media.w > 0:
            self._blit_centered(self._qr(url, media.w), media)

    def _draw_offer(self, scene: Scene) -> None:
        cue: OfferCue | None = scene.cue
        if cue is None:
            raise ValueError("offer scene without cue")
        self.surface.fill(OFFER_BG, self.layout.content)
        text_box, media = self._split(0.45 if not self.layout.portrait else 0.5)
        cue_h = text_box.h * 35 // 100
        top = pygame.Rect(text_box.x, text_box.y, text_box.w, cue_h)
        head = pygame.Rect(text_box.x, top.bottom, text_box.w, text_box.h - cue_h)
        fitted = self.text.fit([CUE_EN, CUE_DE], top.w, top.h, max_size=self._big(0.07))
        self.text.draw(self.surface, top, fitted, INK, OFFER_BG)
        fitted = self.text.fit([cue.headline], head.w, head.h, max_size=self._big(0.12))
        self.text.draw(self.surface, head, fitted, INK, OFFER_BG, valign="middle")
        if media.w > 0:
            self._blit_centered(self._qr(cue.url, media.w), media)

    def _draw_message(self, scene: Scene) -> None:
        self.surface.fill(MESSAGE_BG, self.layout.content)
        body = self.layout.body
        fitted = self.text.fit([scene.message or ""], body.w, body.h, max_size=self._big(0.12))
        self.text.draw(
            self.surface, body, fitted, WHITE, MESSAGE_BG, align="center", valign="middle"
        )

    def _draw_test_pattern(self, _scene: Scene | None = None) -> None:
        """Technician pattern: 8 colour bars, an arrow to the top of the picture, the size."""
        lay = self.layout
        content = lay.content
        bars = TEST_BARS
        bar_w = max(1, content.w // len(bars))
        bar_h = content.h * 2 // 3
        for i, colour in enumerate(bars):
            w = content.w - bar_w * i if i == len(bars) - 1 else bar_w
            self.surface.fill(colour, pygame.Rect(content.x + bar_w * i, content.y, w, bar_h))
        info = pygame.Rect(content.x, content.y + bar_h, content.w, content.h - bar_h)
        self.surface.fill(DEFAULT_BG, info)
        arrow_h = max(4, info.h * 2 // 3)
        cx, top = info.x + info.h // 2 + lay.margin, info.y + (info.h - arrow_h) // 2
        pygame.draw.polygon(
            self.surface,
            WHITE,
            [(cx, top), (cx - arrow_h // 2, top + arrow_h), (cx + arrow_h // 2, top + arrow_h)],
        )
        label = f"{lay.width}×{lay.height} · rotation {self._rotation}° · ▲ up"
        text = pygame.Rect(cx + arrow_h, info.y, max(1, info.right - cx - arrow_h), info.h)
        fitted = self.text.fit([label], text.w, text.h, max_size=self._big(0.06))
        self.text.draw(self.surface, text, fitted, WHITE, DEFAULT_BG, valign="middle")

    def close(self) -> None:
        """Drop cached fonts and surfaces (call in the render thread before pygame quits)."""
        self.text.clear()
        self._qr_cache.clear()
