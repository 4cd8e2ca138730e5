"""``shelfedge fleet report`` (placeholder until the report lands)."""

from __future__ import annotations

from typing import Any


def add_report_parser(fsub: Any) -> None:
    """Register ``fleet report``."""
