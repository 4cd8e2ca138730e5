"""``shelfedge fleet listen``: the central consumer of aggregates and device state.

One MQTT 5 session (paho, its network thread) subscribes to

- ``$share/{group}/shelfedge/v1/+/+/agg`` and ``…/ack``: shared, so several listeners split
  the load and each message goes to one of them;
- ``shelfedge/v1/+/+/state``: *not* shared, because brokers do not send retained messages to
  shared subscriptions (MQTT 5 §4.8.2) and the state is retained; every listener upserts the
  same row, so storing it twice changes nothing.

Messages cross to the event loop, are validated there (``messages.py``) and stored by one
worker thread that owns the database connection (``store.py``). The PUBACK is sent only
after the row is committed (paho ``manual_ack``), and at most ``RECEIVE_MAXIMUM`` messages
are in flight, so a listener that dies loses nothing it acknowledged. De-duplication is the
database's: the aggregate ``id`` is the primary key, so a window delivered twice (at least
once from the device's outbox) or to two listeners is stored once. Rejected messages are
acknowledged too (a redelivery would be rejected again), counted by kind and logged with the
kind and topic only. Offers (they carry tokens) are never subscribed to.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .messages import Reject, parse_ack, parse_aggregate, parse_state, parse_topic
from .store import SqlStore, describe, open_store

_LOGGER = logging.getLogger(__name__)
TOPIC_ROOT = "shelfedge/v1"
RECEIVE_MAXIMUM = 100  # unacknowledged QoS 1 messages the broker may send us at once
DEFAULT_MAX_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ListenOptions:
    """Where to listen and where to store."""

    db: str = "sqlite:///fleet.db"
    host: str = "127.0.0.1"
    port: int = 1883
    group: str = "shelfedge-fleet"
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    client_id: str | None = None
    keepalive_s: int = 30
    progress_s: float = 60.0
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(slots=True)
class ListenCounts:
    """What this listener did since it started."""

    stored: int = 0
    duplicates: int = 0
    states: int = 0
    acks: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        """One progress line (counts only)."""
        rejects = ",".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "-"
        return (
            f"stored={self.stored} duplicates={self.duplicates} states={self.states} "
            f"acks={sum(self.acks.values())} rejected={sum(self.rejected.values())} "
            f"({rejects})"
        )


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


def subscriptions(group: str) -> list[tuple[str, int]]:
    """The topic filters, at QoS 1."""
    return [
        (f"$share/{group}/{TOPIC_ROOT}/+/+/agg", 1),
        (f"$share/{group}/{TOPIC_ROOT}/+/+/ack", 1),
        (f"{TOPIC_ROOT}/+/+/state", 1),
    ]


class Listener:
    """One listener process: ``run(stop)`` until ``stop`` is set."""

    def __init__(self, opts: ListenOptions) -> None:
        self.opts = opts
        self.counts = ListenCounts()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-db")
        self._store: SqlStore | None = None
        self._queue: asyncio.Queue[_Message | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed = asyncio.Event()
        self._unsubscribed = asyncio.Event()
        self._client: Any = None

    # -- paho thread ------------------------------------------------------------------------

    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        o = self.opts
        cid = o.client_id or f"shelfedge-listen-{socket.gethostname()}-{os.getpid()}"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cid,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if o.username is not None:
            secret = None if o.password_file is None else o.password_file.read_text().strip()
            client.username_pw_set(o.username, secret)
        if o.tls_ca is not None:
            client.tls_set(
                ca_certs=str(o.tls_ca),
                certfile=None if o.tls_cert is None else str(o.tls_cert),
                keyfile=None if o.tls_key is None else str(o.tls_key),
            )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = lambda *_a: self._set_threadsafe(self._subscribed)
        client.on_unsubscribe = lambda *_a: self._set_threadsafe(self._unsubscribed)
        client.on_message = self._on_message
        client.connect_async(o.host, o.port, keepalive=o.keepalive_s, properties=props)
        return client

    def _on_connect(self, client: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            _LOGGER.warning("broker %s:%d refused the connection: %s", *self._where(), rc)
            return
        _LOGGER.info("connected to %s:%d", *self._where())
        client.subscribe(subscriptions(self.opts.group))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            _LOGGER.warning("broker %s:%d: connection lost (%s); reconnecting", *self._where(), rc)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        item = _Message(msg.topic, bytes(msg.payload), int(msg.mid), int(msg.qos))
        assert self._loop is not None and self._queue is not None
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _set_threadsafe(self, event: asyncio.Event) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(event.set)

    def _where(self) -> tuple[str, int]:
        return self.opts.host, self.opts.port

    # -- event loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> ListenCounts:
        """Open the store, connect, consume until ``stop``; then finish what arrived."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._queue = asyncio.Queue()
        self._store = await loop.run_in_executor(self._db, open_store, self.opts.db)
        version = await loop.run_in_executor(self._db, self._store.schema_version)
        self._client = self._make_client()
        self._client.loop_start()
        consumer = asyncio.create_task(self._consume())
        progress = asyncio.create_task(self._progress())
        announce = asyncio.create_task(self._announce(version))
        try:
            await stop.wait()
        finally:
            progress.cancel()
            announce.cancel()
            await self._shutdown(consumer)
        return self.counts

    async def _shutdown(self, consumer: asyncio.Task[None]) -> None:
        """Unsubscribe (no new messages), store and acknowledge what came, disconnect."""
        assert self._queue is not None
        client = self._client
        if client is not None and client.is_connected():
            client.unsubscribe([t for t, _q in subscriptions(self.opts.group)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unsubscribed.wait(), 5.0)
        self._queue.put_nowait(None)
        await consumer
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        if self._store is not None:
            await asyncio.get_running_loop().run_in_executor(self._db, self._store.close)
        self._db.shutdown(wait=True)
        _LOGGER.info("stopped: %s", self.counts.line())

    async def _announce(self, version: int) -> None:
        await self._subscribed.wait()
        _LOGGER.info(
            "listening on %s:%d group=%s db=%s (schema v%d)",
            *self._where(),
            self.opts.group,
            describe(self.opts.db),
            version,
        )

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(self.opts.progress_s)
            _LOGGER.info("progress: %s", self.counts.line())

    async def _consume(self) -> None:
        assert self._queue is not None
        while (item := await self._queue.get()) is not None:
            await self.handle(item.topic, item.payload)
            if item.qos > 0 and self._client is not None:
                self._client.ack(item.mid, item.qos)

    async def handle(self, topic: str, payload: bytes) -> str:
        """Validate and store one message; returns what happened (a reject kind or outcome)."""
        loop = asyncio.get_running_loop()
        assert self._store is not None
        try:
            if len(payload) > self.opts.max_bytes:
                raise Reject("too_large")
            _site, _device, channel = parse_topic(topic)
            if channel == "agg":
                agg = parse_aggregate(topic, payload)
                new = await loop.run_in_executor(self._db, self._store.add_aggregate, agg)
                if new:
                    self.counts.stored += 1
                    return "stored"
                self.counts.duplicates += 1
                return "duplicate"
            if channel == "state":
                state = parse_state(topic, payload)
                await loop.run_in_executor(
                    self._db,
                    self._store.put_state,
                    state.site,
                    state.device,
                    state.online,
                    state.model_dump_json(exclude_none=True),
                )
                self.counts.states += 1
                return "state"
            ack = parse_ack(topic, payload)
            self.counts.acks[ack.status] += 1
            return "ack"
        except Reject as rej:
            self.counts.rejected[rej.kind] += 1
            _LOGGER.warning("rejected a message on %s: %s", _safe_topic(topic), rej.kind)
            return rej.kind


def _safe_topic(topic: str) -> str:
    """The topic for a log line, bounded and printable."""
    text = topic[:200]
    return "".join(ch if ch.isprintable() else "?" for ch in text)


async def listen(opts: ListenOptions, stop: asyncio.Event) -> ListenCounts:
    """Run one listener until ``stop`` is set."""
    started = time.monotonic()
    counts = await Listener(opts).run(stop)
    _LOGGER.debug("listened for %.0f s", time.monotonic() - started)
    return counts


def _cmd_listen(args: argparse.Namespace) -> int:
    from .store import StoreError

    if args.tls_ca is None and (args.tls_cert or args.tls_key):
        print("shelfedge fleet listen: --tls-cert/--tls-key need --tls-ca", file=sys.stderr)
        return 2
    opts = ListenOptions(
        db=args.db,
        host=args.host,
        port=args.port,
        group=args.group,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        username=args.username,
        password_file=args.password_file,
        client_id=args.client_id,
        progress_s=args.progress_s,
    )
    if args.verbose == 0:
        logging.getLogger("edge.fleet").setLevel(logging.INFO)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await listen(opts, stop)

    try:
        asyncio.run(main())
    except StoreError as exc:
        print(f"shelfedge fleet listen: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"shelfedge fleet listen: {exc}", file=sys.stderr)
        return 1
    return 0


def add_listen_parser(fsub: Any) -> None:
    """Register ``fleet listen``."""
    p = fsub.add_parser("listen", help="store aggregates and device state from the broker")
    p.add_argument("--db", default="sqlite:///fleet.db", help="sqlite:///FILE or postgresql://…")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--group", default="shelfedge-fleet", help="shared-subscription group")
    p.add_argument("--tls-ca", type=Path, help="CA file: connect with TLS")
    p.add_argument("--tls-cert", type=Path, help="client certificate (with --tls-ca)")
    p.add_argument("--tls-key", type=Path, help="client key (with --tls-ca)")
    p.add_argument("--username")
    p.add_argument("--password-file", type=Path, help="file holding the broker password")
    p.add_argument("--client-id", help="MQTT client id (default: host and pid)")
    p.add_argument(
        "--progress-s", type=float, default=60.0, help="seconds between progress lines (60)"
    )
    p.set_defaults(func=_cmd_listen)
