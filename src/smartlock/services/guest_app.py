"""The guest app: ask the backend for a key, then advertise fresh tokens until the lock acts.

The guest stops when the lock's access event comes back with an ``ack_tag`` that verifies under
its session key (proof that the lock itself acted), or when ``timeout_s`` runs out.  Without an
answer it advertises a new token at each new time slot of the key (2 s): the counter is the
slot, counted on the guest's monotonic clock from the key's ``issued_at``, so the guest's
wall clock does not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from smartlock import crypto
from smartlock.adapters.backend_trust import BackendTrust
from smartlock.adapters.mqtt import Incoming, MqttConnection
from smartlock.adapters.radio import Radio, open_radio
from smartlock.core import topics
from smartlock.core.access import access_ack_is_valid
from smartlock.core.errors import ConfigError, Reason, Rejected, SmartlockError, explain
from smartlock.core.issuance import SessionKey, open_denial, open_guest_delivery
from smartlock.core.messages import (
    ID_BYTES,
    AccessEvent,
    Action,
    MessageType,
    SessionRequest,
    message_type_of,
)
from smartlock.core.token import advertising_data, make_token, token_slot
from smartlock.services.common import Rejections, TrustNotices
from smartlock.site import Site

logger = logging.getLogger("smartlock.guest")

DEFAULT_ADVERTISING_INTERVAL_MS = 20.0


class UnlockFailed(SmartlockError):
    """The guest could not open the door; the message says why."""


@dataclass
class UnlockResult:
    lock_id: str
    guest_id: str
    action: Action
    key_request_ms: float = 0.0
    ble_ms: float = 0.0
    total_ms: float = 0.0
    tokens_advertised: int = 0
    wire_bytes: dict[str, int] = field(default_factory=dict)
    advertising_interval_ms: float = DEFAULT_ADVERTISING_INTERVAL_MS


@dataclass(frozen=True)
class HeldKey:
    key: SessionKey
    received: float  # time.monotonic() when it arrived: tokens count slots from there


class GuestApp:
    def __init__(
        self,
        site: Site,
        guest_id: str,
        *,
        radio: str | None = None,
        advertising_interval_ms: float = DEFAULT_ADVERTISING_INTERVAL_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if guest_id not in site.users:
            raise ConfigError(
                f"no user {guest_id!r} in site {site.root} (users: {', '.join(site.users)})"
            )
        self.site = site
        self.guest_id = guest_id
        # made here, so the radio stack is loaded before any timing starts
        self.radio = open_radio(radio or site.virtual_radio(guest_id), name=guest_id)
        self._interval_ms = advertising_interval_ms
        self._clock = clock
        self._key = site.private_key(guest_id)
        self._trust = BackendTrust(site)  # the backend keys it trusts (rotation: two)
        self.rejections = Rejections(logger)
        self._notices = TrustNotices(
            site, self._trust, topics.user_trust_topics(guest_id), self.rejections, logger
        )

    @property
    def session_topic(self) -> str:
        return topics.user_topic(self.guest_id, "session")

    @property
    def events_topic(self) -> str:
        return topics.user_topic(self.guest_id, "events")

    async def open_door(
        self, lock_id: str, *, action: Action = Action.UNLOCK, timeout_s: float = 30.0
    ) -> UnlockResult:
        if lock_id not in self.site.locks:
            raise ConfigError(
                f"no lock {lock_id!r} in site {self.site.root} "
                f"(locks: {', '.join(self.site.locks)})"
            )
        result = UnlockResult(
            lock_id, self.guest_id, action, advertising_interval_ms=self._interval_ms
        )
        started = time.perf_counter()
        phase = "could not reach the broker and the radio"
        try:
            async with asyncio.timeout(timeout_s), contextlib.AsyncExitStack() as stack:
                # The radio powers up while the key is on its way.
                mqtt, radio = await asyncio.gather(
                    stack.enter_async_context(
                        MqttConnection(self.site, self.site.credentials(self.guest_id))
                    ),
                    stack.enter_async_context(self.radio),
                )
                for topic in self._notices.topics:  # first: whom to trust
                    await mqtt.subscribe(topic)
                await mqtt.subscribe(self.session_topic)
                await mqtt.subscribe(self.events_topic)
                messages = mqtt.messages()
                phase = "the backend did not answer the key request (is it running?)"
                asked = time.perf_counter()
                key = await self._request_key(mqtt, messages, lock_id, result)
                result.key_request_ms = (time.perf_counter() - asked) * 1000
                phase = f"{lock_id} did not confirm (is it running and in radio range?)"
                ble_started = time.perf_counter()
                await self._advertise_until_acknowledged(radio, messages, key, action, result)
                result.ble_ms = (time.perf_counter() - ble_started) * 1000
        except TimeoutError:
            raise UnlockFailed(f"gave up after {timeout_s:g} s: {phase}") from None
        result.total_ms = (time.perf_counter() - started) * 1000
        return result

    async def _request_key(
        self,
        mqtt: MqttConnection,
        messages: AsyncIterator[Incoming],
        lock_id: str,
        result: UnlockResult,
    ) -> SessionKey:
        request = SessionRequest(crypto.random_bytes(ID_BYTES), int(self._clock()), lock_id)
        payload = bytes(request)
        await mqtt.publish(topics.session_requests(self.guest_id), payload)
        result.wire_bytes["session_request"] = len(payload)
        logger.info("Requested session key for %s (%d bytes)", lock_id, len(payload))
        async for message in messages:
            if self._notices.handle(message.topic, message.payload):
                continue
            if message.topic != self.session_topic:
                continue
            try:
                if message_type_of(message.payload) is MessageType.SESSION_DENIED:
                    denial = open_denial(
                        message.payload,
                        guest_id=self.guest_id,
                        request_id=request.request_id,
                        backend_public=self._trust.keys(),
                    )
                    raise UnlockFailed(
                        f"the backend refused a key for {lock_id}: {explain(denial.reason)}"
                    )
                key = open_guest_delivery(
                    message.payload,
                    guest_id=self.guest_id,
                    lock_id=lock_id,
                    request_id=request.request_id,
                    backend_public=self._trust.keys(),
                    guest_key=self._key,
                    now=self._clock(),
                )
            except Rejected as rejected:
                self.rejections.record("key delivery", rejected, message.topic)
                continue
            result.wire_bytes["guest_delivery"] = len(message.payload)
            logger.info(
                "Received session key %s for %s, valid %d s (%d bytes)",
                key.handle,
                lock_id,
                key.header.expires_at - int(self._clock()),
                len(message.payload),
            )
            return key
        raise UnlockFailed("the broker connection ended before a key arrived")

    async def _advertise_until_acknowledged(
        self,
        radio: Radio,
        messages: AsyncIterator[Incoming],
        key: SessionKey,
        action: Action,
        result: UnlockResult,
    ) -> None:
        received = time.monotonic()

        async def advertise_fresh_tokens() -> None:
            await self._advertise_tokens(radio, key, action, result, received)

        advertiser = asyncio.create_task(advertise_fresh_tokens(), name="guest-advertiser")
        try:
            async for message in messages:
                if message.topic != self.events_topic:
                    continue
                if self._confirms(message.payload, key):
                    logger.info(
                        "Lock %s confirmed: %s",
                        key.header.lock_id,
                        "UNLOCKED" if action is Action.UNLOCK else "LOCKED",
                    )
                    return
            raise UnlockFailed("the broker connection ended before the lock answered")
        finally:
            advertiser.cancel()
            await asyncio.gather(advertiser, return_exceptions=True)
            await radio.stop_advertising()

    async def _advertise_tokens(
        self,
        radio: Radio,
        key: SessionKey,
        action: Action,
        result: UnlockResult,
        received: float,
    ) -> None:
        """Advertise a fresh token at each new time slot of ``key``, forever."""
        issued_at = key.header.issued_at
        # issued_at is whole seconds of the backend's clock; the key reached us within about one
        elapsed_at_receipt = 0.5
        counter = 0
        while True:
            backend_now = issued_at + elapsed_at_receipt + time.monotonic() - received
            slot = token_slot(issued_at, backend_now)
            if slot != counter:
                counter = slot
                data = advertising_data(make_token(key, counter, action))
                await radio.advertise(data, interval_ms=self._interval_ms)
                result.tokens_advertised += 1
                result.wire_bytes["advertisement"] = len(data)
                logger.info(
                    "Advertising with token #%d under key %s (%d bytes)",
                    counter,
                    key.handle,
                    len(data),
                )
            await asyncio.sleep(0.1)

    # --- a key kept for later: the door works while the broker is away -----------------------

    async def obtain_key(self, lock_id: str, *, timeout_s: float = 15.0) -> HeldKey:
        """Ask for a key and keep it (e.g. before a trip to a door without network)."""
        result = UnlockResult(lock_id, self.guest_id, Action.UNLOCK)
        try:
            async with asyncio.timeout(timeout_s):
                async with MqttConnection(self.site, self.site.credentials(self.guest_id)) as mqtt:
                    for topic in self._notices.topics:
                        await mqtt.subscribe(topic)
                    await mqtt.subscribe(self.session_topic)
                    key = await self._request_key(mqtt, mqtt.messages(), lock_id, result)
        except TimeoutError:
            raise UnlockFailed(f"no key for {lock_id} within {timeout_s:g} s") from None
        return HeldKey(key, time.monotonic())

    async def advertise_held_key(
        self, held: HeldKey, *, seconds: float, action: Action = Action.UNLOCK
    ) -> int:
        """Advertise fresh tokens of a held key for ``seconds``, without the broker; how many."""
        result = UnlockResult(held.key.header.lock_id, self.guest_id, action)
        async with self.radio as radio:
            advertiser = asyncio.create_task(
                self._advertise_tokens(radio, held.key, action, result, held.received)
            )
            try:
                await asyncio.sleep(seconds)
            finally:
                advertiser.cancel()
                await asyncio.gather(advertiser, return_exceptions=True)
                await radio.stop_advertising()
        return result.tokens_advertised

    def _confirms(self, payload: bytes, key: SessionKey) -> bool:
        try:
            event = AccessEvent.from_bytes(payload)
        except Rejected as rejected:
            self.rejections.record("access event", rejected, self.events_topic)
            return False
        if not access_ack_is_valid(event, key):
            if event.key_id == key.key_id:
                self.rejections.record(
                    "access event",
                    Rejected(Reason.BAD_MAC, "ack tag does not verify"),
                    self.events_topic,
                )
            return False
        return True
