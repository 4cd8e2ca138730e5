"""The uplink stage: the SQLite WAL outbox that every outbound aggregate is committed to first
(``Outbox``, ``OutboxRow``) and the MQTT link that owns the broker connection, publishes the
retained device state, drains the outbox at QoS 1 deleting rows only after PUBACK, sends offers
from RAM and hands app sightings to the daemon (``MqttLink``, ``LinkState``). paho-mqtt is
imported only when a link connects, so importing this package stays light.
"""

from edge.bus.mqtt import MqttLink
from edge.bus.outbox import Outbox, OutboxRow
from edge.bus.session import LinkState

__all__ = ["LinkState", "MqttLink", "Outbox", "OutboxRow"]
