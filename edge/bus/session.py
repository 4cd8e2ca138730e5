"""The MQTT session: one supervised connection at a time, with backoff, and its paho plumbing.

``Session.run`` connects (in a worker thread: TLS files are read there), waits for CONNACK,
lets its ``SessionHandler`` (the link) serve the connection until it is lost, and reconnects
after a capped exponential backoff with jitter (the longest wait after refused credentials).
Each attempt gets a fresh paho client: paho's in-memory resend queue never spans connections,
so what is redelivered after a reconnect is the handler's decision, never twice by two layers.
paho's callbacks run on paho's thread and only hand over to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from edge.bus.offers import PendingOffer
from edge.bus.router import Inbound

if TYPE_CHECKING:
    import paho.mqtt.client as paho

    from edge.config.models import AppConfig

_LOGGER = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # commands queued by the broker survive a long weekend offline
CONNECT_TIMEOUT_S = 10.0  # TCP + TLS handshake
CONNACK_TIMEOUT_S = 15.0
BACKOFF_FACTOR = 1.8
BACKOFF_MAX_TRIES = 16  # caps the exponent; the delay is capped by backoff_max_s anyway
STABLE_CONNECTION_S = 30.0  # only a connection that lasted this long resets the backoff
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

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, properties: Any = None
    ) -> int | None:
        """QoS 1 publish on this connection; the mid, or None if it was not sent."""
        from paho.mqtt.enums import MQTTErrorCode

        client = self.client
        if client is None or not self.connected:
            return None
        info = client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            _LOGGER.debug("mqtt: %s (%d bytes) not sent: rc=%s", topic, len(payload), info.rc)
            return None
        _LOGGER.debug("mqtt: sent %s (%d bytes, mid %d)", topic, len(payload), info.mid)
        return int(info.mid)


class SessionHandler(Protocol):
    """What the session needs from the link that uses it."""

    def will(self) -> tuple[str, bytes]:
        """Last Will topic and payload."""
        ...

    def on_connected(self, conn: Connection, session_present: bool) -> None:
        """CONNACK succeeded: publish state, subscribe, flush what waits."""
        ...

    async def serve(self, conn: Connection) -> None:
        """Run while connected (returns or raises when the connection cannot go on)."""
        ...

    async def goodbye(self, conn: Connection) -> None:
        """Clean shutdown of a live connection (offline state, then DISCONNECT)."""
        ...

    async def on_ended(self, conn: Connection) -> None:
        """The connection is gone: take back what was in flight."""
        ...

    def on_puback(self, conn: Connection, mid: int, ok: bool, name: str) -> None:
        """A PUBACK arrived (loop thread)."""
        ...

    def on_suback(self, conn: Connection, codes: list[tuple[int, str]]) -> None:
        """A SUBACK arrived (loop thread)."""
        ...

    def on_message(self, msg: Inbound) -> None:
        """A message arrived (paho's thread: hand over, never block)."""
        ...


def make_client(cfg: AppConfig, client_id: str) -> paho.Client:
    """A paho MQTT 5 client with the device's credentials and TLS files (not connected)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    m = cfg.mqtt
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        reconnect_on_failure=False,  # reconnecting is the session's job (backoff, state)
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
    return client


def backoff_delay(tries: int, auth_failure: bool, base_s: float, cap_s: float) -> float:
    """``min(cap, base * 1.8**tries)`` (the cap at once after an auth failure), half jitter."""
    delay = cap_s if auth_failure else min(cap_s, base_s * BACKOFF_FACTOR**tries)
    return delay / 2 + random.uniform(0, delay / 2)


class Session:
    """Keeps one connection to the broker alive for a handler (see the module docstring)."""

    def __init__(
        self,
        cfg: AppConfig,
        client_id: str,
        handler: SessionHandler,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
    ) -> None:
        self._cfg = cfg
        self._mqtt = cfg.mqtt
        self.client_id = client_id
        self._handler = handler
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = max(backoff_base_s, backoff_max_s)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.conn: Connection | None = None
        self.state = LinkState.DISCONNECTED
        self.connects = 0
        self.disconnects = 0
        self.failures = 0  # consecutive failed attempts since the last connect
        self.last_error: str | None = None
        self.next_attempt_at: float | None = None

    # -- loop hand-over ------------------------------------------------------------------

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the session's loop (from any thread); dropped when stopped."""
        loop = self.loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            loop.call_soon_threadsafe(fn, *args)

    def on_loop(self) -> bool:
        """True when called on the session's loop thread."""
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def backoff(self, tries: int, auth_failure: bool) -> float:
        """The delay before attempt ``tries`` + 1."""
        return backoff_delay(tries, auth_failure, self._backoff_base_s, self._backoff_max_s)

    def set_state(self, new: LinkState) -> None:
        """Move to a new link state (logged at DEBUG)."""
        if new is not self.state:
            _LOGGER.debug("mqtt link %s → %s", self.state.value, new.value)
            self.state = new

    def report_failure(self, message: str) -> None:
        """Record a failed attempt (logged at WARNING once, then DEBUG)."""
        self.last_error = message
        level = logging.WARNING if self.failures == 0 else logging.DEBUG
        _LOGGER.log(level, "mqtt %s:%d: %s", self._mqtt.host, self._mqtt.port, message)
        self.failures += 1

    # -- supervision ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff; until cancelled."""
        self.loop = asyncio.get_running_loop()
        tries = 0
        try:
            while True:
                auth_failure = False
                lasted: float | None = None
                try:
                    lasted = await self._attempt()
                except Refused as exc:
                    auth_failure = exc.auth
                    self.report_failure(str(exc))
                except (OSError, ConnectionError, TimeoutError) as exc:
                    self.report_failure(f"{type(exc).__name__}: {exc}")
                except Exception as exc:  # a bug, not the network: log it loudly, keep going
                    _LOGGER.error("mqtt: unexpected error in the link", exc_info=True)
                    self.last_error = f"{type(exc).__name__}: {exc}"
                # A link that connects and is dropped at once (e.g. another device with the
                # same client id) keeps backing off instead of hammering the broker.
                if lasted is not None and lasted >= STABLE_CONNECTION_S:
                    tries = 0
                delay = self.backoff(tries, auth_failure)
                tries = min(tries + 1, BACKOFF_MAX_TRIES)
                self.next_attempt_at = time.monotonic() + delay
                _LOGGER.debug("mqtt: next connection attempt in %.1f s", delay)
                await asyncio.sleep(delay)
        finally:
            self.set_state(LinkState.DISCONNECTED)
            self.loop = None

    async def _attempt(self) -> float:
        """One connection: connect, serve until lost; how long it was up (raises if never)."""
        loop = asyncio.get_running_loop()
        conn = Connection(loop)
        self.set_state(LinkState.CONNECTING)
        opening = loop.run_in_executor(None, self._open_client, conn)
        try:
            client = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(abandon_client)
            self.set_state(LinkState.DISCONNECTED)
            raise
        except BaseException:
            self.set_state(LinkState.DISCONNECTED)
            raise
        self.conn = conn
        try:
            client.loop_start()
            session_present = await self._connack(conn)
            conn.connected = True
            self.connects += 1
            self.next_attempt_at = None
            self.set_state(LinkState.CONNECTED)
            _LOGGER.log(  # back after failures is a state change: WARNING; a first connect: INFO
                logging.WARNING if self.failures else logging.INFO,
                "mqtt connected to %s:%d as %s (session present: %s%s)",
                self._mqtt.host,
                self._mqtt.port,
                self.client_id,
                session_present,
                f", after {self.failures} failure(s)" if self.failures else "",
            )
            self.failures = 0
            self._handler.on_connected(conn, session_present)
            up_since = time.monotonic()
            serving = asyncio.create_task(self._handler.serve(conn), name="shelfedge-mqtt-serve")
            try:
                await asyncio.wait((conn.closed, serving), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
                if not conn.closed.done():
                    await self._handler.goodbye(conn)
                raise
            if not serving.done():
                serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            if not serving.cancelled() and serving.exception() is not None:
                raise RuntimeError("serving the connection failed") from serving.exception()
            reason = conn.closed.result() if conn.closed.done() else "serving stopped"
            self.report_failure(f"connection lost: {reason}")
            return time.monotonic() - up_since
        finally:
            await self._end(conn, client)

    async def _connack(self, conn: Connection) -> bool:
        await asyncio.wait(
            (conn.connack, conn.closed),
            timeout=CONNACK_TIMEOUT_S,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if conn.connack.done():
            session_present, code, name = conn.connack.result()
            if code >= 0x80:
                raise Refused(code, name)
            return session_present
        if conn.closed.done():
            raise ConnectionError(f"closed before CONNACK: {conn.closed.result()}")
        raise TimeoutError(f"no CONNACK within {CONNACK_TIMEOUT_S:.0f} s")

    async def _end(self, conn: Connection, client: paho.Client) -> None:
        self.conn = None
        if conn.connected:
            self.disconnects += 1
        conn.connected = False
        self.set_state(LinkState.DISCONNECTED)
        for waiter in conn.waiters.values():
            if not waiter.done():
                waiter.set_result(False)
        if not conn.closed.done():
            client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        await self._handler.on_ended(conn)

    def _open_client(self, conn: Connection) -> paho.Client:
        """Worker thread: build the paho client (TLS files are read here) and connect."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        m = self._mqtt
        client = make_client(self._cfg, self.client_id)
        will_topic, will = self._handler.will()
        client.will_set(will_topic, will, qos=1, retain=True)
        self._bind(client, conn)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        # The broker drops anything far above our bounds before it reaches us; a command a
        # little over the bound still arrives and is acked ``too_large``.
        props.MaximumPacketSize = 2 * self._cfg.commands.max_payload_bytes + 4096
        conn.client = client
        client.connect(m.host, m.port, m.keepalive_s, clean_start=False, properties=props)
        return client

    def _bind(self, client: paho.Client, conn: Connection) -> None:
        """paho callbacks run on paho's thread: they only hand over to the loop."""
        h = self._handler

        def on_connect(_c: Any, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
            self.call_soon(_set_connack, conn, bool(flags.session_present), rc)

        def on_disconnect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            self.call_soon(_set_closed, conn, str(rc))

        def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
            self.call_soon(h.on_puback, conn, mid, int(rc.value) < 0x80, str(rc))

        def on_subscribe(_c: Any, _u: Any, _mid: int, rcs: list[Any], _p: Any) -> None:
            self.call_soon(h.on_suback, conn, [(int(rc.value), str(rc)) for rc in rcs])

        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            props = getattr(msg, "properties", None)
            response = getattr(props, "ResponseTopic", None)
            correlation = getattr(props, "CorrelationData", None)
            user = getattr(props, "UserProperty", None) or ()
            h.on_message(
                Inbound(
                    msg.topic,
                    bytes(msg.payload),
                    response if isinstance(response, str) and response else None,
                    bytes(correlation) if correlation else None,
                    tuple((str(k), str(v)) for k, v in user),
                )
            )

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_subscribe = on_subscribe
        client.on_message = on_message


def _set_connack(conn: Connection, session_present: bool, rc: Any) -> None:
    if not conn.connack.done():
        conn.connack.set_result((session_present, int(rc.value), str(rc)))


def _set_closed(conn: Connection, reason: str) -> None:
    if not conn.closed.done():
        conn.closed.set_result(reason)


def abandon_client(opening: asyncio.Future[paho.Client]) -> None:
    """A connect finished after its session was cancelled: close that connection cleanly."""
    if opening.cancelled() or opening.exception() is not None:
        return
    try:
        opening.result().disconnect()
    except Exception:  # best effort on the way out
        _LOGGER.debug("mqtt: closing an abandoned connection failed", exc_info=True)
