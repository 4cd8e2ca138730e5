"""Text for the shelf screen: word wrap, fit-to-box, and caches for fonts and rendered lines.

``Typesetter`` owns one pygame font per size (pygame's bundled default font, freesansbold,
unless a font file is given), a byte-bounded LRU of rendered line surfaces keyed by text, size
and colours, and a memo of fit results, so redrawing a scene it has shown before renders no
glyphs. ``fit`` finds the largest size at which the paragraphs, wrapped at word boundaries
(over-long words broken by character), fit the box; when even the minimum size does not fit,
the text is cut at the last whole line with "...". ``draw`` additionally clips every blit to
the box, so text can never paint outside it, whatever the font metrics say.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pygame

_LOGGER = logging.getLogger(__name__)

Colour = tuple[int, int, int]
Align = Literal["left", "center"]
ELLIPSIS = "..."  # freesansbold has no U+2026
MIN_SIZE = 8


@dataclass(frozen=True, slots=True)
class Fitted:
    """Paragraphs laid out in a box: font size, (y offset, line) pairs and the used height."""

    size: int
    lines: tuple[tuple[int, str], ...]
    height: int
    truncated: bool


class FontCache:
    """One ``pygame.font.Font`` per pixel size, created on first use and kept (LRU-bounded)."""

    def __init__(self, path: str | None = None, max_fonts: int = 48) -> None:
        self._path = path
        self._max = max_fonts
        self._fonts: OrderedDict[int, pygame.font.Font] = OrderedDict()

    def get(self, size: int) -> pygame.font.Font:
        """The font at ``size`` px."""
        font = self._fonts.get(size)
        if font is None:
            font = pygame.font.Font(self._path, size)
            self._fonts[size] = font
            if len(self._fonts) > self._max:
                self._fonts.popitem(last=False)
        else:
            self._fonts.move_to_end(size)
        return font

    def clear(self) -> None:
        """Drop every font (before ``pygame.font.quit``)."""
        self._fonts.clear()


def _longest_prefix(font: pygame.font.Font, word: str, width: int) -> int:
    """Length of the longest prefix of ``word`` that fits ``width`` (at least 1)."""
    lo, hi = 1, len(word)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.size(word[:mid])[0] <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def wrap(font: pygame.font.Font, text: str, width: int) -> list[str]:
    """Greedy word wrap of ``text`` to ``width`` px; newlines are hard breaks."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        current = ""
        for raw_word in para.split():
            word = raw_word
            while len(word) > 1 and font.size(word)[0] > width:
                if current:
                    lines.append(current)
                    current = ""
                cut = _longest_prefix(font, word, width)
                lines.append(word[:cut])
                word = word[cut:]
            candidate = f"{current} {word}" if current else word
            if not current or font.size(candidate)[0] <= width:
                current = candidate
            else:
                lines.append(current)
                current = word
        if current:
            lines.append(current)
    return lines


def _line_height(font: pygame.font.Font) -> int:
    return max(font.get_linesize(), font.get_height())


def _layout(
    font: pygame.font.Font, paragraphs: Sequence[str], width: int
) -> tuple[list[tuple[int, str]], int]:
    lh = _line_height(font)
    gap = lh // 3
    y = 0
    out: list[tuple[int, str]] = []
    for i, para in enumerate(paragraphs):
        if i and out:
            y += gap
        for line in wrap(font, para, width):
            out.append((y, line))
            y += lh
    return out, y


def _fits(font: pygame.font.Font, lines: list[tuple[int, str]], used: int, w: int, h: int) -> bool:
    return used <= h and all(font.size(line)[0] <= w for _, line in lines)


def _truncate(
    font: pygame.font.Font, lines: list[tuple[int, str]], w: int, h: int
) -> list[tuple[int, str]]:
    """The lines that fit ``h`` (a prefix, as y grows); the last kept one ends in "..."."""
    lh = _line_height(font)
    kept = [(y, line if font.size(line)[0] <= w else "") for y, line in lines if y + lh <= h]
    if kept and len(kept) < len(lines):
        y, last = kept[-1]
        text = last.rstrip() + ELLIPSIS
        while len(text) > len(ELLIPSIS) and font.size(text)[0] > w:
            text = text[: -len(ELLIPSIS) - 1].rstrip() + ELLIPSIS
        kept[-1] = (y, text if font.size(text)[0] <= w else "")
    return kept


