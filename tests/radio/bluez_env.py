"""A real BlueZ-shaped D-Bus world for scanner tests: a private dbus-daemon with bluezoo.

``BluezWorld`` starts a ``dbus-daemon`` (permissive system-bus config, unix socket in a temp
dir) and bluezoo (PyPI, ``--auto-enable --scan-interval 1``, one ``-a ADDR`` per adapter) as
the ``org.bluez`` service on it. Tests point ``DBUS_SYSTEM_BUS_ADDRESS`` at it, so real bleak
(and the scanner's own dbus-fast connection) talk to it exactly as to bluetoothd.

``BluezControl`` is the test's own D-Bus connection: it registers ``LEAdvertisement1``
objects on peripheral adapters (bluezoo turns them into ``Device1`` objects on the scanning
adapters), removes and adds adapters through ``org.bluezoo.Manager1``, removes devices
between tests, records ``Adapter1.Powered`` changes, and emits ``Device1.RSSI``
``PropertiesChanged`` signals: bluezoo always reports RSSI 0 and emits nothing for an
unchanged advert, while real BlueZ with duplicate data emits an RSSI update per advert.

Run as a script this file is the bluezoo launcher: bluezoo 1.0.2 declares
``ManufacturerData`` as ``a{sv}`` where BlueZ uses ``a{qv}``, which breaks its discovery loop
on real-style adverts; the launcher sets the BlueZ signature before bluezoo is imported.
"""

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

