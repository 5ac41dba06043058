"""The one module that knows aiomqtt: an ``async with`` MQTT v5 connection over the site's TLS.

Every smartlock client connects the same way: TLS 1.2+ to the site broker, the site CA pinned
and the host name checked, its own username and password, TCP_NODELAY on (aiomqtt has no
option for it; it sets socket options on paho's socket after connecting), QoS 1.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from smartlock.broker import client_tls_context
from smartlock.core.errors import SmartlockError
from smartlock.site import Credentials, Site

logger = logging.getLogger(__name__)


class BrokerUnavailable(SmartlockError):
    """The broker refused us or could not be reached; the message says which, without secrets.

    ``refused`` is true when retrying cannot help: the broker refused the credentials, or its
    certificate does not verify against the site CA.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    retained: bool = False
    response_topic: str | None = None  # MQTT v5: where the sender wants the answer
    correlation_data: bytes | None = None  # MQTT v5: echoed in the answer
    mid: int = 0  # the packet id, for a manual acknowledgement (QoS 1)
    qos: int = 0


@dataclass(frozen=True)
class LastWill:
    """What the broker publishes (retained, QoS 1) for us when we vanish without a goodbye."""

    topic: str
    payload: bytes


def _describe(exc: aiomqtt.MqttError) -> tuple[str, bool]:
    """A message for ``exc`` and whether it is a refusal that retrying cannot mend."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "the broker's certificate is not signed by the site CA (or names another host)", True
    if "Not authorized" in text or "Bad user name or password" in text:
        return "the broker refused the credentials (not authorized)", True
    return text, False


def _unavailable(prefix: str, exc: aiomqtt.MqttError) -> BrokerUnavailable:
    message, refused = _describe(exc)
    return BrokerUnavailable(f"{prefix}: {message}", refused=refused)


SESSION_EXPIRY_S = 24 * 3600


def _session_properties(expiry_s: int) -> Properties:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = expiry_s
    return properties


def close_refused_socket(client: aiomqtt.Client) -> None:
    """Close the socket aiomqtt 2.5 leaves open after a refused CONNECT.

    Without this every refused attempt of a reconnecting service leaks a TLS socket.  paho's
    ``_sock_close`` also runs aiomqtt's socket-close callback, which unregisters the reader.
    """
    paho = client._client  # private: no public way to drop the socket of a refused connect
    if paho.socket() is not None:
        paho._sock_close()


class MqttConnection:
    def __init__(
        self,
        site: Site,
        credentials: Credentials,
        *,
        persistent: bool = False,
        port: int | None = None,
        timeout_s: float = 10.0,
        will: LastWill | None = None,
        manual_ack: bool = False,
    ) -> None:
        """Connect as ``credentials`` to the site broker.

        ``persistent`` keeps the session (subscriptions and queued QoS 1 messages) on the
        broker for ``SESSION_EXPIRY_S`` while the client is away.  The broker makes every
        client id the username (``use_username_as_clientid``), so no other user can take over
        or kick out the session.
        """
        self._site = site
        self._credentials = credentials
        self.port = port or site.broker_port
        self._client = aiomqtt.Client(
            site.broker_host,
            self.port,
            username=credentials.username,
            password=credentials.password,
            identifier=credentials.username if persistent else None,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False if persistent else True,  # noqa: SIM211 - paho takes an enum-like int
            properties=_session_properties(SESSION_EXPIRY_S if persistent else 0),
            tls_context=client_tls_context(site),
            timeout=timeout_s,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=True) if will else None,
            logger=logging.getLogger("smartlock.mqtt.paho"),
        )
        self._manual_ack = manual_ack
        if manual_ack:
            # aiomqtt 2.5 has no API for it; paho's is public: a QoS 1 message is acknowledged
            # (PUBACK) only when ack() is called, so one received but not yet handled durably is
            # sent again by the broker after a crash (the session is persistent).
            self._client._client.manual_ack_set(True)

    async def __aenter__(self) -> MqttConnection:
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as exc:
            close_refused_socket(self._client)
            where = f"{self._site.broker_host}:{self.port}"
            prefix = f"cannot connect to the broker at {where} as {self._credentials.username}"
            raise _unavailable(prefix, exc) from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._client.__aexit__(exc_type, exc, tb)
        except aiomqtt.MqttError:
            logger.debug("disconnect from an already lost connection")

    def ack(self, message: Incoming) -> None:
        """Acknowledge ``message`` (with ``manual_ack``): the broker forgets it.  Only for a
        message received on this connection -- packet ids are per connection."""
        if self._manual_ack and message.qos > 0:
            self._client._client.ack(message.mid, message.qos)

    async def subscribe(self, topic: str) -> None:
        try:
            await self._client.subscribe(topic, qos=1)
        except aiomqtt.MqttError as exc:
            raise _unavailable(f"subscribe to {topic} failed", exc) from None

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        expiry_s: int | None = None,
    ) -> None:
        """QoS 1.  ``expiry_s`` (MQTT v5 message expiry): the broker drops the message if it
        could not deliver it within that many seconds (e.g. to a lock that is offline)."""
        properties = None
        if response_topic is not None or correlation_data is not None or expiry_s is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if response_topic is not None:
                properties.ResponseTopic = response_topic
            if correlation_data is not None:
                properties.CorrelationData = correlation_data
            if expiry_s is not None:
                properties.MessageExpiryInterval = expiry_s
        try:
            await self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        except aiomqtt.MqttError as exc:
            raise _unavailable(f"publish to {topic} failed", exc) from None

    async def messages(self) -> AsyncIterator[Incoming]:
        """Incoming messages; a lost connection ends them with :class:`BrokerUnavailable`."""
        try:
            async for message in self._client.messages:
                payload = message.payload
                if not isinstance(payload, bytes | bytearray):
                    payload = b"" if payload is None else str(payload).encode()
                properties = message.properties
                response_topic = getattr(properties, "ResponseTopic", None)
                correlation = getattr(properties, "CorrelationData", None)
                yield Incoming(
                    str(message.topic),
                    bytes(payload),
                    retained=bool(message.retain),
                    response_topic=str(response_topic) if response_topic is not None else None,
                    correlation_data=bytes(correlation) if correlation is not None else None,
                    mid=int(message.mid),
                    qos=int(message.qos),
                )
        except aiomqtt.MqttError as exc:
            raise _unavailable("lost the broker", exc) from None
