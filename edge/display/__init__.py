"""The shelf screen: a pygame renderer in its own thread, driven by thread-safe messages.

``DisplayController`` is the whole public surface: the daemon builds it from the appliance
config, calls ``start()``, then sends it offers, campaign catalogues, online state and priority
messages; ``snapshot()`` writes the current frame as PNG. Importing this package is cheap and
does not import pygame: pygame, fonts and the video driver are loaded inside the render thread
when it starts, so ``import edge`` stays light and headless tools never touch SDL.
"""

from __future__ import annotations

import os

# pygame prints a banner on import unless told not to; the display never prints.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from edge.display.controller import DisplayController
from edge.display.errors import DisplayError

__all__ = ["DisplayController", "DisplayError"]
