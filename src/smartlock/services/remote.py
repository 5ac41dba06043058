"""Owner and resident tools over MQTT: remote lock / unlock, and watching alerts.

A remote command is a :class:`~smartlock.core.commands.CommandRequest` on
``backend/commands/{user}`` with the MQTT v5 response topic ``users/{user}/replies`` and the
request id as correlation data; the answer is a reply signed by the backend.  QoS 1 may deliver
the request twice: the backend answers a request id once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from smartlock import crypto
from smartlock.adapters.backend_trust import BackendTrust
from smartlock.adapters.mqtt import MqttConnection
from smartlock.core import topics
from smartlock.core.alerts import Alert, open_alert
from smartlock.core.commands import CommandReply, CommandRequest, open_command_reply
from smartlock.core.errors import ConfigError, Rejected, SmartlockError
from smartlock.core.messages import ID_BYTES, Action
from smartlock.services.common import Rejections, TrustNotices
from smartlock.site import Site

logger = logging.getLogger("smartlock.remote")


class CommandFailed(SmartlockError):
    """No answer in time; the message says what was waited for."""


@dataclass(frozen=True)
class CommandOutcome:
    reply: CommandReply
    round_trip_ms: float
    request_bytes: int


def _check_user(site: Site, user: str) -> None:
    if user not in site.users:
        raise ConfigError(f"no user {user!r} in site {site.root} (users: {', '.join(site.users)})")


async def send_command(
    site: Site,
    user: str,
    lock_id: str,
    action: Action,
    *,
    timeout_s: float = 10.0,
    clock: Callable[[], float] = time.time,
) -> CommandOutcome:
    """Ask the backend to lock or unlock ``lock_id``; the backend's signed answer."""
    _check_user(site, user)
    trust = BackendTrust(site)
    request = CommandRequest(crypto.random_bytes(ID_BYTES), int(clock()), lock_id, action)
    payload = bytes(request)
    reply_topic = topics.user_topic(user, "replies")
    rejections = Rejections(logger)
    notices = TrustNotices(site, trust, topics.user_trust_topics(user), rejections, logger)
    phase = "could not reach the broker"
    try:
        async with asyncio.timeout(timeout_s):
            async with MqttConnection(site, site.credentials(user)) as mqtt:
                for topic in notices.topics:  # first: whom to trust
                    await mqtt.subscribe(topic)
                await mqtt.subscribe(reply_topic)
                phase = "the backend did not answer (is it running?)"
                started = time.perf_counter()
                await mqtt.publish(
                    topics.command_requests(user),
                    payload,
                    response_topic=reply_topic,
                    correlation_data=request.request_id,
                )
                async for message in mqtt.messages():
                    if notices.handle(message.topic, message.payload):
                        continue
                    if message.correlation_data != request.request_id:
                        continue
                    try:
                        reply = open_command_reply(message.payload, backend_public=trust.keys())
                    except Rejected as rejected:
                        rejections.record("command reply", rejected, message.topic)
                        continue
                    if reply.request_id != request.request_id:
                        continue
                    elapsed = (time.perf_counter() - started) * 1000
                    return CommandOutcome(reply, elapsed, len(payload))
    except TimeoutError:
        raise CommandFailed(f"gave up after {timeout_s:g} s: {phase}") from None
    raise CommandFailed("the connection to the broker ended before an answer came")


async def watch_alerts(site: Site, user: str) -> AsyncIterator[Alert]:
    """Verified alerts for ``user`` as they arrive (owners and residents receive them)."""
    _check_user(site, user)
    trust = BackendTrust(site)
    rejections = Rejections(logger)
    notices = TrustNotices(site, trust, topics.user_trust_topics(user), rejections, logger)
    async with MqttConnection(site, site.credentials(user)) as mqtt:
        for topic in notices.topics:  # first: whom to trust
            await mqtt.subscribe(topic)
        await mqtt.subscribe(topics.user_topic(user, "alerts"))
        logger.info("Watching alerts for %s", user)
        async for message in mqtt.messages():
            if notices.handle(message.topic, message.payload):
                continue
            try:
                yield open_alert(message.payload, backend_public=trust.keys())
            except Rejected as rejected:
                rejections.record("alert", rejected, message.topic)
