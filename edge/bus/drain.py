"""The outbox drain: publish undelivered rows in ``seq`` order, delete each after its PUBACK.

At most ``INFLIGHT_WINDOW`` rows are unacknowledged on one connection. A row goes to its full
topic (an MQTT 5 response topic, with its correlation data) when it has one, else under the
device root. Acknowledged rows are deleted in batches; a row whose delete fails is sent again
later, a duplicate that consumers drop by its ``id``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from edge.bus.outbox import Outbox, OutboxRow
from edge.bus.session import Connection
from edge.errors import OutboxError

_LOGGER = logging.getLogger(__name__)
INFLIGHT_WINDOW = 10  # outbox rows published but not yet acknowledged, per connection

Publish = Callable[..., int | None]


class OutboxDrain:
    """Moves outbox rows to the broker for one link."""

    def __init__(self, outbox: Outbox, root: str, on_error: Callable[[str], None]) -> None:
        self._outbox = outbox
        self._root = root
        self._on_error = on_error
        self.acked: list[int] = []  # acknowledged outbox seqs not yet deleted
        self.published = 0  # outbox rows acknowledged by the broker

    @staticmethod
    def row_properties(row: OutboxRow) -> Any:
        """PUBLISH properties of a row: its id and seq, and correlation data if any."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [("id", row.id), ("seq", str(row.seq))]
        if row.correlation is not None:
            props.CorrelationData = row.correlation
        return props

    async def run(self, conn: Connection, wake: asyncio.Event, publish: Publish) -> None:
        """Publish undelivered outbox rows in seq order, at most INFLIGHT_WINDOW unacknowledged."""
        while True:
            await wake.wait()
            wake.clear()
            await self.flush_acked()
            room = INFLIGHT_WINDOW - len(conn.rows)
            if not conn.connected or room <= 0:
                continue
            try:
                rows = await asyncio.to_thread(self._outbox.pending, room, after=conn.after)
            except OutboxError as exc:
                self._on_error(str(exc))
                _LOGGER.error("mqtt: cannot read the outbox: %s", exc)
                await asyncio.sleep(1.0)
                wake.set()
                continue
            for row in rows:
                topic = row.full_topic or f"{self._root}/{row.topic}"
                mid = publish(conn, topic, row.payload, properties=self.row_properties(row))
                if mid is None:
                    return  # the connection is going down; the next one starts over
                conn.rows[mid] = row.seq
                conn.after = row.seq
            if len(rows) == room:
                wake.set()  # there may be more

    async def flush_acked(self) -> None:
        """Delete the rows the broker acknowledged."""
        if not self.acked:
            return
        seqs, self.acked = self.acked, []
        self.published += len(seqs)
        try:
            await asyncio.to_thread(self._outbox.mark_delivered_many, seqs)
        except OutboxError as exc:
            # The rows stay and are sent again later: a duplicate, which consumers drop by id.
            self._on_error(str(exc))
            _LOGGER.error("mqtt: cannot delete %d delivered outbox row(s): %s", len(seqs), exc)