READY_TIMEOUT_S = 15.0
BLUEZ = "org.bluez"
OM_IFACE = "org.freedesktop.DBus.ObjectManager"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
INSTALL_HINT = (
    "install the test prerequisites: Debian package `dbus-daemon` (apt-get install dbus-daemon) "
    "and `pip install -e .[test]` (bluezoo); ./scripts/run-tests.sh does both"
)

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"""


def adapter_address(index: int) -> str:
    """The public address bluezoo gives adapter ``hci{index}`` in these tests."""
    return f"00:00:00:{index + 1:02X}:00:00"


def device_path(scanning: str, peer_index: int) -> str:
    """Object path of peer adapter ``peer_index`` as a device seen by ``scanning``."""
    return f"/org/bluez/{scanning}/dev_{adapter_address(peer_index).replace(':', '_')}"


def prerequisites() -> tuple[str, str] | str:
    """(dbus-daemon path, python with bluezoo) or what is missing."""
    daemon = shutil.which("dbus-daemon") or next(
        (p for p in ("/usr/bin/dbus-daemon", "/bin/dbus-daemon") if os.access(p, os.X_OK)), None
    )
    if daemon is None:
        return f"dbus-daemon not found; {INSTALL_HINT}"
    probe = subprocess.run(
        [sys.executable, "-c", "import bluezoo.bluezoo, dbus_fast"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"bluezoo or dbus-fast cannot be imported ({last}); {INSTALL_HINT}"
    return daemon, sys.executable


@dataclass
class BluezWorld:
    """A private system bus with bluezoo serving ``adapters`` adapters (hci0 … hciN-1)."""

    workdir: Path
    adapters: int = 4
    address: str = ""
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        """Start dbus-daemon, then bluezoo; return once every adapter is on the bus."""
        found = prerequisites()
        if isinstance(found, str):
            raise RuntimeError(found)
        daemon, python = found
        sock = self.workdir / "system_bus_socket"
        conf = self.workdir / "bus.conf"
        conf.write_text(BUS_CONF.format(socket=sock))
        self.address = f"unix:path={sock}"
        log = (self.workdir / "dbus-daemon.log").open("ab")
        self._procs.append(
            subprocess.Popen(
                [daemon, f"--config-file={conf}", "--nofork", "--nopidfile"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        )
        self._wait(lambda: sock.exists(), "dbus-daemon socket")
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}
        args = [python, str(Path(__file__).resolve()), "--auto-enable", "--scan-interval", "1"]
        for i in range(self.adapters):
            args += ["-a", adapter_address(i)]
        zlog = (self.workdir / "bluezoo.log").open("ab")
        self._procs.append(
            subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=zlog, stderr=zlog, env=env)
        )
        self._wait(self._ready, "bluezoo adapters")

    def _ready(self) -> bool:
        return asyncio.run(self._adapters_present()) >= self.adapters

    async def _adapters_present(self) -> int:
        from dbus_fast import BusType, Message, MessageType
        from dbus_fast.aio import MessageBus

        bus = await MessageBus(bus_address=self.address, bus_type=BusType.SYSTEM).connect()
        try:
            reply = await bus.call(
                Message(destination=BLUEZ, path="/", interface=OM_IFACE, member="GetManagedObjects")
            )
        finally:
            bus.disconnect()
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            return 0
        return sum(1 for ifaces in reply.body[0].values() if "org.bluez.Adapter1" in ifaces)

    def _wait(self, ok: Any, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{what}: {p.args[0]} exited; see {self.workdir}")
            try:
                if ok():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{what} not ready after {READY_TIMEOUT_S} s; see {self.workdir}")

    def stop(self) -> None:
        """Stop bluezoo, then the bus."""
        for p in reversed(self._procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self._procs.clear()

    @contextmanager
    def environment(self) -> Iterator[None]:
        """Point the system bus at this world for the duration."""
        old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old


def _advertisement_class() -> Any:
    """dbus-fast ``org.bluez.LEAdvertisement1`` service object (built lazily)."""
    from dbus_fast import Variant
    from dbus_fast.annotations import DBusBool, DBusSignature, DBusStr
    from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

    class LEAdvertisement(ServiceInterface):
        def __init__(self, md: dict[int, bytes], sd: dict[str, bytes]) -> None:
            super().__init__("org.bluez.LEAdvertisement1")
            self.md = md
            self.sd = sd

        @method()
        def Release(self) -> None:
            pass

        @dbus_property(access=PropertyAccess.READ)
        def Type(self) -> DBusStr:
            return "peripheral"

        @dbus_property(access=PropertyAccess.READ)
        def ManufacturerData(self) -> Annotated[dict[int, Variant], DBusSignature("a{qv}")]:
            return {k: Variant("ay", v) for k, v in self.md.items()}

        @dbus_property(access=PropertyAccess.READ)
        def ServiceData(self) -> Annotated[dict[str, Variant], DBusSignature("a{sv}")]:
            return {k: Variant("ay", v) for k, v in self.sd.items()}

        @dbus_property(access=PropertyAccess.READ)
        def Discoverable(self) -> DBusBool:
            return True

    return LEAdvertisement


class BluezControl:
    """The test's own connection to the private bus: peripherals, adapters, signals."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self._ads: list[tuple[str, str]] = []
        self.powered: dict[str, list[bool]] = {}
        bus.add_message_handler(self._on_message)

    @classmethod
    async def connect(cls, address: str) -> "BluezControl":
        """Connect and subscribe to adapter property changes."""
        from dbus_fast import BusType, Message
        from dbus_fast.aio import MessageBus

        bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
        rule = f"type='signal',interface='{PROPS_IFACE}',member='PropertiesChanged'"
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )
        return cls(bus)

    def _on_message(self, msg: Any) -> None:
        if msg.member != "PropertiesChanged" or not msg.body:
            return
        if msg.body[0] == "org.bluez.Adapter1" and "Powered" in msg.body[1]:
            name = str(msg.path).rsplit("/", 1)[-1]
            self.powered.setdefault(name, []).append(bool(msg.body[1]["Powered"].value))

    async def call(
        self, path: str, iface: str, member: str, sig: str = "", body: list[Any] | None = None
    ) -> list[Any]:
        """A method call on org.bluez; raise with the D-Bus error name on error."""
        from dbus_fast import Message, MessageType

        reply = await self.bus.call(
            Message(
                destination=BLUEZ,
                path=path,
                interface=iface,
                member=member,
                signature=sig,
                body=body or [],
            )
        )
        if reply.message_type is MessageType.ERROR:
            raise RuntimeError(f"{member} on {path}: {reply.error_name} {reply.body}")
        return list(reply.body)

    async def advertise(
        self,
        adapter: str,
        manufacturer_data: dict[int, bytes] | None = None,
        service_data: dict[str, bytes] | None = None,
    ) -> None:
        """Register one LE advertisement on a peripheral adapter."""
        obj = _advertisement_class()(manufacturer_data or {}, service_data or {})
        path = f"/org/shelfedge/test/adv{len(self._ads)}"
        self.bus.export(path, obj)
        await self.call(
            f"/org/bluez/{adapter}",
            "org.bluez.LEAdvertisingManager1",
            "RegisterAdvertisement",
            "oa{sv}",
            [path, {}],
        )
        self._ads.append((adapter, path))

    async def adapters(self) -> dict[str, dict[str, Any]]:
        """Adapter name → its Adapter1 properties."""
        (objects,) = await self.call("/", OM_IFACE, "GetManagedObjects")
        return {
            path.rsplit("/", 1)[-1]: {k: v.value for k, v in ifaces["org.bluez.Adapter1"].items()}
            for path, ifaces in objects.items()
            if "org.bluez.Adapter1" in ifaces
        }

    async def remove_adapter(self, index: int) -> None:
        """Unplug ``hci{index}`` (org.bluezoo.Manager1.RemoveAdapter)."""
        await self.call("/org/bluezoo", "org.bluezoo.Manager1", "RemoveAdapter", "y", [index])

    async def add_adapter(self, index: int) -> None:
        """Plug ``hci{index}`` back in with its usual address."""
        await self.call(
            "/org/bluezoo",
            "org.bluezoo.Manager1",
            "AddAdapter",
            "ys",
            [index, adapter_address(index)],
        )

    async def emit_rssi(self, scanning: str, peer_index: int, rssi: int) -> None:
        """Emit ``Device1.RSSI`` changed for a peer as real BlueZ does per received advert."""
        from dbus_fast import Message, Variant

        await self.bus.send(
            Message.new_signal(
                device_path(scanning, peer_index),
                PROPS_IFACE,
                "PropertiesChanged",
                "sa{sv}as",
                ["org.bluez.Device1", {"RSSI": Variant("n", rssi)}, []],
            )
        )

    async def reset(self, adapters: int) -> None:
        """Every adapter present and powered, no devices, no advertisements of ours."""
        present = await self.adapters()
        for i in range(adapters):
            if f"hci{i}" not in present:
                await self.add_adapter(i)
        await self.unadvertise()
        (objects,) = await self.call("/", OM_IFACE, "GetManagedObjects")
        for path, ifaces in objects.items():
            if "org.bluez.Device1" in ifaces:
                adapter = ifaces["org.bluez.Device1"]["Adapter"].value
                await self.call(adapter, "org.bluez.Adapter1", "RemoveDevice", "o", [path])
        self.powered.clear()

    async def unadvertise(self) -> None:
        """Unregister and unexport every advertisement this connection registered."""
        for adapter, path in self._ads:
            with contextlib.suppress(RuntimeError):  # the adapter may have gone with it
                await self.call(
                    f"/org/bluez/{adapter}",
                    "org.bluez.LEAdvertisingManager1",
                    "UnregisterAdvertisement",
                    "o",
                    [path],
                )
            self.bus.unexport(path)
        self._ads.clear()

    def close(self) -> None:
        """Disconnect (bluezoo drops what this connection registered)."""
        self.bus.disconnect()


def _launch() -> None:
    """Run bluezoo with BlueZ's ``a{qv}`` ManufacturerData signature."""
    from bluezoo.interfaces.Device import DeviceInterface
    from bluezoo.interfaces.LEAdvertisement import LEAdvertisementInterface

    for iface in (DeviceInterface, LEAdvertisementInterface):
        iface.__dict__["ManufacturerData"].property_signature = "a{qv}"
    from bluezoo import bluezoo

    sys.argv = ["bluezoo", *sys.argv[1:]]
    bluezoo.main()


if __name__ == "__main__":
    _launch()
