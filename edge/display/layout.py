"""Screen geometry: where the privacy band, the content, the badges and the body text go.

All rectangles are in logical (upright) coordinates, i.e. after rotation: a 1920×1080 panel
mounted at 90° is laid out as 1080×1920 portrait. The privacy band is a full-width strip at
the bottom (12 % of the height in landscape, 10 % in portrait, never under 28 px); the content
area is everything above it; the offline badge and the clock sit in the content's top corners
on a status strip that body text never enters.
"""

from __future__ import annotations

from dataclasses import dataclass

import pygame

BAND_SHARE_LANDSCAPE = 0.12
BAND_SHARE_PORTRAIT = 0.10
BAND_MIN_PX = 28


@dataclass(frozen=True, slots=True)
class Layout:
    """Rectangles of one logical screen size."""

    width: int
    height: int
    portrait: bool
    margin: int
    band: pygame.Rect
    content: pygame.Rect
    badge: pygame.Rect
    clock: pygame.Rect
    body: pygame.Rect


def band_height(width: int, height: int) -> int:
    """Height of the privacy band for a logical screen of this size."""
    share = BAND_SHARE_PORTRAIT if height > width else BAND_SHARE_LANDSCAPE
    return min(height // 2, max(BAND_MIN_PX, round(height * share)))


def make_layout(width: int, height: int) -> Layout:
    """The layout of a logical (already rotated) screen of ``width`` × ``height`` px."""
    portrait = height > width
    short = min(width, height)
    margin = max(4, round(short * 0.04))
    bh = band_height(width, height)
    band = pygame.Rect(0, height - bh, width, bh)
    content = pygame.Rect(0, 0, width, height - bh)
    strip = max(14, round(short * 0.06))
    badge = pygame.Rect(margin, margin, min(width // 2 - margin, round(strip * 4.2)), strip)
    clock_w = min(width // 2 - margin, round(strip * 3.0))
    clock = pygame.Rect(width - margin - clock_w, margin, clock_w, strip)
    top = margin + strip + margin // 2
    body = pygame.Rect(margin, top, width - 2 * margin, max(0, content.h - top - margin))
    return Layout(width, height, portrait, margin, band, content, badge, clock, body)
