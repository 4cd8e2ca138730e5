"""Daemon core: the ``Application`` that owns and wires every stage, clocks, and the demo.

``app`` holds the lifecycle (start, SIGTERM stop with window flush, SIGHUP reload that keeps
the running config when the new one is invalid) and the device state; ``demo`` drives it with
the store simulator and scores it against ground truth.
"""

from edge.daemon.app import Application, Features
from edge.daemon.clock import Clock, SimClock, SystemClock

__all__ = ["Application", "Clock", "Features", "SimClock", "SystemClock"]
