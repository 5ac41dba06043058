"""The lock agent: keys from the backend over MQTT, tokens from guests over BLE, the bolt.

Order of effects for an accepted token (so that a crash never lets a token work twice):
verify -> persist the new counter (fsync) -> drive the bolt -> publish the signed event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from smartlock import crypto
from smartlock.adapters.actuator import Actuator, LoggingActuator
from smartlock.adapters.mqtt import MqttConnection
from smartlock.adapters.radio import AdvertisingReport, open_radio
from smartlock.core.access import make_access_event
from smartlock.core.errors import ConfigError, Rejected
from smartlock.core.issuance import DEFAULT_CLOCK_SKEW_S, make_key_ack
from smartlock.core.lock_verifier import DEFAULT_DUPLICATE_WINDOW_S, AccessGranted, LockVerifier
from smartlock.core.messages import Action
from smartlock.services.common import Outbox, Rejections, reconnecting
from smartlock.site import BACKEND_USER, Site, write_private

logger = logging.getLogger("smartlock.lock")
T = TypeVar("T")

DEFAULT_RELOCK_AFTER_S = 5.0


class LockAgent:
    def __init__(
        self,
        site: Site,
        lock_id: str,
        *,
        radio: str | None = None,
        actuator: Actuator | None = None,
        relock_after_s: float = DEFAULT_RELOCK_AFTER_S,
        duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S,
        token_window_s: float = DEFAULT_CLOCK_SKEW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lock_id not in site.locks:
            raise ConfigError(
                f"no lock {lock_id!r} in site {site.root} (locks: {', '.join(site.locks)})"
            )
        self.site = site
        self.lock_id = lock_id
        self.radio_transport = radio or site.virtual_radio(lock_id)
        self.actuator = actuator or LoggingActuator()
        self._relock_after_s = relock_after_s
        self._clock = clock
        self._lock_key = site.private_key(lock_id)
        self.verifier = LockVerifier(
            lock_id=lock_id,
            backend_public=site.public_key(BACKEND_USER),
            lock_key=self._lock_key,
            duplicate_window_s=duplicate_window_s,
            token_window_s=token_window_s,
        )
        self.state_path: Path = site.identity_dir(lock_id) / "state.json"
        if self.state_path.exists():
            try:
                self.verifier.restore(self.state_path.read_bytes())
            except ValueError as exc:
                raise ConfigError(f"{self.state_path}: {exc}") from None
        self.rejections = Rejections(logger)
        self._outbox = Outbox()
        self._relock: asyncio.TimerHandle | None = None

    @property
    def session_topic(self) -> str:
        return f"locks/{self.lock_id}/session"

    @property
    def events_topic(self) -> str:
        return f"locks/{self.lock_id}/events"

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(reconnecting(self._mqtt_session, logger), name="lock-mqtt")
                tasks.create_task(self._scan(), name="lock-radio")
        finally:
            self.actuator.close()
            logger.info("Lock %s stopping; %s", self.lock_id, self.rejections.summary())

    # --- MQTT ----------------------------------------------------------------------------------

    async def _mqtt_session(self) -> None:
        credentials = self.site.credentials(self.lock_id)
        async with MqttConnection(self.site, credentials, persistent=True) as mqtt:
            await mqtt.subscribe(self.session_topic)
            logger.info("Subscribed to %s for session keys", self.session_topic)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._outbox.drain(mqtt.publish), name="lock-outbox")
                async for message in mqtt.messages():
                    if message.topic == self.session_topic:
                        self._safely(self.on_delivery, message.payload)

    def _safely(self, handler: Callable[[T], None], item: T) -> None:
        """A bug costs one message or advertisement, never the lock (the bolt stays as it is)."""
        try:
            handler(item)
        except Exception:
            self.rejections.counts["internal_error"] += 1
            logger.exception("Internal error in %s; input dropped", handler.__name__)

    def on_delivery(self, payload: bytes) -> None:
        try:
            installed = self.verifier.accept_delivery(payload, self._clock())
        except Rejected as rejected:
            self.rejections.record("key delivery", rejected, self.session_topic)
            return
        try:
            self._persist()
        except OSError as exc:
            logger.error(
                "Cannot store session key %s (%s): not acknowledged",
                installed.key.handle,
                exc.strerror,
            )
            return
        key = installed.key
        logger.info(
            "Received session key %s for %s, valid %d s (%d bytes)",
            key.handle,
            key.header.guest_id,
            key.header.expires_at - int(self._clock()),
            len(payload),
        )
        self._outbox.put(self.events_topic, bytes(make_key_ack(key)))

    # --- BLE -----------------------------------------------------------------------------------

    async def _scan(self) -> None:
        async with open_radio(self.radio_transport, name=self.lock_id) as radio:
            logger.info("Scanning for BLE advertisements on %s", self.radio_transport)
            scanner = radio.scan()
            async for report in scanner:
                self._safely(self.on_advertisement, report)

    def on_advertisement(self, report: AdvertisingReport) -> None:
        try:
            granted = self.verifier.check_advertisement(report.data, self._clock())
        except Rejected as rejected:
            self.rejections.record("advertisement", rejected, report.address)
            return
        if granted is not None:
            self._act(granted)

    def _act(self, granted: AccessGranted) -> None:
        try:
            self._persist()  # the counter is spent before the bolt moves
        except OSError as exc:
            logger.error(
                "Cannot record the use of token %d (%s): the bolt stays put",
                granted.counter,
                exc.strerror,
            )
            return
        guest_id = granted.key.header.guest_id
        try:
            if granted.action is Action.UNLOCK:
                self.actuator.unlock()
            else:
                self.actuator.lock()
        except Exception as exc:  # a jammed bolt must not stop the lock from serving others
            logger.error(
                "The bolt did not move for %s (%s: %s); state %s",
                guest_id,
                type(exc).__name__,
                exc,
                self.actuator.state.value,
            )
            return
        if granted.action is Action.UNLOCK:
            logger.info("UNLOCKED %s for %s", self.lock_id, guest_id)
            self._schedule_relock()
        else:
            if self._relock is not None:  # already locked: the pending relock has nothing to do
                self._relock.cancel()
                self._relock = None
            logger.info("LOCKED %s for %s", self.lock_id, guest_id)
        event = make_access_event(
            granted, lock_key=self._lock_key, now=self._clock(), random_bytes=crypto.random_bytes
        )
        self._outbox.put(self.events_topic, bytes(event))

    def _schedule_relock(self) -> None:
        if self._relock is not None:
            self._relock.cancel()
        self._relock = asyncio.get_running_loop().call_later(self._relock_after_s, self._relock_now)

    def _relock_now(self) -> None:
        self._relock = None
        try:
            self.actuator.lock()
        except Exception as exc:  # report it; the next relock or command tries again
            logger.error("Relock of %s failed (%s: %s)", self.lock_id, type(exc).__name__, exc)
            return
        logger.info("LOCKED %s (relocked after %.0f s)", self.lock_id, self._relock_after_s)

    def _persist(self) -> None:
        self.verifier.prune(self._clock())
        write_private(self.state_path, self.verifier.snapshot())
