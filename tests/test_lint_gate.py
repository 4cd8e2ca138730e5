"""The lint and type gate that CI runs fails on a deliberate type error (it is not decorative)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lint_gate_fails_on_a_type_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad_types.py"
    bad.write_text("def double(x: int) -> int:\n    return x * 2\n\n\nvalue: str = double(2)\n")
    res = subprocess.run(
        [str(ROOT / "scripts" / "lint.sh"), str(bad)],
        capture_output=True,
        text=True,
        timeout=580,
        cwd=ROOT,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "bad_types.py:5: error: Incompatible types in assignment" in res.stdout
    assert "lint: FAILED" in res.stderr
