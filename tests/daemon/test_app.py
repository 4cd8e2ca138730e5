"""The composition root with real parts: reload, dayparts, a corrupt outbox, LEAVE storms,
and the control socket while it runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

from edge.config import load_config
from edge.daemon.app import Application, Features
from edge.daemon.clock import SimClock
from edge.decide.policy import Reason
from edge.events import PresenceEvent, PresenceKind, Sighting, SightingSource
from tests.helpers import DEMO_STORE

TOKEN = bytes(range(16))


def _write_config(path: Path, state_dir: Path, **edits: object) -> Path:
    data = yaml.safe_load(DEMO_STORE.read_text())
    data["state_dir"] = str(state_dir)
    data["mqtt"]["enabled"] = False
    data["display"].update(width=320, height=240, fullscreen=False)
    for dotted, value in edits.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _local_ts(cfg_tz: str, hour: int, minute: int = 0) -> float:
    # Tuesday 24 November 2026 in the store's time zone
    return dt.datetime(2026, 11, 24, hour, minute, tzinfo=ZoneInfo(cfg_tz)).timestamp()


def _ev(
    kind: PresenceKind, token: bytes, zone: str, ts: float, dwell: float = 60.0
) -> PresenceEvent:
    return PresenceEvent(kind, token, 1, zone, None, dwell, 0.0, ts)


@pytest.mark.timeout(60)
async def test_reload_keeps_counters_applies_display_and_counts_new_campaigns(
    tmp_path: Path,
) -> None:
    path = _write_config(tmp_path / "shelfedge.yaml", tmp_path / "state")
    cfg = load_config(path)
    clock = SimClock(_local_ts(cfg.timezone, 11))
    app = Application(
        cfg,
        config_path=path,
        clock=clock,
        features=Features(display=True, mqtt=False, model=False, autotick=False, control=False),
        holdout_salt=lambda n: b"\x00" * n,
    )
    await app.start()
    try:
        holdout_off = cfg.policy.model_copy(update={"holdout_share": 0.0})
        app.policy.update_config(cfg.model_copy(update={"policy": holdout_off}))
        campaign = cfg.campaigns[0]
        t = clock.now()
        app.tracker.sighting(
            Sighting(TOKEN, 1, next(iter(app.tracker.layout.anchors)), -50, t, SightingSource.BLE)
        )
        app.route(_ev(PresenceKind.DWELL, TOKEN, campaign.zone, t))
        await app.drain()
        assert app.counters.offers == 1
        assert app.policy.offers_this_visit(TOKEN) == 1
        assert app.display is not None and app.display.starts == 1

        new_campaign = {
            "id": "tea-new",
            "category": "coffee",
            "zone": campaign.zone,
            "headline": "New tea",
            "url": "https://coupons.example.com/c/tea-new",
        }
        data = yaml.safe_load(path.read_text())
        data["policy"]["cooldown_s"] = 60
        data["policy"]["holdout_share"] = 0.0
        data["display"]["slide_s"] = 5.0
        data["campaigns"].append(new_campaign)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

        result = await app.service.reload()
        assert result.ok and set(result.applied) == {"policy", "campaigns", "display"}
        assert result.restart_needed == []
        # policy counters survived the policy change
        assert app.policy.offers_this_visit(TOKEN) == 1
        assert app.policy.cfg.cooldown_s == 60
        # display settings applied live: a fresh controller runs with them
        for _ in range(100):
            if app.display.starts == 2 and app.display.running:
                break
            await asyncio.sleep(0.05)
        assert app.display.starts == 2 and app.display.running
        # the new campaign is counted in the aggregates
        app.aggregator.offer(b"\x09" * 16, "tea-new", clock.now())
        assert app.aggregator._counts.offers["tea-new"] == 1

        # a section that cannot change live is reported, not silently ignored
        data.setdefault("presence", {})["switch_ratio"] = 6.0
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        result = await app.service.reload()
        assert result.ok and result.restart_needed == ["presence"]
        status = await app.service.status()
        assert status["pending_restart"] == ["presence"]
        assert status["health"]["pending_restart"] == ["presence"]

        # an invalid file is rejected and the running config kept
        path.write_text(path.read_text().replace("cooldown_s: 60", "cooldown_s: soon"))
        result = await app.service.reload()
        assert not result.ok and app.cfg.policy.cooldown_s == 60
    finally:
        await app.stop()


@pytest.mark.timeout(60)
async def test_overnight_campaign_is_offered_at_23(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "shelfedge.yaml", tmp_path / "state")
    base = load_config(path)
    night = base.campaigns[0].model_copy(
        update={
            "id": "late-night",
            "schedule": base.campaigns[0].schedule.model_copy(
                update={"start_hour": 22, "end_hour": 6}
            ),
        }
    )
    policy = base.policy.model_copy(update={"holdout_share": 0.0})
    cfg = base.model_copy(update={"campaigns": [night], "policy": policy})
    for hour, offered in ((23, True), (2, True), (12, False)):
        clock = SimClock(_local_ts(cfg.timezone, hour))
        state = tmp_path / f"state-{hour}"
        app = Application(
            cfg.model_copy(update={"state_dir": state}),
            clock=clock,
            features=Features(
                display=False, mqtt=False, model=False, autotick=False, control=False
            ),
        )
        await app.start()
        try:
            t = clock.now()
            app.tracker.sighting(
                Sighting(
                    TOKEN, 1, next(iter(app.tracker.layout.anchors)), -50, t, SightingSource.BLE
                )
            )
            app.route(_ev(PresenceKind.DWELL, TOKEN, night.zone, t))
            await app.drain()
            assert (app.counters.offers == 1) is offered, hour
        finally:
            await app.stop()


@pytest.mark.timeout(60)
async def test_daemon_starts_on_a_corrupt_outbox(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite3").write_bytes(b"\x00garbage" * 512)
    path = _write_config(tmp_path / "shelfedge.yaml", state)
    cfg = load_config(path)
    app = Application(
        cfg,
        features=Features(display=False, mqtt=False, model=False, autotick=True, control=False),
    )
    await app.start()
    try:
        status = await app.service.status()
        assert status["health"]["outbox"]["recovered"] is True
        assert any(p.name.startswith("outbox.sqlite3.corrupt-") for p in state.iterdir())
        assert status["components"]["housekeeping"]["state"] in ("starting", "running")
    finally:
        await app.stop()


@pytest.mark.timeout(60)
async def test_leave_storm_with_full_queue_leaves_no_policy_state(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "shelfedge.yaml", tmp_path / "state")
    cfg = load_config(path)
    clock = SimClock(_local_ts(cfg.timezone, 11))
    app = Application(
        cfg,
        clock=clock,
        features=Features(display=False, mqtt=False, model=False, autotick=False, control=False),
    )
    await app.start()
    try:
        zone = cfg.campaigns[0].zone
        t = clock.now()
        tokens = [i.to_bytes(16, "big") for i in range(1, 5001)]
        # Every token gets policy counters, then the queue is flooded far past its size
        # and every token leaves while its events are still queued: 10,000 events in all.
        for tok in tokens:
            app.policy.record_offer(tok, "x", t, dt.date(2026, 11, 24))
        for tok in tokens:
            app.route(_ev(PresenceKind.DWELL, tok, zone, t))
        assert app.decisions.dropped > 0  # the queue was full
        for tok in tokens:
            app.route(_ev(PresenceKind.LEAVE, tok, zone, t))
        assert app.policy.held(clock.monotonic()).records == 0  # at once, not after the queue
        await app.drain()
        assert app.policy.held(clock.monotonic()).records == 0
        assert app.engine.reasons[Reason.DEPARTED.value] > 0  # queued events of departed tokens
    finally:
        await app.stop()
    assert app.raw_total() == 0


@pytest.mark.timeout(120)
def test_status_answers_over_the_socket_while_the_demo_runs(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    sock = out / "state" / "control.sock"
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge",
            "demo",
            "--minutes",
            "10",
            "--speed",
            "10",
            "--no-display",
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        answers = []
        while time.monotonic() < deadline and len(answers) < 3:
            time.sleep(1.0)
            if not sock.exists():
                continue
            res = subprocess.run(
                [sys.executable, "-m", "edge", "status", "--json", "--socket", str(sock)],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
            )
            if res.returncode == 0:
                answers.append(json.loads(res.stdout))
        assert len(answers) == 3, "status never answered"
        retention = 30.0
        for status in answers:
            assert {"decide", "model", "control"} <= set(status["components"])
            holdings = status["raw_holdings"]
            assert {
                "presence.tracker",
                "radio.tag_cache",
                "decide.policy",
                "decide.queue",
                "privacy.aggregator",
            } <= set(holdings)
            for name, h in holdings.items():
                assert h["oldest_age_s"] <= h["limit_s"] + 2.0, (name, h)
                if name not in ("privacy.aggregator", "presence.beacon_stats"):
                    assert h["limit_s"] == retention
        assert any(status["raw_total"] > 0 for status in answers)
    finally:
        demo.terminate()
        demo.wait(timeout=30)
