"""An in-process radio: every radio on the same named link hears every other one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import ClassVar

from smartlock.adapters.radio import AdvertisingReport

_MEMORY_RSSI = -40


class MemoryRadio:
    _links: ClassVar[dict[str, set[MemoryRadio]]] = {}

    def __init__(self, link: str, *, name: str) -> None:
        self.link = link
        self.name = name
        self._queue: asyncio.Queue[AdvertisingReport] | None = None
        self._advertiser: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MemoryRadio:
        self._links.setdefault(self.link, set()).add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_advertising()
        self._links.get(self.link, set()).discard(self)

    async def advertise(self, data: bytes, *, interval_ms: float) -> None:
        await self.stop_advertising()
        self._advertiser = asyncio.create_task(self._repeat(data, interval_ms / 1000))

    async def _repeat(self, data: bytes, interval_s: float) -> None:
        while True:
            for peer in list(self._links.get(self.link, ())):
                if peer is not self and peer._queue is not None:
                    peer._queue.put_nowait(AdvertisingReport(self.name, _MEMORY_RSSI, data))
            await asyncio.sleep(interval_s)

    async def stop_advertising(self) -> None:
        if self._advertiser:
            self._advertiser.cancel()
            await asyncio.gather(self._advertiser, return_exceptions=True)
            self._advertiser = None

    async def scan(self) -> AsyncIterator[AdvertisingReport]:
        self._queue = asyncio.Queue()
        try:
            while True:
                yield await self._queue.get()
        finally:
            self._queue = None
