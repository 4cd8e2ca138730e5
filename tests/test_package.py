"""Package-level promises: light imports, pinned public names."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pygame", "ai_edge_litert", "tflite_runtime", "bleak", "paho", "sklearn", "matplotlib")


def test_import_edge_and_stages_stays_light() -> None:
    code = (
        "import sys, edge, edge.config, edge.radio, edge.presence, edge.decide, edge.privacy, "
        "edge.daemon, edge.display, edge.bus, edge.sim\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported eagerly: {out.stdout.strip()}"


def test_public_api_is_pinned() -> None:
    import edge.config
    import edge.daemon
    import edge.decide
    import edge.presence
    import edge.privacy
    import edge.radio

    assert sorted(edge.config.__all__) == sorted(
        [
            "ENV_CONFIG",
            "AppConfig",
            "Campaign",
            "Zone",
            "config_hash",
            "json_schema",
            "load_config",
            "parse_config",
        ]
    )
    assert sorted(edge.radio.__all__) == [
        "AppSighting",
        "DayKeys",
        "Ingest",
        "beacon_key",
        "token_tag",
    ]
    assert sorted(edge.presence.__all__) == [
        "Anchor",
        "PresenceTracker",
        "RawRetention",
        "StoreLayout",
    ]
    assert sorted(edge.privacy.__all__) == [
        "Budget",
        "DWELL_LABELS",
        "DiscreteLaplace",
        "WindowAggregator",
    ]
    assert sorted(edge.daemon.__all__) == [
        "Application",
        "Clock",
        "Features",
        "SimClock",
        "SystemClock",
    ]
    assert "DecisionEngine" in edge.decide.__all__
    for mod in (edge.config, edge.radio, edge.presence, edge.privacy, edge.daemon, edge.decide):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.{name} missing"


def test_every_stage_has_a_docstring() -> None:
    import importlib

    for stage in (
        "radio",
        "presence",
        "decide",
        "display",
        "bus",
        "privacy",
        "ops",
        "sim",
        "daemon",
        "config",
    ):
        mod = importlib.import_module(f"edge.{stage}")
        assert mod.__doc__ and len(mod.__doc__.split()) > 10, f"edge.{stage} lacks a docstring"
