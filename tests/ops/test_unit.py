"""The systemd unit: hardened to an exposure of ≤ 2.0, with the watchdog and RAM-only rules."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.helpers import ROOT

UNIT = ROOT / "systemd" / "shelfedge.service"


def test_unit_has_the_rules_the_docs_promise() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "UMask=0077",
        "LimitCORE=0",
        "MemorySwapMax=0",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "RuntimeDirectory=shelfedge",
        "StartLimitBurst=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ):
        assert line in text, line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_exposure_is_at_most_2() -> None:
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 2.0, res.stdout
