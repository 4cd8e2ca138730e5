"""The bus package's public names, and that importing it leaves paho unloaded."""

from __future__ import annotations

import subprocess
import sys


def test_public_api_is_pinned() -> None:
    import edge.bus

    assert sorted(edge.bus.__all__) == ["LinkState", "MqttLink", "Outbox", "OutboxRow"]
    for name in edge.bus.__all__:
        assert hasattr(edge.bus, name)


def test_import_does_not_load_paho() -> None:
    code = "import sys, edge.bus, edge.bus.mqtt; print('paho' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
