"""One MQTT connection: its state, the paho client it runs on, and the reconnect backoff.

``Connection`` is what one attempt holds (the paho client, CONNACK and close futures, what is in
flight); ``open_client`` builds and connects the client in a worker thread (TLS files are read
there); ``backoff_delay`` is the capped exponential delay with jitter between attempts.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from edge.bus.offers import PendingOffer

if TYPE_CHECKING:
    import paho.mqtt.client as paho

    from edge.config.models import AppConfig

_LOGGER = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # commands queued by the broker survive a long weekend offline
CONNECT_TIMEOUT_S = 10.0  # TCP + TLS handshake
BACKOFF_FACTOR = 1.8
# CONNACK reason codes that no retry can fix without a config change: wait the longest.
_AUTH_FAILURES = frozenset({0x85, 0x86, 0x87, 0x8A, 0x8C})


class LinkState(enum.Enum):
    """Where the link is; reported in ``health()``."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"


class Refused(ConnectionError):
    """The broker answered CONNACK with a failure reason code."""

    def __init__(self, code: int, name: str) -> None:
        super().__init__(f"connection refused: {name} (0x{code:02x})")
        self.auth = code in _AUTH_FAILURES


class Connection:
    """One connection attempt: its paho client and what is in flight on it (loop thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.client: paho.Client | None = None
        self.connack: asyncio.Future[tuple[bool, int, str]] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self.connected = False
        self.subscribed = False  # every SUBACK (sightings, commands) granted
        self.subacks = 0
        self.sub_refused = False
        self.after = 0  # highest outbox seq published on this connection
        self.rows: dict[int, int] = {}  # mid → outbox seq
        self.offers: dict[int, PendingOffer] = {}  # mid → offer
        self.waiters: dict[int, asyncio.Future[bool]] = {}  # mid → PUBACK (True = success)


def backoff_delay(tries: int, auth_failure: bool, base_s: float, cap_s: float) -> float:
    """``min(cap, base * 1.8**tries)`` (the cap at once after an auth failure), half jitter."""
    delay = cap_s if auth_failure else min(cap_s, base_s * BACKOFF_FACTOR**tries)
    return delay / 2 + random.uniform(0, delay / 2)


def open_client(
    cfg: AppConfig,
    client_id: str,
    conn: Connection,
    *,
    will_topic: str,
    will: bytes,
    bind: Callable[[paho.Client, Connection], None],
) -> paho.Client:
    """Worker thread: build the paho client (TLS files are read here) and connect."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    m = cfg.mqtt
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        reconnect_on_failure=False,  # reconnecting is this module's job (backoff, state)
    )
    client.connect_timeout = CONNECT_TIMEOUT_S
    if m.username is not None:
        client.username_pw_set(m.username, m.secret())
    if m.tls is not None:
        client.tls_set(
            ca_certs=str(m.tls.ca),
            certfile=None if m.tls.cert is None else str(m.tls.cert),
            keyfile=None if m.tls.key is None else str(m.tls.key),
        )
    client.will_set(will_topic, will, qos=1, retain=True)
    bind(client, conn)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    # The broker drops anything far above our bounds before it reaches us; a command a
    # little over the bound still arrives and is acked ``too_large``.
    props.MaximumPacketSize = 2 * cfg.commands.max_payload_bytes + 4096
    conn.client = client
    client.connect(m.host, m.port, m.keepalive_s, clean_start=False, properties=props)
    return client


def abandon_client(opening: asyncio.Future[paho.Client]) -> None:
    """A connect finished after its session was cancelled: close that connection cleanly."""
    if opening.cancelled() or opening.exception() is not None:
        return
    try:
        opening.result().disconnect()
    except Exception:  # best effort on the way out
        _LOGGER.debug("mqtt: closing an abandoned connection failed", exc_info=True)
