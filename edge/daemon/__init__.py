"""Daemon core: the composition root, the supervisor, the device service, clocks, the demo.

``app`` builds the parts and routes events between them; ``supervisor`` owns every
component's task (restart with backoff, watchdog); ``service`` is the one way to change the
running appliance (control socket, commands, demo); ``state`` builds the published state and
the local status; ``demo`` drives it all with the store simulator and scores it against
ground truth. Import the modules directly (``edge.daemon.app``); this package imports
only the clocks eagerly, so a part can be used without pulling in the whole daemon.
"""

from typing import Any

from edge.daemon.clock import Clock, SimClock, SystemClock

__all__ = ["Application", "Clock", "Features", "SimClock", "SystemClock"]


def __getattr__(name: str) -> Any:
    """``Application`` and ``Features`` load on first use (they pull in every stage)."""
    if name in ("Application", "Features"):
        from edge.daemon import app

        return getattr(app, name)
    raise AttributeError(f"module 'edge.daemon' has no attribute {name!r}")
