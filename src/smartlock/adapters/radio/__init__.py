"""BLE radio backends behind one interface, chosen by a transport string.

* ``memory:NAME`` -- an in-process link for unit tests (no HCI at all);
* anything else is a bumble HCI transport: ``unix:PATH`` (a controller of the virtual radio
  hub, :mod:`smartlock.adapters.radio.hub`), ``usb:0``, ``hci-socket:0``, ``serial:/dev/tty...``
  -- the same code drives real hardware.

Backends are imported lazily, as bleak does, so the memory radio needs no bumble import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol


@dataclass(frozen=True)
class AdvertisingReport:
    """One received advertisement, normalised across backends."""

    address: str
    rssi: int
    data: bytes


class Radio(Protocol):
    """An ``async with`` BLE radio that can advertise one payload and scan for others."""

    async def __aenter__(self) -> Radio: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def advertise(self, data: bytes, *, interval_ms: float) -> None:
        """Start legacy, non-connectable advertising of ``data`` or replace what is advertised."""

    async def stop_advertising(self) -> None: ...

    def scan(self) -> AsyncIterator[AdvertisingReport]:
        """Start passive scanning and yield every advertising report (duplicates included)."""
        ...


def open_radio(transport: str, *, name: str) -> Radio:
    """The radio for ``transport`` (see the module doc); not opened until ``async with``.

    The first call for a bumble transport imports bumble (~0.2-0.5 s); a program that times
    its work calls this before it starts the clock.
    """
    if transport.startswith("memory:"):
        from smartlock.adapters.radio.memory import MemoryRadio

        return MemoryRadio(transport.removeprefix("memory:"), name=name)
    from smartlock.adapters.radio.bumble_radio import BumbleRadio

    return BumbleRadio(transport, name=name)
