"""TLS with client certificates and per-device ACLs, as docs/broker.md configures Mosquitto.

The broker config and ACL are read from docs/broker.md itself; the certificates are generated
here with ``cryptography``. Device A must not publish to device B's topics or read B's
commands, a plain-text client is refused, and the daemon runs over TLS unchanged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.config.models import Mqtt, MqttTls
from tests.helpers import ROOT, demo_config

SITE = "s1"
DEV_A, DEV_B = f"{SITE}/dev-a", f"{SITE}/dev-b"


def _block(name: str) -> str:
    text = (ROOT / "docs" / "broker.md").read_text()
    m = re.search(rf"```conf {re.escape(name)}\n(.*?)```", text, re.S)
    assert m, f"docs/broker.md has no `{name}` block"
    return m.group(1)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, issuer_key = issuer or (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    """A CA, a server certificate and client certificates, as PEM files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca_key = _key()
        self.ca = _cert("shelfedge-test-ca", self.ca_key, None, ca=True)
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self.issue("localhost", server=True)

    def issue(self, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        key = _key()
        cert = _cert(cn, key, (self.ca.subject, self.ca_key), server=server)
        stem = cn.replace("/", "_")
        cert_file, key_file = self.folder / f"{stem}.pem", self.folder / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_file, key)
        return cert_file, key_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Pki]]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    pki = Pki(tmp_path)
    port = _free_port()
    acl = tmp_path / "acl"
    acl.write_text(_block("acl").format(site=SITE, device_a=DEV_A, device_b=DEV_B))
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        _block("mosquitto.conf").format(
            port=port,
            bind="127.0.0.1",
            ca=pki.ca_file,
            server_cert=pki.server_cert,
            server_key=pki.server_key,
            acl=acl,
        )
        # test-only: stay the current user so the broker can read the files in tmp_path
        + f"user {getpass.getuser()}\n"
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("TLS broker did not start: " + (tmp_path / "mosquitto.log").read_text())
    try:
        yield port, pki
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        log.close()


