"""The inbound router: filters, bounds checked on paho's thread, delivery in short slices."""

from __future__ import annotations

import asyncio
import threading
import time

from edge.bus import router as router_module
from edge.bus.router import Inbound, Router, topic_matches


def test_topic_filters() -> None:
    assert topic_matches("a/+/cmd/+", "a/dev/cmd/status")
    assert not topic_matches("a/+/cmd/+", "a/dev/cmd/status/extra")
    assert topic_matches("a/#", "a/b/c") and topic_matches("a/b", "a/b")
    assert not topic_matches("a/b", "a/c") and not topic_matches("a/+", "a")


async def test_bounds_are_applied_before_the_loop_sees_anything() -> None:
    router = Router()
    got: list[Inbound] = []
    router.subscribe("s/+", got.append, qos=0, max_bytes=10, name="s", max_pending=3)
    router.attach(asyncio.get_running_loop().call_soon_threadsafe)
    assert not router.dispatch(Inbound("s/x", b"x" * 11))  # too large
    assert not router.dispatch(Inbound("other", b"x"))  # nobody subscribed
    for _ in range(5):  # only 3 fit while the loop is busy
        router.dispatch(Inbound("s/x", b"ok"))
    assert router.held() == 3
    await asyncio.sleep(0.05)
    assert len(got) == 3 and router.held() == 0
    assert router.stats("s") == {"received": 3, "dropped": 3, "errors": 0}
    assert router.unrouted == 1


async def test_a_backlog_is_delivered_in_short_slices() -> None:
    """200 ms of handler work never holds the loop for more than a slice per turn."""
    handled: list[float] = []

    def slow(msg: Inbound) -> None:  # 1 ms of pipeline work per message
        time.sleep(0.001)
        handled.append(time.monotonic())

    router = Router()
    router.subscribe("s", slow, qos=0, max_bytes=100)
    router.attach(asyncio.get_running_loop().call_soon_threadsafe)
    # as if paho's thread had received them while the loop was busy
    feeder = threading.Thread(
        target=lambda: [router.dispatch(Inbound("s", b"{}")) for _ in range(200)]
    )
    feeder.start()
    feeder.join()
    gaps: list[float] = []
    last = time.monotonic()
    while len(handled) < 200:
        await asyncio.sleep(0)
        now = time.monotonic()
        gaps.append(now - last)
        last = now
    assert max(gaps) < 0.05
    assert len(gaps) >= 200 * 0.001 / router_module.SLICE_S / 2  # the loop got turns between
