"""One BlueZ adapter over D-Bus: is it there and powered, and power it off and on.

The scanner's recovery ladder needs two things bleak does not offer: a cheap probe of
``org.bluez.Adapter1.Powered`` (to tell "adapter gone" from "adapter silent") and a power
cycle through the same property. This keeps its own system-bus connection (dbus-fast, which
bleak already depends on) and reconnects when the bus or BlueZ comes back. Nothing here sees
a device, an address or an RSSI.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.auth import AuthExternal
from dbus_fast.errors import DBusFastError

BLUEZ = "org.bluez"
ADAPTER_IFACE = "org.bluez.Adapter1"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
CALL_TIMEOUT_S = 5.0

_NO_BLUEZ = {
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",
}
_NO_ADAPTER = {
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.UnknownInterface",
    "org.freedesktop.DBus.Error.UnknownMethod",
    "org.freedesktop.DBus.Error.InvalidArgs",
}


class Presence(enum.StrEnum):
    """What a probe of the adapter found."""

    ON = "on"  # present and powered
    OFF = "off"  # present, not powered
    MISSING = "missing"  # BlueZ runs, the adapter object does not exist
    NO_BLUEZ = "no_bluez"  # the system bus runs, org.bluez does not answer
    NO_BUS = "no_bus"  # no system bus (socket missing, refused or denied)
    ERROR = "error"  # any other D-Bus error (its name is in ``last_error``)


class AdapterControlError(Exception):
    """A power change was refused; the message is the D-Bus error name (no data)."""


def _auth() -> AuthExternal | None:
    # Same rule as bleak: BLEAK_DBUS_AUTH_UID overrides the uid sent in EXTERNAL auth.
    uid = os.environ.get("BLEAK_DBUS_AUTH_UID", "")
    return AuthExternal(uid=int(uid)) if uid.isdigit() else None


class AdapterControl:
    """Probe and power-cycle ``/org/bluez/{adapter}`` on the system bus."""

    def __init__(self, adapter: str) -> None:
        self.adapter = adapter
        self.path = f"/org/bluez/{adapter}"
        self.last_error: str | None = None
        self._bus: MessageBus | None = None

    async def _connection(self) -> MessageBus:
        if self._bus is None or not self._bus.connected:
            await self.close()
            bus = MessageBus(bus_type=BusType.SYSTEM, auth=_auth())
            try:
                self._bus = await asyncio.wait_for(bus.connect(), CALL_TIMEOUT_S)
            except BaseException:
                bus.disconnect()
                raise
        return self._bus

    async def _call(self, member: str, signature: str, body: list[object]) -> Message:
        bus = await self._connection()
        msg = Message(
            destination=BLUEZ,
            path=self.path,
            interface=PROPS_IFACE,
            member=member,
            signature=signature,
            body=body,
        )
        reply = await asyncio.wait_for(bus.call(msg), CALL_TIMEOUT_S)
        assert reply is not None  # a method call with a reply expected
        return reply

    async def probe(self) -> Presence:
        """Whether the adapter exists and is powered; never raises (but CancelledError)."""
        try:
            reply = await self._call("Get", "ss", [ADAPTER_IFACE, "Powered"])
        except (OSError, DBusFastError, EOFError) as exc:
            self.last_error = type(exc).__name__
            await self.close()
            return Presence.NO_BUS
        except TimeoutError:
            self.last_error = "TimeoutError"
            await self.close()
            return Presence.NO_BLUEZ
        if reply.message_type is MessageType.ERROR:
            name = reply.error_name or "unknown"
            self.last_error = name.rsplit(".", 1)[-1]
            if name in _NO_BLUEZ:
                return Presence.NO_BLUEZ
            if name in _NO_ADAPTER:
                return Presence.MISSING
            return Presence.ERROR
        value = reply.body[0].value if reply.body else False
        return Presence.ON if value is True else Presence.OFF

    async def set_powered(self, on: bool) -> None:
        """Set ``Adapter1.Powered``; raise ``AdapterControlError`` when refused."""
        try:
            reply = await self._call("Set", "ssv", [ADAPTER_IFACE, "Powered", Variant("b", on)])
        except (OSError, DBusFastError, EOFError, TimeoutError) as exc:
            await self.close()
            raise AdapterControlError(type(exc).__name__) from None
        if reply.message_type is MessageType.ERROR:
            raise AdapterControlError((reply.error_name or "unknown").rsplit(".", 1)[-1])

    async def close(self) -> None:
        """Drop the bus connection (a later call opens a new one)."""
        bus, self._bus = self._bus, None
        if bus is not None:
            with contextlib.suppress(Exception):
                bus.disconnect()