def fit(
    fonts: FontCache,
    paragraphs: Sequence[str],
    width: int,
    height: int,
    *,
    max_size: int,
    min_size: int = MIN_SIZE,
) -> Fitted:
    """Largest font size (``min_size``..``max_size``) at which ``paragraphs`` fit the box."""
    if width <= 0 or height <= 0:
        return Fitted(min_size, (), 0, bool(any(p.strip() for p in paragraphs)))
    hi = max(min_size, min(max_size, height))
    lo = min_size
    best: tuple[int, list[tuple[int, str]], int] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        font = fonts.get(mid)
        lines, used = _layout(font, paragraphs, width)
        if _fits(font, lines, used, width, height):
            best = (mid, lines, used)
            lo = mid + 1
        else:
            hi = mid - 1
    if best is not None:
        size, lines, used = best
        return Fitted(size, tuple(lines), used, False)
    font = fonts.get(min_size)
    lines, _ = _layout(font, paragraphs, width)
    cut = _truncate(font, lines, width, height)
    used = (cut[-1][0] + _line_height(font)) if cut else 0
    return Fitted(min_size, tuple(cut), used, True)


class Typesetter:
    """Fonts, a fit memo and an LRU of rendered lines (bounded by bytes), for one thread."""

    def __init__(self, font_path: str | None = None, max_bytes: int = 48 << 20) -> None:
        self.fonts = FontCache(font_path)
        self._surfaces: OrderedDict[tuple[str, int, Colour, Colour], pygame.Surface] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._fits: OrderedDict[tuple[tuple[str, ...], int, int, int, int], Fitted] = OrderedDict()
        self.renders = 0  # glyph renders so far (cache misses), for tests and health

    def fit(
        self,
        paragraphs: Sequence[str],
        width: int,
        height: int,
        *,
        max_size: int,
        min_size: int = MIN_SIZE,
    ) -> Fitted:
        """Memoised ``fit``."""
        key = (tuple(paragraphs), width, height, max_size, min_size)
        found = self._fits.get(key)
        if found is None:
            found = fit(self.fonts, key[0], width, height, max_size=max_size, min_size=min_size)
            self._fits[key] = found
            if len(self._fits) > 256:
                self._fits.popitem(last=False)
        return found

    def render(self, text: str, size: int, fg: Colour, bg: Colour) -> pygame.Surface:
        """The rendered line (antialiased on an opaque ``bg``), from the cache when possible."""
        key = (text, size, fg, bg)
        surf = self._surfaces.get(key)
        if surf is not None:
            self._surfaces.move_to_end(key)
            return surf
        surf = self.fonts.get(size).render(text, True, fg, bg)
        self.renders += 1
        self._surfaces[key] = surf
        self._bytes += surf.get_pitch() * surf.get_height()
        while self._bytes > self._max_bytes and len(self._surfaces) > 1:
            _, old = self._surfaces.popitem(last=False)
            self._bytes -= old.get_pitch() * old.get_height()
        return surf

    def draw(
        self,
        dest: pygame.Surface,
        box: pygame.Rect,
        fitted: Fitted,
        fg: Colour,
        bg: Colour,
        *,
        align: Align = "left",
        valign: Literal["top", "middle"] = "top",
    ) -> None:
        """Blit ``fitted`` into ``box`` on ``dest``, clipped to the box."""
        top = box.y + (max(0, (box.h - fitted.height) // 2) if valign == "middle" else 0)
        for dy, line in fitted.lines:
            if not line:
                continue
            surf = self.render(line, fitted.size, fg, bg)
            w, h = surf.get_size()
            x = box.x + (max(0, (box.w - w) // 2) if align == "center" else 0)
            y = top + dy
            area = pygame.Rect(0, 0, max(0, min(w, box.right - x)), max(0, min(h, box.bottom - y)))
            if area.w and area.h:
                dest.blit(surf, (x, y), area)

    def clear(self) -> None:
        """Drop every cached font, fit and surface."""
        self._surfaces.clear()
        self._fits.clear()
        self._bytes = 0
        self.fonts.clear()
