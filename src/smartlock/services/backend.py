"""The backend service: answers key requests and relays the locks' events.

Topics (ACL in :mod:`smartlock.broker`):

* in  ``backend/session_requests/{guest_id}`` -- the guest's identity is the topic's last level;
* out ``locks/{lock_id}/session`` -- the lock's delivery;
* in  ``locks/{lock_id}/events`` -- key acknowledgements and access events;
* out ``guests/{guest_id}/session`` -- the guest's delivery, released after the lock's ack,
  or a signed denial;
* out ``guests/{guest_id}/events`` -- the lock's access event, forwarded unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from smartlock import crypto
from smartlock.adapters.mqtt import Incoming, MqttConnection
from smartlock.core.access import open_access_event
from smartlock.core.errors import Reason, Rejected
from smartlock.core.issuer import DeliverToLock, KeyDirectory, KeyIssuer
from smartlock.core.messages import MessageType, peek_type
from smartlock.core.policy import AccessPolicy, RecentIds
from smartlock.services.common import Outbox, Rejections, reconnecting
from smartlock.site import BACKEND_USER, Site

logger = logging.getLogger("smartlock.backend")

REQUESTS_TOPIC = "backend/session_requests/+"
EVENTS_TOPIC = "locks/+/events"
EVENT_MEMORY_S = 24 * 3600  # an access event seen again within a day is a replay


class Backend:
    def __init__(self, site: Site, *, clock: Callable[[], float] = time.time) -> None:
        self.site = site
        self._clock = clock
        self.rejections = Rejections(logger)
        self._lock_keys = {lock_id: site.public_key(lock_id) for lock_id in site.locks}
        self.issuer = KeyIssuer(
            backend_key=site.private_key(BACKEND_USER),
            directory=KeyDirectory(
                locks=self._lock_keys,
                guests={guest_id: site.public_key(guest_id) for guest_id in site.guests},
            ),
            policy=AccessPolicy(
                locks=frozenset(site.locks),
                guests=frozenset(site.guests),
                grants=frozenset(site.grants),
            ),
            random_bytes=crypto.random_bytes,
            ttl_s=site.session_ttl_s,
        )
        self._outbox = Outbox()
        self._event_ids = RecentIds(window_s=EVENT_MEMORY_S)

    async def run(self) -> None:
        try:
            await reconnecting(self._session, logger)
        finally:
            logger.info("Backend stopping; %s", self.rejections.summary())

    async def _session(self) -> None:
        async with MqttConnection(
            self.site, self.site.credentials(BACKEND_USER), persistent=True
        ) as mqtt:
            await mqtt.subscribe(REQUESTS_TOPIC)
            await mqtt.subscribe(EVENTS_TOPIC)
            logger.info("Backend listening for session requests on %s", REQUESTS_TOPIC)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._outbox.drain(mqtt.publish), name="backend-outbox")
                tasks.create_task(self._expire_pending(), name="backend-expiry")
                async for message in mqtt.messages():
                    self.handle(message)

    def handle(self, message: Incoming) -> None:
        """Dispatch one message; a refused one is logged and counted, never raised."""
        parts = message.topic.split("/")
        try:
            if len(parts) == 3 and parts[:2] == ["backend", "session_requests"]:
                self._on_request(parts[2], message.payload)
            elif len(parts) == 3 and parts[0] == "locks" and parts[2] == "events":
                self._on_lock_event(parts[1], message.payload)
            else:
                logger.warning("Ignored message on unexpected topic %s", message.topic)
        except Rejected as rejected:
            self.rejections.record("message", rejected, message.topic)
        except Exception:  # a bug must cost one message, never the service
            self.rejections.counts["internal_error"] += 1
            logger.exception("Internal error on a message from %s; dropped", message.topic)

    def _on_request(self, guest_id: str, payload: bytes) -> None:
        answer = self.issuer.on_request(guest_id, payload, self._clock())
        if isinstance(answer, DeliverToLock):
            logger.info(
                "Issued session key %s for %s on %s, expires in %d s (lock delivery %d bytes)",
                answer.key.handle,
                guest_id,
                answer.lock_id,
                answer.key.header.expires_at - answer.key.header.issued_at,
                len(answer.payload),
            )
            self._outbox.put(f"locks/{answer.lock_id}/session", answer.payload)
        else:
            logger.warning("Denied session key to %s: %s", guest_id, answer.reason)
            self._outbox.put(f"guests/{answer.guest_id}/session", answer.payload)

    def _on_lock_event(self, lock_id: str, payload: bytes) -> None:
        if lock_id not in self._lock_keys:
            raise Rejected(Reason.UNKNOWN_LOCK, lock_id)
        kind = peek_type(payload, (MessageType.KEY_ACK, MessageType.ACCESS_EVENT))
        if kind is MessageType.KEY_ACK:
            release = self.issuer.on_key_ack(lock_id, payload)
            logger.info(
                "Lock %s holds key %s; delivering it to %s",
                lock_id,
                release.key.handle,
                release.guest_id,
            )
            self._outbox.put(f"guests/{release.guest_id}/session", release.payload)
        else:
            event = open_access_event(
                payload, lock_id=lock_id, lock_public=self._lock_keys[lock_id]
            )
            if self._event_ids.seen_before(event.event_id, self._clock()):
                raise Rejected(Reason.REPLAY, f"access event from {lock_id} already received")
            logger.info(
                "Access event: %s %s for %s (token %d, key %s)",
                lock_id,
                event.action.name.lower(),
                event.guest_id,
                event.counter,
                event.key_id[:4].hex(),
            )
            self._outbox.put(f"guests/{event.guest_id}/events", payload)

    async def _expire_pending(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for denial in self.issuer.expire(self._clock()):
                logger.warning("Lock did not confirm a key in time; telling %s", denial.guest_id)
                self._outbox.put(f"guests/{denial.guest_id}/session", denial.payload)
