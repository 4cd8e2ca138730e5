"""Radio fixtures: a private dbus-daemon with bluezoo as BlueZ (see ``bluez_env``).

A missing dbus-daemon or bluezoo fails the test with what to install; it never skips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.radio.bluez_env import BluezControl, BluezWorld

ADAPTERS = 4  # hci0, hci3: scanners; hci1, hci2: peripherals


@pytest.fixture(scope="module")
def bluez_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BluezWorld]:
    """dbus-daemon + bluezoo for one test module, with DBUS_SYSTEM_BUS_ADDRESS pointing at it."""
    world = BluezWorld(Path(tmp_path_factory.mktemp("bluez")), adapters=ADAPTERS)
    try:
        world.start()
    except RuntimeError as exc:
        world.stop()
        pytest.fail(str(exc), pytrace=False)
    try:
        with world.environment():
            yield world
    finally:
        world.stop()


@pytest.fixture
async def bluez(bluez_world: BluezWorld) -> AsyncIterator[BluezControl]:
    """The test's own D-Bus connection, on a clean world (all adapters, no devices)."""
    ctl = await BluezControl.connect(bluez_world.address)
    await ctl.reset(ADAPTERS)
    try:
        yield ctl
    finally:
        await ctl.reset(ADAPTERS)
        ctl.close()
