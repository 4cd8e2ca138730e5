"""`shelfedge fleet keygen` then `fleet send status` against a running `shelfedge run`."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import Mosquitto
from tests.helpers import DEMO_STORE, ROOT


def _shelfedge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.timeout(120)
def test_keygen_then_send_status_to_a_running_daemon(tmp_path: Path, mosquitto: Mosquitto) -> None:
    key = tmp_path / "central.pem"
    res = _shelfedge("fleet", "keygen", "--out", str(key), "--kid", "hq")
    assert res.returncode == 0, res.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith("hq:"))
    public = line.split(":", 1)[1].strip().strip('"')
    assert _shelfedge("fleet", "keygen", "--out", str(key)).returncode == 1  # never overwrite

    data = yaml.safe_load(DEMO_STORE.read_text())
    site, device = f"site-{os.getpid()}", "shelf-7"
    data.update(site=site, device=device, state_dir=str(tmp_path / "state"))
    data["display"]["enabled"] = False
    data["mqtt"].update(enabled=True, host=mosquitto.host, port=mosquitto.port)
    data.setdefault("commands", {})["trusted_keys"] = {"hq": public}
    cfg = tmp_path / "shelfedge.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "mqtt connected" in daemon.stderr.readline():
                break
        common = ["--site", site, "--key", str(key), "--kid", "hq", "--port", str(mosquitto.port)]
        res = _shelfedge("fleet", "send", "status", "--device", device, "--json", *common)
        assert res.returncode == 0, res.stdout + res.stderr
        out = json.loads(res.stdout)
        (ack,) = out["acks"]
        assert ack["status"] == "ok" and ack["result"]["device"] == device
        table = _shelfedge("fleet", "send", "status", "--device", device, *common)
        assert table.returncode == 0 and "ok" in table.stdout
        card = json.loads((ROOT / "edge/decide/models/coupon.card.json").read_text())
        card["model_version"] = "8.0.0"
        card_file = tmp_path / "card.json"
        card_file.write_text(json.dumps(card))
        model = str(ROOT / "edge/decide/models/coupon.tflite")
        up = _shelfedge(
            "fleet", "send", "update_model", "--device", device, "--model", model,
            "--card", str(card_file), "--args", '{"version": 1}', "--chunk-bytes", "2500",
            "--json", *common,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        assert json.loads(up.stdout)["acks"][0]["result"]["model_id"].startswith("coupon-8.0.0")
        bad = _shelfedge(
            "fleet", "send", "set_keys", "--device", device, "--args", '{"version": "x"}', *common
        )
        assert bad.returncode == 1 and "schema" in bad.stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)


def test_fleet_imports_only_the_contract() -> None:
    allowed = {"edge.commands.envelope"}
    for path in (ROOT / "edge" / "fleet").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mod = node.module
                if mod.startswith("edge"):
                    ok = mod in allowed or mod.startswith(("edge.fleet", "edge.contract"))
                    assert ok, (path.name, mod)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.name
                    assert (
                        not name.startswith("edge")
                        or name in allowed
                        or (name.startswith("edge.contract"))
                    ), (path.name, name)
