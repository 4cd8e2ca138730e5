"""QR codes for the screen: segno's module matrix drawn as a crisp pygame surface.

The code is made with segno (QR, never Micro QR; error correction M, boosted when the version
has room) and drawn one pixel per module with a quiet zone of four modules, then scaled up by
an integer factor with nearest-neighbour scaling, so every module is an exact square of pure
black or white: what phone cameras and zbar read best. Only public URLs are ever encoded
(campaign pages, the coupon's public link); the offer cue carries nothing about a person.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import pygame
import segno

_LOGGER = logging.getLogger(__name__)

QUIET_ZONE = 4
ERROR_LEVEL = "m"
DARK = (0, 0, 0)
LIGHT = (255, 255, 255)


def qr_matrix(url: str) -> npt.NDArray[np.bool_]:
    """The symbol's modules (rows × columns, True = dark), without the quiet zone."""
    code = segno.make(url, error=ERROR_LEVEL, micro=False)
    return np.array([list(row) for row in code.matrix], dtype=bool)


def qr_modules(url: str) -> int:
    """Side of the symbol in modules including the quiet zone."""
    return int(qr_matrix(url).shape[0]) + 2 * QUIET_ZONE


def qr_surface(url: str, module_px: int) -> pygame.Surface:
    """The QR code of ``url`` with its quiet zone, ``module_px`` pixels per module."""
    module_px = max(1, module_px)
    padded = np.pad(qr_matrix(url), QUIET_ZONE, constant_values=False)
    rgb = np.where(padded[..., None], np.array(DARK, np.uint8), np.array(LIGHT, np.uint8))
    small = pygame.surfarray.make_surface(np.ascontiguousarray(rgb.transpose(1, 0, 2)))
    side = padded.shape[0] * module_px
    return pygame.transform.scale(small, (side, side))


def module_px_for(url: str, box_side: int) -> int:
    """Largest whole module size at which the code (with quiet zone) fits ``box_side``."""
    return max(1, box_side // qr_modules(url))
