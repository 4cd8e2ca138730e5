"""Sign a command, publish it to one device or a whole site, collect the acks.

Acks come back on a private response topic (MQTT 5 response topic + correlation data), so
several operators can send at once without reading each other's acks.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.commands.envelope import sign

TOPIC_ROOT = "shelfedge/v1"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command goes."""

    host: str
    port: int
    site: str
    device: str | None  # None = every device of the site (``all``)


def send(
    target: Target,
    key: Ed25519PrivateKey,
    kid: str,
    name: str,
    args: dict[str, Any],
    *,
    timeout_s: float = 10.0,
    expect: int | None = None,
    ttl_s: int = 300,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send one signed command; return the envelope and the acks received before the timeout.

    With a device, waiting stops at the first ack; with ``all``, at ``expect`` acks (or the
    timeout when ``expect`` is None).
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    env = sign(key, kid, args, issued_at=int(time.time()), ttl_s=ttl_s)
    correlation = uuid.uuid4().bytes
    reply_topic = f"{TOPIC_ROOT}/{target.site}/central/{uuid.uuid4().hex}"
    where = target.device or "all"
    topic = f"{TOPIC_ROOT}/{target.site}/{where}/cmd/{name}"
    acks: queue.Queue[dict[str, Any]] = queue.Queue()
    subscribed = queue.Queue[bool]()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"shelfedge-fleet-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )

    def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe(reply_topic, qos=1)

    def on_subscribe(_c: Any, _u: Any, _m: Any, _r: Any, _p: Any) -> None:
        subscribed.put(True)

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        corr = getattr(msg.properties, "CorrelationData", None)
        if corr is not None and bytes(corr) != correlation:
            return
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(body, dict) and body.get("id") == env["id"]:
            acks.put(body)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(target.host, target.port, keepalive=30)
    client.loop_start()
    try:
        subscribed.get(timeout=timeout_s)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        client.publish(topic, json.dumps(env).encode(), qos=1, properties=props).wait_for_publish(
            timeout=timeout_s
        )
        want = 1 if target.device else expect
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while want is None or len(got) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                got.append(acks.get(timeout=left))
            except queue.Empty:
                break
        return env, got
    finally:
        client.loop_stop()
        client.disconnect()
