"""What every service shares: counted, logged rejections and the reconnect policy."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from smartlock import crypto
from smartlock.adapters.backend_trust import BackendTrust, apply_ca_notice
from smartlock.adapters.mqtt import BrokerUnavailable
from smartlock.core.errors import Reason, Rejected
from smartlock.site import Site


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


class TrustNotices:
    """What the backend tells a device about whom to trust, retained on its own topics: the
    backend's key during a rotation (``.../backend_key``, :mod:`smartlock.core.backend_key`) and
    the site CA certificates (``.../ca``, :mod:`smartlock.core.ca_notice`).  A device subscribes
    to :attr:`topics` first and passes every message to :meth:`handle`; a forged or damaged
    notice is counted and changes nothing."""

    def __init__(
        self,
        site: Site,
        trust: BackendTrust,
        trust_topics: tuple[str, ...],
        rejections: Rejections,
        logger: logging.Logger,
    ) -> None:
        self._site = site
        self._trust = trust
        self._backend_key, self._ca = trust_topics  # core.topics.TRUST_LEAVES, in order
        self._rejections = rejections
        self._logger = logger

    @property
    def topics(self) -> tuple[str, str]:
        return (self._backend_key, self._ca)

    def handle(self, topic: str, payload: bytes) -> bool:
        """True when ``topic`` was one of these (handled)."""
        if topic not in self.topics:
            return False
        what = "backend key notice" if topic == self._backend_key else "CA notice"
        try:
            if topic == self._backend_key:
                changed = self._trust.on_notice(payload)
            else:
                changed = apply_ca_notice(self._site.ca_cert, payload, self._trust.keys())
        except Rejected as rejected:
            self._rejections.record(what, rejected)
        except crypto.CryptoError as exc:
            self._rejections.counts[Reason.MALFORMED.value] += 1
            self._logger.warning("Rejected %s: %s", what, exc)
        except OSError as exc:
            self._logger.error("Cannot store the %s (%s)", what, exc.strerror)
        else:
            if changed:
                self._logger.info("Trust: %s", changed)
        return True
