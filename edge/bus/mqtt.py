"""The MQTT uplink: what the device publishes and receives over its one broker session.

``MqttLink.run`` owns the link for the daemon's lifetime. Over the ``Session`` (connection,
Last Will, backoff: ``edge/bus/session.py``) it publishes the retained ``state`` on every
connect (``online: false`` as the Last Will and on a clean stop), drains the on-disk outbox in
``seq`` order at QoS 1 deleting a row only after its PUBACK (``edge/bus/drain.py``), publishes
offers from RAM only (``edge/bus/offers.py``: bounded while offline, expired offers dropped and
counted), and subscribes every filter of its ``Router`` (``edge/bus/router.py``), which hands
received messages to their handlers on the event loop. All link state lives on the loop
thread. Payloads are never logged (offers carry tokens); log lines name topics and sizes only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.bus.drain import OutboxDrain
from edge.bus.offers import OfferQueue, PendingOffer
from edge.bus.outbox import Outbox
from edge.bus.router import Inbound, Router
from edge.bus.session import Connection, LinkState, Session
from edge.privacy.holders import Holding

if TYPE_CHECKING:
    from edge.config.models import AppConfig

_LOGGER = logging.getLogger(__name__)

TOPIC_ROOT = "shelfedge/v1"
GOODBYE_TIMEOUT_S = 2.0  # wait for the PUBACK of the final offline state
OFFER_SWEEP_S = 1.0
INBOX_MAX = 1_000  # app sighting messages waiting for the event loop
COMMANDS_PENDING_MAX = 64


class MqttLink:
    """The device's MQTT link; ``run()`` is its one owned loop (see the module docstring).

    ``state`` returns the device state (published retained on ``state``); ``on_sightings``
    receives each raw app-sightings payload and ``on_command`` each command message on the
    event loop thread. ``clock`` is the wall clock that offers' ``expires_at`` refers to;
    ``backoff_base_s``/``backoff_max_s`` shape the reconnect delay.
    """

    holder_name = "bus.offers"

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
        self._cfg = cfg
        self._mqtt = cfg.mqtt
        self._state_fn = state
        self._clock = clock
        self._mono = monotonic
        client_id = cfg.mqtt.client_id or f"shelfedge-{cfg.site}-{cfg.device}"
        self.root = f"{TOPIC_ROOT}/{cfg.site}/{cfg.device}"
        self.state_topic = f"{self.root}/state"
        self.offer_topic = f"{self.root}/offer"
        self.sightings_topic = f"{TOPIC_ROOT}/{cfg.site}/sightings"
        self.router = router or Router()
        self._subscribe_defaults(on_sightings, on_command)
        self.session = Session(
            cfg,
            client_id,
            self,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
        )
        self.client_id = client_id
        self._wake: asyncio.Event | None = None
        self._drain = OutboxDrain(outbox, self.root, self._set_error)
        self.offers = OfferQueue(clock=clock, retention_s=cfg.privacy.raw_retention_s)
        self._states_published = 0
        self._offers_published = 0
        self._offers_refused = 0

    def _subscribe_defaults(
        self,
        on_sightings: Callable[[bytes], None] | None,
        on_command: Callable[[Inbound], None] | None,
    ) -> None:
        limit = self._cfg.commands.max_payload_bytes
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
            for prefix in (f"{self.root}/cmd/", f"{TOPIC_ROOT}/{self._cfg.site}/all/cmd/"):
                self.router.subscribe(
                    prefix + "+",
                    on_command,
                    qos=1,
                    max_bytes=2 * limit + 4096,  # a little over the bound is acked too_large
                    name="commands",
                    max_pending=COMMANDS_PENDING_MAX,
                )

    # -- public API ---------------------------------------------------------------------

    @property
    def online(self) -> bool:
        """True while connected to the broker (CONNACK received, not yet lost)."""
        return self.session.state is LinkState.CONNECTED

    @property
    def link_state(self) -> LinkState:
        """The link's current state."""
        return self.session.state

    @property
    def _conn(self) -> Connection | None:
        return self.session.conn

    def _backoff(self, tries: int, auth_failure: bool) -> float:
        return self.session.backoff(tries, auth_failure)

    async def run(self) -> None:
        """Own the link until cancelled; cancellation says goodbye (offline state) cleanly."""
        if self._wake is not None:
            raise RuntimeError("MqttLink.run() is already running")
        self._wake = asyncio.Event()
        self.session.loop = asyncio.get_running_loop()
        self.router.attach(self.session.call_soon)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.session.run(), name="shelfedge-mqtt-link")
                tg.create_task(self._offer_sweep_loop(), name="shelfedge-mqtt-offers")
        finally:
            self.router.attach(None)
            self._wake = None

    def notify_outbox(self) -> None:
        """Wake the outbox drain after a ``put`` (callable from any thread)."""
        wake = self._wake
        if wake is not None:
            self.session.call_soon(wake.set)

    def publish_state(self) -> None:
        """Re-publish the retained ``state`` now (callable from any thread; no-op offline)."""
        if not self.session.on_loop():
            self.session.call_soon(self.publish_state)
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
        if self.session.loop is not None and not self.session.on_loop():
            self.session.call_soon(self._accept_offer, offer)
        else:
            self._accept_offer(offer)
        return True

    def health(self) -> dict[str, Any]:
        """Counters and state for the device state (never payloads)."""
        s = self.session
        conn = s.conn
        next_in = None
        if s.next_attempt_at is not None and s.state is LinkState.DISCONNECTED:
            next_in = round(max(0.0, s.next_attempt_at - time.monotonic()), 1)
        return {
            "state": s.state.value,
            "broker": f"{self._mqtt.host}:{self._mqtt.port}",
            "connects": s.connects,
            "disconnects": s.disconnects,
            "failed_attempts": s.failures,
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
            "last_error": s.last_error,
        }

    # -- RawHolder: offers (tokens) and inbound messages waiting in RAM ------------------

    def purge(self, mono_now: float) -> None:
        """Drop queued offers older than the raw retention (they carry a token)."""
        self.offers.purge(mono_now)

    def forget(self, token: bytes) -> int:
        """Drop queued offers for a token."""
        return self.offers.forget(token)

    def held(self, mono_now: float) -> Holding:
        """Offers waiting or in flight, plus inbound messages not yet handed to the loop."""
        conn = self._conn
        offers = [*self.offers, *(() if conn is None else conn.offers.values())]
        oldest = min((o.made_mono for o in offers), default=mono_now)
        return Holding(len(offers) + self.router.held(), max(0.0, mono_now - oldest))

    # -- SessionHandler -------------------------------------------------------------------

    def will(self) -> tuple[str, bytes]:
        """The Last Will: the retained state, offline."""
        return self.state_topic, self._state_payload(
            online=False, reason="connection_lost", full=False
        )

    def on_connected(self, conn: Connection, session_present: bool) -> None:
        """Publish the state, subscribe every router filter, flush offers, wake the drain."""
        self._publish_state(conn)
        assert conn.client is not None
        for sub in self.router.subscriptions():
            conn.client.subscribe(sub.topic_filter, qos=sub.qos)
        self._flush_offers(conn)
        if self._wake is not None:
            self._wake.set()

    async def serve(self, conn: Connection) -> None:
        """While connected: drain the outbox."""
        assert self._wake is not None
        await self._drain.run(conn, self._wake, self._publish)

    async def goodbye(self, conn: Connection) -> None:
        """Clean shutdown: retained offline state, wait for its PUBACK, then DISCONNECT."""
        payload = self._state_payload(online=False, reason="shutdown", full=True)
        mid = conn.publish(self.state_topic, payload, retain=True)
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

    async def on_ended(self, conn: Connection) -> None:
        """What was in flight goes round again: rows stay in the outbox, offers are requeued."""
        self.offers.push(list(conn.offers.values()), front=True)
        conn.offers.clear()
        conn.rows.clear()
        await self._drain.flush_acked()

    def on_puback(self, conn: Connection, mid: int, ok: bool, name: str) -> None:
        """Route a PUBACK to the outbox row, offer or waiter it belongs to."""
        seq = conn.rows.pop(mid, None)
        if seq is not None:
            if ok:
                self._drain.acked.append(seq)
                if self._wake is not None:
                    self._wake.set()
            else:
                # Left in the outbox; retried on the next connection, not in a hot loop here.
                self._set_error(f"broker refused outbox seq {seq}: {name}")
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

    def on_suback(self, conn: Connection, codes: list[tuple[int, str]]) -> None:
        """Count SUBACKs; ``subscribed`` once every router filter is granted."""
        conn.subacks += 1
        conn.sub_refused = conn.sub_refused or any(code >= 0x80 for code, _ in codes)
        conn.subscribed = not conn.sub_refused and conn.subacks >= len(self.router.subscriptions())
        for code, name in codes:
            if code >= 0x80:
                self._set_error(f"a subscription was refused: {name}")
                _LOGGER.warning("mqtt: a subscription was refused: %s", name)

    def on_message(self, msg: Inbound) -> None:
        """paho's thread: hand to the router (bounds checked there, delivery on the loop)."""
        self.router.dispatch(msg)

    # -- publishing (loop thread) ---------------------------------------------------------

    def _set_error(self, message: str) -> None:
        self.session.last_error = message

    def _publish(
        self,
        conn: Connection,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Any = None,
    ) -> int | None:
        return conn.publish(topic, payload, retain=retain, properties=properties)

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
        if conn.publish(self.state_topic, payload, retain=True) is not None:
            self._states_published += 1

    # -- offers (RAM only) ----------------------------------------------------------------

    def _accept_offer(self, offer: PendingOffer) -> None:
        conn = self._conn
        if conn is not None and conn.connected and self._send_offer(conn, offer):
            return
        self.offers.push([offer])

    def _send_offer(self, conn: Connection, offer: PendingOffer) -> bool:
        mid = conn.publish(self.offer_topic, offer.body)
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
