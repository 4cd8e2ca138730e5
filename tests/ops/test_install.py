"""scripts/install.sh into a tree: idempotent, right modes, invalid config aborts first."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import DEMO_STORE, ROOT

INSTALL = ROOT / "scripts" / "install.sh"
ENV = {**os.environ, "SHELFEDGE_PYTHON": sys.executable}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=120, env=ENV
    )


def _tree(root: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        mode = oct(p.stat().st_mode & 0o7777)
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[rel] = (mode, digest)
    return out


def test_install_twice_is_the_same_tree(tmp_path: Path) -> None:
    root = tmp_path / "img"
    first = _run("--prefix", str(root), "--config", str(DEMO_STORE), "--skip-venv")
    assert first.returncode == 0, first.stderr
    tree = _tree(root)
    again = _run("--prefix", str(root), "--config", str(DEMO_STORE), "--skip-venv")
    assert again.returncode == 0, again.stderr
    assert _tree(root) == tree
    assert tree["etc/shelfedge/shelfedge.yaml"][0] == "0o640"
    assert tree["etc/shelfedge/secrets"][0] == "0o600"
    assert tree["var/lib/shelfedge"][0] == "0o700"
    unit = root / "etc/systemd/system/shelfedge.service"
    assert unit.read_text() == (ROOT / "systemd/shelfedge.service").read_text()
    # an upgrade without --config keeps the installed config
    upgrade = _run("--prefix", str(root), "--skip-venv")
    assert upgrade.returncode == 0, upgrade.stderr
    assert _tree(root) == tree


def test_invalid_config_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "img"
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO_STORE.read_text().replace("cooldown_s: 180", "cooldown_s: soon"))
    res = _run("--prefix", str(root), "--config", str(bad), "--skip-venv")
    assert res.returncode == 1
    assert "nothing was changed" in res.stderr and "cooldown_s" in res.stdout + res.stderr
    assert not root.exists()


def test_uninstall_keeps_state_unless_purged(tmp_path: Path) -> None:
    root = tmp_path / "img"
    assert _run("--prefix", str(root), "--config", str(DEMO_STORE), "--skip-venv").returncode == 0
    (root / "var/lib/shelfedge/outbox.sqlite3").write_bytes(b"state")
    assert _run("--prefix", str(root), "--uninstall").returncode == 0
    assert not (root / "opt/shelfedge").exists()
    assert not (root / "etc/systemd/system/shelfedge.service").exists()
    assert (root / "var/lib/shelfedge/outbox.sqlite3").exists()
    assert _run("--prefix", str(root), "--uninstall", "--purge").returncode == 0
    assert not (root / "var/lib/shelfedge").exists() and not (root / "etc/shelfedge").exists()
