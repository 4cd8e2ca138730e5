"""Shared test helpers (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from edge.config import AppConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO_STORE = ROOT / "firmware_configs" / "stores" / "demo-store.yaml"


def demo_config(**updates: object) -> AppConfig:
    """The demo store config, with top-level fields replaced."""
    cfg = load_config(DEMO_STORE)
    return cfg.model_copy(update=updates) if updates else cfg
