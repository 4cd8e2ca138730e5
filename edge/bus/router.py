"""Inbound MQTT messages: subscriptions, bounds, and hand-over to the event loop in slices.

``Router.subscribe(filter, handler, qos=, max_bytes=)`` registers a handler; the link
subscribes every registered filter on each connection and passes each received message
(topic, payload and the MQTT 5 response topic, correlation data and user properties) to
``dispatch`` on paho's network thread. A message over ``max_bytes`` or beyond a
subscription's pending bound is dropped and counted there, without touching the loop. The
rest is handed to the loop and delivered to the handler in turns of at most
``SLICE_S`` seconds, so a backlog never stalls the daemon.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

_LOGGER = logging.getLogger(__name__)
SLICE_S = 0.005  # at most this long per loop turn spent on inbound messages
DEFAULT_MAX_PENDING = 1_000


@dataclass(frozen=True, slots=True)
class Inbound:
    """One received message, as a handler sees it."""

    topic: str
    payload: bytes
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Subscription:
    """A topic filter, its handler and its bounds; counters for ``health``."""

    name: str
    topic_filter: str
    handler: Callable[[Inbound], None]
    qos: int
    max_bytes: int
    max_pending: int = DEFAULT_MAX_PENDING
    pending: deque[Inbound] = field(default_factory=deque)
    scheduled: bool = False
    received: int = 0
    dropped: int = 0
    errors: int = 0


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching with ``+`` and ``#``."""
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


class Router:
    """Routes inbound messages to handlers on the event loop (see the module docstring)."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._call_soon: Callable[..., None] | None = None
        self.unrouted = 0

    def subscribe(
        self,
        topic_filter: str,
        handler: Callable[[Inbound], None],
        *,
        qos: int,
        max_bytes: int,
        name: str | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> Subscription:
        """Register a handler for a topic filter (before the link connects)."""
        sub = Subscription(name or topic_filter, topic_filter, handler, qos, max_bytes, max_pending)
        self._subs.append(sub)
        return sub

    def subscriptions(self) -> list[Subscription]:
        """Every registered subscription, in registration order."""
        return list(self._subs)

    def attach(self, call_soon: Callable[..., None] | None) -> None:
        """Where to schedule deliveries (the link's loop hand-over), or None when stopped."""
        self._call_soon = call_soon

    def dispatch(self, msg: Inbound) -> bool:
        """paho thread: queue a message for its handler; False when dropped or unrouted."""
        sub = next((s for s in self._subs if topic_matches(s.topic_filter, msg.topic)), None)
        if sub is None:
            self.unrouted += 1
            return False
        with self._lock:
            if len(msg.payload) > sub.max_bytes or len(sub.pending) >= sub.max_pending:
                sub.dropped += 1
                return False
            sub.pending.append(msg)
            if sub.scheduled:
                return True
            sub.scheduled = True
        call_soon = self._call_soon
        if call_soon is not None:
            call_soon(self._deliver, sub)
        return True

    def _deliver(self, sub: Subscription) -> None:
        """Loop thread: hand queued messages to the handler for at most SLICE_S, then yield."""
        deadline = time.monotonic() + SLICE_S
        first = True
        while True:
            with self._lock:
                if not sub.pending:
                    sub.scheduled = False
                    return
                if not first and time.monotonic() > deadline:
                    break
                msg = sub.pending.popleft()
            first = False
            sub.received += 1
            try:
                sub.handler(msg)
            except Exception as exc:  # the text may quote the payload: the class only
                sub.errors += 1
                _LOGGER.error(
                    "handler for %s failed on a %d-byte message: %s",
                    sub.name,
                    len(msg.payload),
                    type(exc).__name__,
                )
                _LOGGER.debug("handler traceback", exc_info=True)
        call_soon = self._call_soon
        if call_soon is not None:
            call_soon(self._deliver, sub)  # the rest next turn
        else:
            with self._lock:
                sub.scheduled = False

    def held(self) -> int:
        """Messages waiting for the loop (raw holdings: app sightings are raw)."""
        with self._lock:
            return sum(len(s.pending) for s in self._subs)

    def stats(self, name: str) -> dict[str, int]:
        """Counters of the subscription(s) with that name."""
        subs = [s for s in self._subs if s.name == name]
        return {
            "received": sum(s.received for s in subs),
            "dropped": sum(s.dropped for s in subs),
            "errors": sum(s.errors for s in subs),
        }
