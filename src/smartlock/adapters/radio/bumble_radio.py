"""A radio driven through bumble's host stack over any HCI transport string."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from bumble.device import (
    Advertisement,
    AdvertisingEventProperties,
    AdvertisingParameters,
    AdvertisingSet,
    Device,
)
from bumble.hci import Address
from bumble.transport import open_transport

from smartlock.adapters.radio import AdvertisingReport
from smartlock.core.errors import ConfigError

logger = logging.getLogger(__name__)


class BumbleRadio:
    def __init__(self, transport: str, *, name: str) -> None:
        self.transport_name = transport
        self.name = name
        self._transport: Any = None
        self._device: Device | None = None
        self._advertising_set: AdvertisingSet | None = None
        self._scanning = False
        # Scanning and advertising are set up by sequences of HCI commands; interleaving two such
        # sequences from concurrent tasks loses the advertising set silently, so one at a time.
        self._hci = asyncio.Lock()

    async def __aenter__(self) -> BumbleRadio:
        try:
            self._transport = await asyncio.wait_for(open_transport(self.transport_name), 10)
        except (OSError, TimeoutError, ValueError) as exc:
            hint = (
                " (is the radio hub running? 'smartlock radio-hub')"
                if self.transport_name.startswith("unix:")
                else ""
            )
            raise ConfigError(
                f"cannot open the radio {self.transport_name!r}: {exc.__class__.__name__}: {exc}"
                + hint
            ) from None
        except Exception as exc:  # bumble raises its own error types for unknown schemes
            raise ConfigError(f"cannot open the radio {self.transport_name!r}: {exc}") from None
        self._device = Device.with_hci(
            self.name,
            Address.generate_static_address(),
            self._transport.source,
            self._transport.sink,
        )
        await asyncio.wait_for(self._device.power_on(), 10)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop_advertising()
            if self._scanning and self._device:
                await self._device.stop_scanning()
        except Exception:  # the controller may already be gone; closing must still happen
            logger.debug("radio %s: stop on close failed", self.name, exc_info=True)
        if self._transport is not None:
            await self._transport.close()

    async def advertise(self, data: bytes, *, interval_ms: float) -> None:
        assert self._device, "radio not open"
        async with self._hci:
            if self._advertising_set is not None:
                await self._advertising_set.set_advertising_data(data)
                return
            await self._create_advertising_set(data, interval_ms)

    async def _create_advertising_set(self, data: bytes, interval_ms: float) -> None:
        assert self._device, "radio not open"
        parameters = AdvertisingParameters(
            advertising_event_properties=AdvertisingEventProperties(
                is_connectable=False, is_scannable=False, is_legacy=True
            ),
            primary_advertising_interval_min=interval_ms,
            primary_advertising_interval_max=interval_ms,
        )
        self._advertising_set = await self._device.create_advertising_set(
            advertising_parameters=parameters, advertising_data=data
        )

    async def stop_advertising(self) -> None:
        async with self._hci:
            if self._advertising_set is not None:
                advertising_set, self._advertising_set = self._advertising_set, None
                await advertising_set.stop()
                await advertising_set.remove()

    async def scan(self) -> AsyncIterator[AdvertisingReport]:
        assert self._device, "radio not open"
        queue: asyncio.Queue[AdvertisingReport] = asyncio.Queue()

        def on_advertisement(advertisement: Advertisement) -> None:
            if advertisement.is_scan_response:  # the emulator adds an empty synthetic one
                return
            queue.put_nowait(
                AdvertisingReport(
                    str(advertisement.address), advertisement.rssi, bytes(advertisement.data_bytes)
                )
            )

        self._device.on("advertisement", on_advertisement)
        async with self._hci:
            await self._device.start_scanning(active=False, filter_duplicates=False)
            self._scanning = True
        try:
            while True:
                yield await queue.get()
        finally:
            self._device.remove_listener("advertisement", on_advertisement)
