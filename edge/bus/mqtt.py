"""The MQTT uplink: one owned, supervised connection to the store broker (paho-mqtt 2.x, MQTT 5).
``MqttLink.run`` owns the link for the daemon's lifetime: it connects with a Last Will (retained
``state`` with ``online: false``), publishes the retained ``state`` on every connect, subscribes
to the site's app ``sightings`` and hands each payload to the daemon on the event loop thread,
drains the on-disk outbox in ``seq`` order at QoS 1 deleting a row only after its PUBACK,
publishes offers from RAM only (a bounded queue while offline, expired offers dropped and
counted), and reconnects with capped exponential backoff and jitter. paho's own network thread
does the socket I/O; every paho callback is marshalled onto the asyncio loop, so all link state
lives on one thread and nothing blocks the loop. Each connection attempt gets a fresh paho
client: paho's in-memory resend queue never spans connections, so what is redelivered after a
reconnect is decided here (outbox rows, unexpired offers), never twice by two layers. Payloads
are never logged (offers carry tokens); log lines name topics and sizes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.bus.drain import OutboxDrain
from edge.bus.offers import OfferQueue, PendingOffer
from edge.bus.outbox import Outbox
from edge.bus.router import Inbound, Router
from edge.bus.session import (
    Connection,
    LinkState,
    Refused,
    abandon_client,
    backoff_delay,
    open_client,
)
from edge.privacy.holders import Holding

if TYPE_CHECKING:
    import paho.mqtt.client as paho

    from edge.config.models import AppConfig

_LOGGER = logging.getLogger(__name__)

TOPIC_ROOT = "shelfedge/v1"
SESSION_EXPIRY_S = 7 * 24 * 3600  # commands queued by the broker survive a long weekend offline
CONNECT_TIMEOUT_S = 10.0  # TCP + TLS handshake
CONNACK_TIMEOUT_S = 15.0
GOODBYE_TIMEOUT_S = 2.0  # wait for the PUBACK of the final offline state
INFLIGHT_WINDOW = 10  # outbox rows published but not yet acknowledged, per connection
COMMANDS_PENDING_MAX = 64
OFFER_SWEEP_S = 1.0
INBOX_MAX = 1_000  # app sighting messages waiting for the event loop
COMMANDS_PENDING_MAX = 64
BACKOFF_FACTOR = 1.8
BACKOFF_MAX_TRIES = 16  # caps the exponent; the delay is capped by backoff_max_s anyway
STABLE_CONNECTION_S = 30.0  # only a connection that lasted this long resets the backoff

# CONNACK reason codes that no retry can fix without a config change: wait the longest.
_AUTH_FAILURES = frozenset({0x85, 0x86, 0x87, 0x8A, 0x8C})


class MqttLink:
    """The device's MQTT link; ``run()`` is its one owned loop (see the module docstring).

    ``state`` returns the device state (published retained on ``state``); ``on_sightings``
    receives each raw app-sightings payload on the event loop thread. ``clock`` is the wall
    clock that offers' ``expires_at`` refers to; ``backoff_base_s``/``backoff_max_s`` shape the
    reconnect delay ``min(max, base * 1.8**tries)`` (half of it random jitter).
    """

    def __init__(
        self,
        cfg: AppConfig,
        outbox: Outbox,
        *,
        state: Callable[[], dict[str, Any]],
        on_sightings: Callable[[bytes], None] | None = None,
        on_command: Callable[[Inbound], None] | None = None,
        router: Router | None = None,
        clock: Callable[[], float] = time.time,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mono = monotonic
        self._cfg = cfg
        self._mqtt = cfg.mqtt
        self._outbox = outbox
        self._state_fn = state
        self._clock = clock
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = max(backoff_base_s, backoff_max_s)
        self.client_id = cfg.mqtt.client_id or f"shelfedge-{cfg.site}-{cfg.device}"
        self.root = f"{TOPIC_ROOT}/{cfg.site}/{cfg.device}"
        self.state_topic = f"{self.root}/state"
        self.offer_topic = f"{self.root}/offer"
        self.sightings_topic = f"{TOPIC_ROOT}/{cfg.site}/sightings"
        self.router = router or Router()
        limit = cfg.commands.max_payload_bytes
        if on_sightings is not None:
            # QoS 0 on purpose: with a persistent session the broker would queue QoS 1 app
            # sightings (raw signals) for this device while it is offline.
            self.router.subscribe(
                self.sightings_topic,
                lambda m: on_sightings(m.payload),
                qos=0,
                max_bytes=limit,
                name="sightings",
                max_pending=INBOX_MAX,
            )
        if on_command is not None:
            # Commands are not raw data and carry their own expiry: QoS 1, queued while away.
            for prefix in (f"{self.root}/cmd/", f"{TOPIC_ROOT}/{cfg.site}/all/cmd/"):
                self.router.subscribe(
                    prefix + "+",
                    on_command,
                    qos=1,
                    max_bytes=2 * limit + 4096,  # a little over the bound is acked too_large
                    name="commands",
                    max_pending=COMMANDS_PENDING_MAX,
                )

        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._conn: Connection | None = None
        self._link_state = LinkState.DISCONNECTED
        self._drain = OutboxDrain(outbox, self.root, self._set_error)
        self.offers = OfferQueue(clock=clock, retention_s=cfg.privacy.raw_retention_s)

        self._connects = 0
        self._disconnects = 0
        self._failures = 0  # consecutive failed attempts since the last connect
        self._states_published = 0
        self._offers_published = 0
        self._offers_refused = 0
        self._last_error: str | None = None
        self._next_attempt_at: float | None = None

    # -- public API ---------------------------------------------------------------------

    @property
    def online(self) -> bool:
        """True while connected to the broker (CONNACK received, not yet lost)."""
        return self._link_state is LinkState.CONNECTED

    @property
    def link_state(self) -> LinkState:
        """The link's current state."""
        return self._link_state

    async def run(self) -> None:
        """Own the link until cancelled; cancellation says goodbye (offline state) cleanly."""
        if self._loop is not None:
            raise RuntimeError("MqttLink.run() is already running")
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.router.attach(self._call_soon)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._connection_loop(), name="shelfedge-mqtt-link")
                tg.create_task(self._offer_sweep_loop(), name="shelfedge-mqtt-offers")
        finally:
            self._set_state(LinkState.DISCONNECTED)
            self.router.attach(None)
            self._loop = None
            self._wake = None

    def notify_outbox(self) -> None:
        """Wake the outbox drain after a ``put`` (callable from any thread)."""
        wake = self._wake
        if wake is not None:
            self._call_soon(wake.set)

    def publish_state(self) -> None:
        """Re-publish the retained ``state`` now (callable from any thread; no-op offline)."""
        if not self._on_loop():
            self._call_soon(self.publish_state)
            return
        conn = self._conn
        if conn is not None and conn.connected:
            self._publish_state(conn)

    def publish_offer(self, payload: dict[str, Any], expires_at: float) -> bool:
        """Publish an offer at QoS 1 from RAM, never through the outbox (a token never touches
        disk). Offline, it waits in a bounded queue (the oldest is dropped when full) and is
        dropped once ``expires_at`` (wall-clock Unix seconds) passes; both drops are counted.
        Returns False when the offer was already expired (dropped at once). Meant for the event
        loop thread; from another thread it is handed over to the loop.
        """
        if expires_at <= self._clock():
            self.offers.expired += 1
            return False
        offer = PendingOffer(
            json.dumps(payload, separators=(",", ":")).encode(),
            float(expires_at),
            bytes.fromhex(str(payload.get("token", ""))),
            self._mono(),
        )
        if self._loop is not None and not self._on_loop():
            self._call_soon(self._accept_offer, offer)
        else:
            self._accept_offer(offer)
        return True

    def health(self) -> dict[str, Any]:
        """Counters and state for the device state (never payloads)."""
        conn = self._conn
        next_in = None
        if self._next_attempt_at is not None and self._link_state is LinkState.DISCONNECTED:
            next_in = round(max(0.0, self._next_attempt_at - time.monotonic()), 1)
        return {
            "state": self._link_state.value,
            "broker": f"{self._mqtt.host}:{self._mqtt.port}",
            "connects": self._connects,
            "disconnects": self._disconnects,
            "failed_attempts": self._failures,
            "next_attempt_in_s": next_in,
            "published": self._drain.published,
            "inflight": 0 if conn is None else len(conn.rows),
            "states_published": self._states_published,
            "offers": {
                "published": self._offers_published,
                "queued": len(self.offers),
                "expired": self.offers.expired,
                "dropped": self.offers.dropped + self._offers_refused,
            },
            "sightings": {
                "subscribed": conn is not None and conn.subscribed,
                **self.router.stats("sightings"),
                "other_topics": self.router.unrouted,
            },
            "commands": self.router.stats("commands"),
            "last_error": self._last_error,
        }

    # -- RawHolder: offers (tokens) and app sightings waiting in RAM --------------------

    holder_name = "bus.offers"

    def _held_offers(self) -> list[PendingOffer]:
        conn = self._conn
        return [*self.offers, *(() if conn is None else conn.offers.values())]

    def purge(self, mono_now: float) -> None:
        """Drop queued offers older than the raw retention (they carry a token)."""
        self.offers.purge(mono_now)

    def forget(self, token: bytes) -> int:
        """Drop queued offers for a token."""
        return self.offers.forget(token)

    def held(self, mono_now: float) -> Holding:
        """Offers waiting or in flight, plus inbound messages not yet handed to the loop."""
        offers = self._held_offers()
        oldest = min((o.made_mono for o in offers), default=mono_now)
        return Holding(len(offers) + self.router.held(), max(0.0, mono_now - oldest))

    # -- connection supervision ---------------------------------------------------------

    async def _connection_loop(self) -> None:
        tries = 0
        while True:
            auth_failure = False
            lasted: float | None = None
            try:
                lasted = await self._session()
            except Refused as exc:
                auth_failure = exc.auth
                self._report_failure(str(exc))
            except (OSError, ConnectionError, TimeoutError) as exc:
                self._report_failure(f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a bug, not the network: log it loudly, keep the link alive
                _LOGGER.error("mqtt: unexpected error in the link", exc_info=True)
                self._last_error = f"{type(exc).__name__}: {exc}"
            # A link that connects and is dropped at once (e.g. another device with the same
            # client id) keeps backing off instead of hammering the broker.
            if lasted is not None and lasted >= STABLE_CONNECTION_S:
                tries = 0
            delay = self._backoff(tries, auth_failure)
            tries = min(tries + 1, BACKOFF_MAX_TRIES)
            self._next_attempt_at = time.monotonic() + delay
            _LOGGER.debug("mqtt: next connection attempt in %.1f s", delay)
            await asyncio.sleep(delay)

    def _backoff(self, tries: int, auth_failure: bool) -> float:
        return backoff_delay(tries, auth_failure, self._backoff_base_s, self._backoff_max_s)

    def _report_failure(self, message: str) -> None:
        self._last_error = message
        level = logging.WARNING if self._failures == 0 else logging.DEBUG
        _LOGGER.log(level, "mqtt %s:%d: %s", self._mqtt.host, self._mqtt.port, message)
        self._failures += 1

    def _set_error(self, message: str) -> None:
        self._last_error = message

    def _set_state(self, new: LinkState) -> None:
        if new is not self._link_state:
            _LOGGER.debug("mqtt link %s → %s", self._link_state.value, new.value)
            self._link_state = new

    async def _session(self) -> float:
        """One connection: connect, serve until lost; how long it was up (raises if never)."""
        loop = asyncio.get_running_loop()
        conn = Connection(loop)
        self._set_state(LinkState.CONNECTING)
        will = self._state_payload(online=False, reason="connection_lost", full=False)
        opening = loop.run_in_executor(
            None,
            lambda: open_client(
                self._cfg,
                self.client_id,
                conn,
                will_topic=self.state_topic,
                will=will,
                bind=self._bind_callbacks,
            ),
        )
        try:
            client = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(abandon_client)
            self._set_state(LinkState.DISCONNECTED)
            raise
        except BaseException:
            self._set_state(LinkState.DISCONNECTED)
            raise
        self._conn = conn
        drain: asyncio.Task[None] | None = None
        try:
            client.loop_start()
            await asyncio.wait(
                (conn.connack, conn.closed),
                timeout=CONNACK_TIMEOUT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if conn.connack.done():
                session_present, code, name = conn.connack.result()
                if code >= 0x80:
                    raise Refused(code, name)
            elif conn.closed.done():
                raise ConnectionError(f"closed before CONNACK: {conn.closed.result()}")
            else:
                raise TimeoutError(f"no CONNACK within {CONNACK_TIMEOUT_S:.0f} s")
            self._on_connected(conn, session_present)
            up_since = time.monotonic()
            assert self._wake is not None
            drain = asyncio.create_task(
                self._drain.run(conn, self._wake, self._publish), name="shelfedge-mqtt-drain"
            )
            try:
                await asyncio.wait((conn.closed, drain), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                if not conn.closed.done():
                    await self._goodbye(conn)
                raise
            if drain.done() and not drain.cancelled() and drain.exception() is not None:
                raise RuntimeError("outbox drain failed") from drain.exception()
            reason = conn.closed.result() if conn.closed.done() else "drain stopped"
            self._report_failure(f"connection lost: {reason}")
            return time.monotonic() - up_since
        finally:
            await self._end_session(conn, client, drain)

    def _bind_callbacks(self, client: paho.Client, conn: Connection) -> None:
        """paho callbacks run on paho's thread: they only hand over to the loop."""

        def on_connect(_c: Any, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
            self._call_soon(self._on_connack, conn, bool(flags.session_present), rc)

        def on_disconnect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            self._call_soon(self._on_closed, conn, str(rc))

        def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
            self._call_soon(self._on_puback, conn, mid, int(rc.value), str(rc))

        def on_subscribe(_c: Any, _u: Any, _mid: int, rcs: list[Any], _p: Any) -> None:
            self._call_soon(self._on_suback, conn, [(int(rc.value), str(rc)) for rc in rcs])

        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            props = getattr(msg, "properties", None)
            response = getattr(props, "ResponseTopic", None)
            correlation = getattr(props, "CorrelationData", None)
            user = getattr(props, "UserProperty", None) or ()
            self.router.dispatch(
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

    async def _end_session(
        self, conn: Connection, client: paho.Client, drain: asyncio.Task[None] | None
    ) -> None:
        self._conn = None
        if conn.connected:
            self._disconnects += 1
        conn.connected = False
        self._set_state(LinkState.DISCONNECTED)
        if drain is not None:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)
        # What was in flight and not acknowledged goes round again on the next connection:
        # outbox rows are still in the outbox; offers go back to the front of the RAM queue.
        self.offers.push(list(conn.offers.values()), front=True)
        conn.offers.clear()
        conn.rows.clear()
        for waiter in conn.waiters.values():
            if not waiter.done():
                waiter.set_result(False)
        if not conn.closed.done():
            client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        await self._drain.flush_acked()

    def _on_connected(self, conn: Connection, session_present: bool) -> None:
        conn.connected = True
        self._connects += 1
        self._next_attempt_at = None
        self._set_state(LinkState.CONNECTED)
        _LOGGER.info(
            "mqtt connected to %s:%d as %s (session present: %s%s)",
            self._mqtt.host,
            self._mqtt.port,
            self.client_id,
            session_present,
            f", after {self._failures} failure(s)" if self._failures else "",
        )
        self._failures = 0
        self._publish_state(conn)
        assert conn.client is not None
        for sub in self.router.subscriptions():
            conn.client.subscribe(sub.topic_filter, qos=sub.qos)
        self._flush_offers(conn)
        if self._wake is not None:
            self._wake.set()

    async def _goodbye(self, conn: Connection) -> None:
        """Clean shutdown: retained offline state, wait for its PUBACK, then DISCONNECT."""
        payload = self._state_payload(online=False, reason="shutdown", full=True)
        mid = self._publish(conn, self.state_topic, payload, retain=True)
        if mid is not None:
            waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            conn.waiters[mid] = waiter
            try:
                async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                    await waiter
            except TimeoutError:
                _LOGGER.warning("mqtt: offline state not acknowledged before disconnect")
        assert conn.client is not None
        # A normal DISCONNECT (reason 0) makes the broker discard the Last Will.
        conn.client.disconnect()
        _LOGGER.info("mqtt disconnected from %s:%d", self._mqtt.host, self._mqtt.port)

    # -- paho thread → loop thread --------------------------------------------------------

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            loop.call_soon_threadsafe(fn, *args)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _on_connack(self, conn: Connection, session_present: bool, rc: Any) -> None:
        if not conn.connack.done():
            conn.connack.set_result((session_present, int(rc.value), str(rc)))

    def _on_closed(self, conn: Connection, reason: str) -> None:
        if not conn.closed.done():
            conn.closed.set_result(reason)

    def _on_puback(self, conn: Connection, mid: int, code: int, name: str) -> None:
        ok = code < 0x80
        seq = conn.rows.pop(mid, None)
        if seq is not None:
            if ok:
                self._drain.acked.append(seq)
                if self._wake is not None:
                    self._wake.set()
            else:
                # Left in the outbox; retried on the next connection, not in a hot loop here.
                self._last_error = f"broker refused outbox seq {seq}: {name}"
                _LOGGER.warning("mqtt: broker refused outbox seq %d: %s", seq, name)
            return
        offer = conn.offers.pop(mid, None)
        if offer is not None:
            if ok:
                self._offers_published += 1
            else:
                self._offers_refused += 1
                _LOGGER.warning("mqtt: broker refused an offer: %s", name)
            return
        waiter = conn.waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(ok)
        if not ok:
            _LOGGER.warning("mqtt: broker refused a publish (mid %d): %s", mid, name)

    def _on_suback(self, conn: Connection, codes: list[tuple[int, str]]) -> None:
        conn.subacks += 1
        conn.sub_refused = conn.sub_refused or any(code >= 0x80 for code, _ in codes)
        expected = len(self.router.subscriptions())
        conn.subscribed = not conn.sub_refused and conn.subacks >= expected
        for code, name in codes:
            if code >= 0x80:
                self._last_error = f"a subscription was refused: {name}"
                _LOGGER.warning("mqtt: a subscription was refused: %s", name)

    # -- publishing (loop thread) ---------------------------------------------------------

    def _publish(
        self,
        conn: Connection,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Any = None,
    ) -> int | None:
        """QoS 1 publish on the current connection; the mid, or None if it was not sent."""
        from paho.mqtt.enums import MQTTErrorCode

        client = conn.client
        if client is None or not conn.connected:
            return None
        info = client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            _LOGGER.debug("mqtt: %s (%d bytes) not sent: rc=%s", topic, len(payload), info.rc)
            return None
        _LOGGER.debug("mqtt: sent %s (%d bytes, mid %d)", topic, len(payload), info.mid)
        return int(info.mid)

    def _state_payload(self, *, online: bool, reason: str | None, full: bool) -> bytes:
        state: dict[str, Any] = {}
        if full:
            try:
                state = dict(self._state_fn())
            except Exception:
                _LOGGER.exception("state() failed; publishing a minimal state")
        state.update(site=self._cfg.site, device=self._cfg.device, online=online)
        if reason is not None:
            state["reason"] = reason
        return json.dumps(state, separators=(",", ":"), default=str).encode()

    def _publish_state(self, conn: Connection) -> None:
        payload = self._state_payload(online=True, reason=None, full=True)
        if self._publish(conn, self.state_topic, payload, retain=True) is not None:
            self._states_published += 1

    # -- offers (RAM only) ----------------------------------------------------------------

    def _accept_offer(self, offer: PendingOffer) -> None:
        conn = self._conn
        if conn is not None and conn.connected and self._send_offer(conn, offer):
            return
        self.offers.push([offer])

    def _send_offer(self, conn: Connection, offer: PendingOffer) -> bool:
        mid = self._publish(conn, self.offer_topic, offer.body)
        if mid is None:
            return False
        conn.offers[mid] = offer
        return True

    def _flush_offers(self, conn: Connection) -> None:
        self.offers.expire()
        while (offer := self.offers.pop()) is not None:
            if not self._send_offer(conn, offer):
                self.offers.unpop(offer)
                return

    async def _offer_sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(OFFER_SWEEP_S)
            self.offers.expire()
