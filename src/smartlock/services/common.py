"""What every service shares: counted, logged rejections and the reconnect policy."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from smartlock.adapters.backend_trust import BackendTrust
from smartlock.adapters.mqtt import BrokerUnavailable
from smartlock.core.errors import Reason, Rejected


class Rejections:
    """Counts every refused input by reason and logs it once, with the reason and the count."""

    def __init__(self, logger: logging.Logger) -> None:
        self.counts: Counter[str] = Counter()
        self._logger = logger

    def record(self, what: str, rejected: Rejected, source: str = "") -> None:
        self.counts[rejected.reason.value] += 1
        origin = f" from {source}" if source else ""
        # A token under a key this lock never held is most often meant for a neighbouring lock.
        level = logging.INFO if rejected.reason is Reason.UNKNOWN_KEY else logging.WARNING
        self._logger.log(
            level,
            "Rejected %s%s: %s (%s rejections so far: %d)",
            what,
            origin,
            rejected,
            rejected.reason.value,
            self.counts[rejected.reason.value],
        )

    def summary(self) -> str:
        """One line for the log at shutdown: every reason with its count."""
        if not self.counts:
            return "no input was rejected"
        return "rejected: " + ", ".join(f"{r}={n}" for r, n in sorted(self.counts.items()))


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool = False
    correlation_data: bytes | None = None  # MQTT v5, for an answer on a response topic
    deadline: float | None = None  # event-loop time after which it is dropped, not sent


class Publish(Protocol):
    async def __call__(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool,
        correlation_data: bytes | None,
        expiry_s: int | None,
    ) -> None: ...


class Outbox:
    """Messages waiting for the broker: kept in order across reconnects until published."""

    def __init__(self) -> None:
        self._items: deque[Outgoing] = deque()
        self._ready = asyncio.Event()
        self.expired = 0  # messages dropped unsent because their time ran out

    def put(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        correlation_data: bytes | None = None,
        expiry_s: float | None = None,
    ) -> None:
        """Queue a message.  With ``expiry_s`` it is sent only within that many seconds from
        now, and the broker gets the rest of that time as its MQTT v5 message expiry: a command
        that waited out a broker outage in this queue is not sent late."""
        deadline = None if expiry_s is None else asyncio.get_running_loop().time() + expiry_s
        self._items.append(Outgoing(topic, payload, retain, correlation_data, deadline))
        self._ready.set()

    async def drain(self, publish: Publish) -> None:
        """Publish forever; an item is removed only after its publish succeeded."""
        while True:
            await self._ready.wait()
            while self._items:
                item = self._items[0]
                expiry_s = None
                if item.deadline is not None:
                    left = item.deadline - asyncio.get_running_loop().time()
                    if left < 1:
                        self._items.popleft()  # too late: its sender has given up on it
                        self.expired += 1
                        continue
                    expiry_s = int(left)
                await publish(
                    item.topic,
                    item.payload,
                    retain=item.retain,
                    correlation_data=item.correlation_data,
                    expiry_s=expiry_s,
                )
                self._items.popleft()
            self._ready.clear()

    def __len__(self) -> int:
        return len(self._items)


_JITTER = secrets.SystemRandom()


async def reconnecting(
    session: Callable[[], Awaitable[None]], logger: logging.Logger, *, max_backoff_s: float = 10.0
) -> None:
    """Run ``session`` again whenever the broker is lost, with exponential backoff.

    Credentials or certificates the broker refuses are a configuration error: they are raised
    at once instead of being retried forever.
    """
    backoff = 0.2
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await session()
            return
        except* BrokerUnavailable as group:  # sessions run TaskGroups, which wrap errors
            exc = group.exceptions[0]
            if isinstance(exc, BrokerUnavailable) and exc.refused:
                raise exc from None
            if loop.time() - started > max_backoff_s:
                backoff = 0.2  # it was connected for a while: start again from a short wait
            # jittered, so that a fleet of locks does not come back in one wave after an outage
            delay = backoff * (0.5 + _JITTER.random() / 2)
            logger.warning("%s; retrying in %.1f s", exc, delay)
        await asyncio.sleep(delay)
        backoff = min(backoff * 2, max_backoff_s)


def apply_backend_key_notice(
    trust: BackendTrust, payload: bytes, rejections: Rejections, logger: logging.Logger
) -> None:
    """A device's handling of the backend's key notice (``.../backend_key``): trust what a key
    it trusts says; a forged or damaged one is counted and changes nothing."""
    try:
        changed = trust.on_notice(payload)
    except Rejected as rejected:
        rejections.record("backend key notice", rejected)
        return
    except OSError as exc:
        logger.error("Cannot store the backend key notice (%s)", exc.strerror)
        return
    if changed:
        logger.info("Backend key rotation: %s", changed)