class Client:
    """A paho MQTT 5 client over TLS with a client certificate."""

    def __init__(self, port: int, pki: Pki, cn: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        cert, key = pki.issue(cn)
        self.messages: list[tuple[str, bytes]] = []
        self.granted: list[int] = []
        self._c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._c.tls_set(ca_certs=str(pki.ca_file), certfile=str(cert), keyfile=str(key))
        self._c.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self._c.on_subscribe = lambda _c, _u, _m, rcs, _p: self.granted.extend(
            int(rc.value) for rc in rcs
        )
        self._c.connect("127.0.0.1", port)
        self._c.loop_start()
        deadline = time.monotonic() + 5
        while not self._c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self._c.is_connected(), f"{cn} could not connect over TLS"

    def sub(self, topic: str) -> None:
        n = len(self.granted)
        self._c.subscribe(topic, qos=1)
        deadline = time.monotonic() + 5
        while len(self.granted) == n and time.monotonic() < deadline:
            time.sleep(0.02)

    def pub(self, topic: str, payload: bytes) -> None:
        self._c.publish(topic, payload, qos=1).wait_for_publish(timeout=5)

    def close(self) -> None:
        self._c.loop_stop()
        self._c.disconnect()


def test_devices_are_confined_to_their_own_topics(tls_broker: tuple[int, Pki]) -> None:
    port, pki = tls_broker
    central = Client(port, pki, "central")
    dev_a = Client(port, pki, DEV_A)
    dev_b = Client(port, pki, DEV_B)
    try:
        central.sub("shelfedge/v1/#")
        dev_b.sub(f"shelfedge/v1/{DEV_B}/cmd/#")
        dev_a.sub(f"shelfedge/v1/{DEV_B}/cmd/#")  # A tries to read B's commands
        dev_a.pub(f"shelfedge/v1/{DEV_A}/state", b"a-own")
        dev_a.pub(f"shelfedge/v1/{DEV_B}/state", b"a-spoofs-b")
        dev_a.pub(f"shelfedge/v1/{DEV_B}/cmd/restart", b"a-commands-b")
        central.pub(f"shelfedge/v1/{DEV_B}/cmd/status", b"for-b-only")
        time.sleep(0.5)
        seen = {p for _t, p in central.messages}
        assert b"a-own" in seen
        assert b"a-spoofs-b" not in seen and b"a-commands-b" not in seen
        assert (f"shelfedge/v1/{DEV_B}/cmd/status", b"for-b-only") in dev_b.messages
        assert all(p != b"for-b-only" for _t, p in dev_a.messages)
    finally:
        for c in (central, dev_a, dev_b):
            c.close()


def test_plain_text_and_unknown_certificates_are_refused(
    tls_broker: tuple[int, Pki], tmp_path: Path
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    port, pki = tls_broker
    plain = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    with pytest.raises((OSError, ssl.SSLError, ConnectionError)):
        plain.connect("127.0.0.1", port)
        plain.loop_start()
        time.sleep(0.5)
        if not plain.is_connected():
            raise ConnectionError("refused")
    plain.loop_stop()
    # a certificate from another CA
    (tmp_path / "rogue").mkdir()
    rogue = Pki(tmp_path / "rogue")
    with pytest.raises(AssertionError, match="could not connect"):
        Client(port, _Mixed(pki.ca_file, rogue), DEV_A)


class _Mixed(Pki):
    """Trusts the real CA but issues client certificates from a rogue one."""

    def __init__(self, ca_file: Path, rogue: Pki) -> None:
        self.folder = rogue.folder
        self.ca_key, self.ca = rogue.ca_key, rogue.ca
        self.ca_file = ca_file


@pytest.mark.timeout(60)
async def test_daemon_runs_over_tls(tls_broker: tuple[int, Pki], tmp_path: Path) -> None:
    from edge.daemon.app import Application, Features

    port, pki = tls_broker
    cert, key = pki.issue(DEV_A)
    site, device = DEV_A.split("/")
    cfg = demo_config(
        site=site,
        device=device,
        state_dir=tmp_path / "state",
        mqtt=Mqtt(
            enabled=True,
            host="127.0.0.1",
            port=port,
            tls=MqttTls(ca=pki.ca_file, cert=cert, key=key),
        ),
    )
    central = await asyncio.to_thread(Client, port, pki, "central")
    await asyncio.to_thread(central.sub, "shelfedge/v1/#")
    app = Application(
        cfg, features=Features(display=False, mqtt=True, model=False, autotick=False, control=False)
    )
    await app.start()
    try:
        for _ in range(100):
            if any(t == f"shelfedge/v1/{DEV_A}/state" for t, _p in central.messages):
                break
            await asyncio.sleep(0.05)
        states: list[Any] = [p for t, p in central.messages if t.endswith("/state")]
        assert states, "the daemon's state never arrived over TLS"
        assert b'"insecure_transport":false' in states[-1]
    finally:
        await app.stop()
        central.close()


def test_doctor_broker_check_over_tls(tls_broker: tuple[int, Pki], tmp_path: Path) -> None:
    from edge.ops.doctor import _broker

    port, pki = tls_broker
    cert, key = pki.issue(DEV_A)
    site, device = DEV_A.split("/")

    def cfg_with(tls: MqttTls | None) -> Any:
        return demo_config(
            site=site,
            device=device,
            mqtt=Mqtt(enabled=True, host="127.0.0.1", port=port, tls=tls),
        )

    ok = _broker(cfg_with(MqttTls(ca=pki.ca_file, cert=cert, key=key)))
    assert ok.status == "ok" and "CONNECT accepted" in ok.detail
    plain = _broker(cfg_with(None))  # TLS listener, plain client: refused
    assert plain.status == "fail"
