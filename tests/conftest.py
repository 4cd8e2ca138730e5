"""Shared fixtures: a real Mosquitto broker (session-scoped, restartable on the same port for
outage tests), a per-test state directory, and ``mqtt_capture``, a real paho subscriber that
records every message on a topic filter (e.g. ``#`` for the privacy canary).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

READY_TIMEOUT_S = 10.0


def _mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A Mosquitto process on a fixed loopback port; ``stop()``/``start()`` for outages."""

    host = "127.0.0.1"

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart) the broker on the same port; returns once it accepts."""
        if self.running:
            return
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited ({self._proc.returncode}):\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"mosquitto not accepting on {self.port} within {READY_TIMEOUT_S} s:\n"
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); clients see their connections drop."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A running Mosquitto for the whole session (skipped without the binary unless CI)."""
    binary = _mosquitto_binary()
    if binary is None:
        reason = "mosquitto binary not found (apt-get install mosquitto, or scripts/run-tests.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so this is an error, not a skip")
        pytest.skip(reason)
    broker = Mosquitto(binary, tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A fresh state directory (the daemon's ``state_dir``) for one test."""
    path = tmp_path / "state"
    path.mkdir()
    return path


@dataclass(frozen=True, slots=True)
class Captured:
    """One message as a subscriber saw it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    user_properties: tuple[tuple[str, str], ...]
    ts: float
    correlation: bytes | None = None


class MqttCapture:
    """A real paho (MQTT 5) subscriber recording every message on ``topic_filter``.

    It reconnects and re-subscribes by itself after a broker restart; ``publish`` sends as a
    peer (e.g. the store app). Waiting helpers come in async (``wait_for``) and blocking
    (``wait_for_blocking``) flavours so async tests never block their own event loop.
    """

    def __init__(self, host: str, port: int, topic_filter: str, *, qos: int = 1) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.topic_filter = topic_filter
        self._qos = qos
        self._lock = threading.Lock()
        self._messages: list[Captured] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"capture-{uuid.uuid4().hex[:12]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect(host, port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(READY_TIMEOUT_S):
            self.close()
            raise TimeoutError(f"capture: no SUBACK for {topic_filter} on {host}:{port}")

    def _on_connect(self, client: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            self._subscribed.clear()
            client.subscribe(self.topic_filter, qos=self._qos)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, _rcs: Any, _p: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        props = getattr(msg.properties, "UserProperty", None) or []
        corr = getattr(msg.properties, "CorrelationData", None)
        item = Captured(
            msg.topic,
            bytes(msg.payload),
            msg.qos,
            bool(msg.retain),
            tuple(props),
            time.time(),
            bytes(corr) if corr else None,
        )
        with self._lock:
            self._messages.append(item)

    def messages(self, topic: str | None = None) -> list[Captured]:
        """Everything captured so far (optionally on one exact topic), in arrival order."""
        with self._lock:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        """Publish as a peer and wait (briefly, blocking) until it left this client."""
        props = None
        if response_topic is not None or correlation is not None:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(timeout=READY_TIMEOUT_S)

    async def wait_for(
        self, predicate: Callable[[list[Captured]], bool], within: float = 5.0
    ) -> list[Captured]:
        """Poll (without blocking the loop) until ``predicate(messages)`` holds."""
        deadline = time.monotonic() + within
        while True:
            msgs = self.messages()
            if predicate(msgs):
                return msgs
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"capture {self.topic_filter}: condition not met in {within} s; "
                    f"got {[(m.topic, len(m.payload)) for m in msgs]}"
                )
            await asyncio.sleep(0.02)

    def wait_for_blocking(
        self, predicate: Callable[[list[Captured]], bool], within: float = 5.0
    ) -> list[Captured]:
        """Like ``wait_for`` for synchronous tests."""
        deadline = time.monotonic() + within
        while not predicate(msgs := self.messages()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"capture {self.topic_filter}: condition not met in {within} s")
            time.sleep(0.02)
        return msgs

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def mqtt_capture(mosquitto: Mosquitto) -> Iterator[Callable[[str], MqttCapture]]:
    """Factory: ``mqtt_capture("shelfedge/#")`` subscribes (SUBACK received) and records."""
    captures: list[MqttCapture] = []

    def make(topic_filter: str) -> MqttCapture:
        cap = MqttCapture(mosquitto.host, mosquitto.port, topic_filter)
        captures.append(cap)
        return cap

    yield make
    for cap in captures:
        cap.close()
