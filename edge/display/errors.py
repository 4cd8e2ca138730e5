"""Errors of the shelf display.

``DisplayError`` is both a ``ShelfEdgeError`` (so callers can catch every ShelfEdge error by
meaning) and a ``RuntimeError`` (so generic code that expects a runtime failure from a thread
start or a blocking call still catches it). It is raised when the render thread cannot start,
has died, or does not answer a snapshot in time.
"""

from __future__ import annotations

from edge.errors import ShelfEdgeError


class DisplayError(ShelfEdgeError, RuntimeError):
    """The display could not start, has stopped, or did not answer in time."""
