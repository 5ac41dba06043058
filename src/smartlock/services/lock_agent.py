"""The lock agent: keys and commands from the backend over MQTT, tokens over BLE, the bolt.

Order of effects for an accepted token or command (so that a crash never lets one work twice):
verify -> persist the new state (fsync) -> drive the bolt -> queue the event (kept on disk until
the broker has it).

On every (re)connection the lock subscribes to its revocation list first and handles nothing
else -- no key delivery, no command, no BLE token -- until that retained list has been applied
(or ``SYNC_TIMEOUT_S`` passed): a pass revoked while the lock was offline stops working before
anything else happens.  While the broker is unreachable the lock keeps opening for valid tokens
and keeps its events on disk; it uploads them in order when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from smartlock import crypto
from smartlock.adapters.actuator import Actuator, LoggingActuator
from smartlock.adapters.backend_trust import BackendTrust
from smartlock.adapters.key_files import RotatingKey
from smartlock.adapters.mqtt import Incoming, LastWill, MqttConnection
from smartlock.adapters.radio import AdvertisingReport, open_radio
from smartlock.adapters.slot_files import SlotFiles
from smartlock.adapters.supervisor_link import SupervisorLink
from smartlock.core import topics
from smartlock.core.access import make_access_event
from smartlock.core.commands import CommandReceiver, open_command_key_delivery
from smartlock.core.errors import ConfigError, Reason, Rejected
from smartlock.core.intrusion import IntrusionDetector
from smartlock.core.issuance import DEFAULT_CLOCK_SKEW_S, make_key_ack
from smartlock.core.lock_verifier import (
    DEFAULT_DUPLICATE_WINDOW_S,
    LOCK_SUBJECT,
    AccessGranted,
    LockVerifier,
)
from smartlock.core.messages import Action
from smartlock.core.proximity import check_signal
from smartlock.core.release import version_text
from smartlock.core.reports import (
    CommandResult,
    Heartbeat,
    Lockout,
    LockReport,
    ReportBody,
    TokenRefused,
    UpdateStep,
    body_from_json,
    body_to_json,
    seal_report,
)
from smartlock.core.revocation import open_revocation_list
from smartlock.core.update_slots import GRACE_S
from smartlock.core.update_transfer import UPDATES_PREFIX
from smartlock.services.common import (
    Outbox,
    Rejections,
    TrustNotices,
    reconnecting,
)
from smartlock.services.lock_updater import LockUpdater, RestartForUpdate
from smartlock.site import Site, write_private

logger = logging.getLogger("smartlock.lock")
T = TypeVar("T")

DEFAULT_RELOCK_AFTER_S = 5.0
STOP_NOTICE_S = 2.0  # a stopping lock waits this long at most to say it goes offline
SYNC_TIMEOUT_S = 3.0
STATE_VERSION = 1
MAX_STORED_EVENTS = 10_000  # beyond this the oldest refused-token reports are dropped (counted)


class StoredEvents:
    """Events waiting for the broker, in order, kept in the lock's state file until sent.

    An item is a finished payload (a signed access event) or a report body that is sealed with
    the command key and numbered when it was made (``seq``) and sent under the key held when it
    leaves.
    """

    def __init__(self) -> None:
        self.items: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self.ready = asyncio.Event()

    def add_payload(self, payload: bytes) -> None:
        self._add({"payload": payload.hex()})

    def add_report(self, seq: int, at: int, body: ReportBody) -> None:
        self._add({"seq": seq, "at": at, "body": body_to_json(body)})

    def _add(self, item: dict[str, Any]) -> None:
        self.items.append(item)
        while len(self.items) > MAX_STORED_EVENTS:
            for index, old in enumerate(self.items):
                if "body" in old and old["body"][0] == TokenRefused.kind:
                    del self.items[index]
                    break
            else:
                self.items.popleft()
            self.dropped += 1
        self.ready.set()

    def to_json(self) -> list[dict[str, Any]]:
        return list(self.items)

    def restore(self, items: object) -> None:
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ValueError("stored events are not a list")
        for item in items:
            if "payload" in item:
                bytes.fromhex(item["payload"])
            else:
                int(item["seq"]), int(item["at"]), body_from_json(item["body"])
        self.items = deque(items)
        if self.items:
            self.ready.set()


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
        heartbeat_s: float | None = None,
        command_window_s: float | None = None,
        broker_port: int | None = None,
        min_rssi: int | None = None,
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
        self._broker_port = broker_port  # None: the site's
        self._min_rssi = min_rssi  # dBm; None: no floor
        self._heartbeat_s = heartbeat_s or site.heartbeat_s
        self._clock = clock
        self._lock_keys = RotatingKey(
            site.private_key_path(lock_id), site.previous_private_key_path(lock_id)
        )
        self._trust = BackendTrust(site)  # the backend keys it trusts (rotation: two)
        self.verifier = LockVerifier(
            lock_id=lock_id,
            backend_public=self._trust.keys(),
            lock_key=self._lock_keys.current,
            previous_lock_keys=self._lock_keys.previous,
            duplicate_window_s=duplicate_window_s,
            token_window_s=token_window_s,
            intrusion=IntrusionDetector(
                threshold=site.max_failures,
                window_s=site.failure_window_s,
                lockout_s=site.lockout_s,
            ),
        )
        self.commands = CommandReceiver(
            lock_id=lock_id, window_s=command_window_s or site.command_window_s
        )
        self.events = StoredEvents()
        self._next_seq = 1
        self.state_path: Path = site.identity_dir(lock_id) / "state.json"
        if self.state_path.exists():
            self._restore(self.state_path.read_bytes())
        self.rejections = Rejections(logger)
        self._notices = TrustNotices(
            site, self._trust, topics.lock_trust_topics(lock_id), self.rejections, logger
        )
        self._acks = Outbox()  # key acks: useful only now, never kept on disk
        self._relock: asyncio.TimerHandle | None = None
        self._syncing = False  # connected, revocation list not applied yet: handle nothing
        # At start, tokens wait until the first connection attempt has applied the revocation
        # list (or failed): a lock restarted after an outage must not open for a revoked pass.
        self._booted = False
        self._synced = asyncio.Event()
        self._held: list[Incoming] = []
        self._next_lockout_report = 0.0
        # software updates (README, "Updates"): only under 'smartlock lock supervise'
        self.supervisor = SupervisorLink.from_env()
        self.slots = SlotFiles.for_lock(site, lock_id)
        self._mqtt: MqttConnection | None = None
        self._subscribing: set[asyncio.Task[None]] = set()
        self._restart = asyncio.Event()
        self._mqtt_ready = asyncio.Event()
        self._radio_ready = asyncio.Event()
        self.updater = LockUpdater(
            site,
            lock_id,
            files=self.slots,
            supervised=self.supervisor is not None,
            grace_s=GRACE_S if self.supervisor is None else self.supervisor.grace_s,
            report=self._report,
            subscribe=self._subscribe_chunks,
            restart=self._restart.set,
            rejections=self.rejections,
            clock=clock,
        )

    def _restore(self, raw: bytes) -> None:
        try:
            state = json.loads(raw)
            if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
                raise ValueError("unknown state version")
            self.verifier.restore(str(state["verifier"]).encode())
            self.commands.restore(state["commands"])
            self.events.restore(state["events"])
            self._next_seq = int(state["next_seq"])
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
            # Infinity where a number belongs, JSON nested too deep: a damaged file all the same
            raise ConfigError(f"{self.state_path}: unreadable lock state ({exc})") from None

    @property
    def session_topic(self) -> str:
        return topics.lock_topic(self.lock_id, "session")

    @property
    def events_topic(self) -> str:
        return topics.lock_topic(self.lock_id, "events")

    async def run(self) -> None:
        """Serve until cancelled; :class:`RestartForUpdate` once an update is installed."""
        self._report(UpdateStep(version_text(self.updater.running), "running", ""))
        self._take_outcome()  # a trial that ended while no agent ran (rolled back)
        try:
            async with contextlib.AsyncExitStack() as stack:
                link = self.supervisor
                if link is not None:
                    await stack.enter_async_context(link)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(reconnecting(self._mqtt_session, logger), name="lock-mqtt")
                    tasks.create_task(self._scan(), name="lock-radio")
                    tasks.create_task(self._restart_when_installed(), name="lock-update")
                    if link is not None:
                        tasks.create_task(self._supervised(link), name="lock-supervisor")
        except* RestartForUpdate:
            raise RestartForUpdate from None
        finally:
            self.actuator.close()
            logger.info("Lock %s stopping; %s", self.lock_id, self.rejections.summary())

    # --- updates -------------------------------------------------------------------------------

    async def _restart_when_installed(self) -> None:
        await self._restart.wait()
        raise RestartForUpdate  # the "installed" report is on disk: the next agent sends it

    async def _supervised(self, link: SupervisorLink) -> None:
        """Tell the supervisor once this version works (broker synced, radio scanning); report
        what it then decided."""
        await self._mqtt_ready.wait()
        await self._radio_ready.wait()
        await link.report_healthy()
        async for _ in link.outcome_pings():
            self._take_outcome()

    def _take_outcome(self) -> None:
        try:
            outcome = self.slots.read_outcome()
        except ConfigError as exc:
            logger.error("%s; ignored", exc)
            self.slots.clear_outcome()
            return
        if outcome is None:
            return
        version = version_text(outcome.version)
        self._report(UpdateStep(version, outcome.step, outcome.reason))
        self.slots.clear_outcome()
        log = logger.info if outcome.step == "healthy" else logger.warning
        log("Update %s: %s (%s)", version, outcome.step, outcome.detail or "ok")

    def _on_trust_notice(self, message: Incoming) -> None:
        self._notices.handle(message.topic, message.payload)

    def _on_update_chunk(self, message: Incoming) -> None:
        self.updater.on_chunk(message.topic, message.payload)

    def _subscribe_chunks(self, wanted: list[str]) -> None:
        mqtt = self._mqtt
        if mqtt is None:
            return  # subscribed again on reconnect, when the retained offer comes back

        async def subscribe() -> None:
            for topic in wanted:
                await mqtt.subscribe(topic)

        task = asyncio.get_running_loop().create_task(subscribe(), name="lock-update-chunks")
        self._subscribing.add(task)
        task.add_done_callback(self._subscribing.discard)

    # --- MQTT ----------------------------------------------------------------------------------

    async def _mqtt_session(self) -> None:
        credentials = self.site.credentials(self.lock_id)
        availability = topics.lock_topic(self.lock_id, "availability")
        will = LastWill(availability, topics.OFFLINE)
        try:
            async with MqttConnection(
                self.site, credentials, persistent=True, will=will, port=self._broker_port
            ) as mqtt:
                try:
                    await self._serve_mqtt(mqtt, availability)
                except asyncio.CancelledError:
                    # A clean stop says so at once (the last will is only for a lost connection):
                    # the backend and Home Assistant need not wait for missed heartbeats.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(
                            mqtt.publish(availability, topics.OFFLINE, retain=True), STOP_NOTICE_S
                        )
                    raise
        finally:
            # Not connected (or the first attempt failed): the door works offline on what the
            # lock knows.
            self._mqtt = None
            self._syncing = False
            self._booted = True

    async def _serve_mqtt(self, mqtt: MqttConnection, availability: str) -> None:
        self._syncing = True
        self._synced.clear()
        self._held.clear()
        self._mqtt = mqtt
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._dispatch(mqtt), name="lock-inbox")
            # The revocation list first: nothing else is handled until it is applied.
            for topic in self._notices.topics:  # first: what follows may need them
                await mqtt.subscribe(topic)
            for leaf in ("revocations", "command_key", "session", "commands", "update"):
                await mqtt.subscribe(topics.lock_topic(self.lock_id, leaf))
            try:
                await asyncio.wait_for(self._synced.wait(), SYNC_TIMEOUT_S)
            except TimeoutError:
                logger.warning(
                    "No revocation list from the backend within %.0f s; going on",
                    SYNC_TIMEOUT_S,
                )
            self._end_sync()
            self._booted = True
            logger.info("Subscribed to %s for session keys", self.session_topic)
            await mqtt.publish(availability, topics.ONLINE, retain=True)
            self._mqtt_ready.set()
            tasks.create_task(self._acks.drain(mqtt.publish), name="lock-acks")
            tasks.create_task(self._send_events(mqtt), name="lock-events")
            tasks.create_task(self._heartbeats(), name="lock-heartbeat")

    async def _dispatch(self, mqtt: MqttConnection) -> None:
        async for message in mqtt.messages():
            leaf = message.topic.rsplit("/", 1)[-1]
            if message.topic in self._notices.topics:
                self._safely(self._on_trust_notice, message)
            elif leaf == "revocations":
                self._safely(self.on_revocations, message.payload)
                self._synced.set()
            elif leaf == "command_key":
                self._safely(self.on_command_key, message.payload)
            elif self._syncing:
                self._held.append(message)
            else:
                self._handle(message)

    def _end_sync(self) -> None:
        self._syncing = False
        held, self._held = self._held, []
        for message in held:
            self._handle(message)

    def _handle(self, message: Incoming) -> None:
        leaf = message.topic.rsplit("/", 1)[-1]
        if message.topic.startswith(UPDATES_PREFIX + "/"):
            self._safely(self._on_update_chunk, message)
        elif leaf == "session":
            self._safely(self.on_delivery, message.payload)
        elif leaf == "commands":
            self._safely(self.on_command, message.payload)
        elif leaf == "update":
            self._safely(self.updater.on_offer, message.payload)

    def _safely(self, handler: Callable[[T], None], item: T) -> None:
        """A bug costs one message or advertisement, never the lock (the bolt stays as it is)."""
        try:
            handler(item)
        except Exception:
            self.rejections.counts["internal_error"] += 1
            logger.exception("Internal error in %s; input dropped", handler.__name__)

    def on_revocations(self, payload: bytes) -> None:
        try:
            revocations = open_revocation_list(
                payload, lock_id=self.lock_id, backend_public=self._trust.keys()
            )
            dropped = self.verifier.apply_revocations(revocations)
        except Rejected as rejected:
            self.rejections.record("revocation list", rejected)
            return
        if dropped is None:
            logger.info("Revocation list v%d already applied", revocations.version)
            return
        self._persist_or_log("revocation list")
        logger.info(
            "Applied revocation list v%d: %d passes and %d users revoked, %d keys dropped",
            revocations.version,
            len(revocations.pass_ids),
            len(revocations.users),
            len(dropped),
        )

    def _refresh_lock_keys(self) -> None:
        """Follow a rotation of the lock's key (``smartlock rotate lock-key``) without a restart."""
        try:
            changed = self._lock_keys.refresh()
        except ConfigError as exc:
            logger.error("Lock key unreadable (%s); keeping the keys in use", exc)
            return
        if changed:
            self.verifier.set_lock_keys(self._lock_keys.current, self._lock_keys.previous)
            logger.info(
                "Lock key rotated: now %s%s",
                crypto.public_key_fingerprint(self._lock_keys.current.public_key()),
                ", the previous one still accepted" if self._lock_keys.previous else "",
            )

    def on_command_key(self, payload: bytes) -> None:
        self._refresh_lock_keys()
        try:
            epoch, key = open_command_key_delivery(
                payload,
                lock_id=self.lock_id,
                lock_key=self._lock_keys.current,
                previous_lock_keys=self._lock_keys.previous,
                backend_public=self._trust.keys(),
            )
            changed = self.commands.install(epoch, key)
        except Rejected as rejected:
            self.rejections.record("command key", rejected)
            return
        if changed:
            self._persist_or_log("command key")
            logger.info("Installed command key epoch %d", epoch)
        self.events.ready.set()  # reports waiting for a key can go now

    def on_delivery(self, payload: bytes) -> None:
        self._refresh_lock_keys()
        self.verifier.set_backend_keys(self._trust.keys())
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
        self._acks.put(self.events_topic, bytes(make_key_ack(key)))

    def on_command(self, payload: bytes) -> None:
        now = self._clock()
        try:
            command = self.commands.open(payload, now)
        except Rejected as rejected:
            self.rejections.record("remote command", rejected)
            nonce = payload[4:16]
            if len(payload) > 16 and self.commands.key is not None:
                self._report(CommandResult(nonce, Action.UNLOCK, "refused", rejected.reason, ""))
            return
        try:
            self._persist()  # the nonce is spent before the bolt moves
        except OSError as exc:
            logger.error("Cannot record remote command (%s): the bolt stays put", exc.strerror)
            return
        moved = self._drive(command.action, "remote command")
        result = "done" if moved else "failed"
        reason = "" if moved else "bolt_failed"
        self._report(
            CommandResult(command.nonce, command.action, result, reason, self._bolt_state())
        )

    # --- events out ------------------------------------------------------------------------------

    def _report(self, body: ReportBody) -> None:
        seq = self._next_seq
        self._next_seq += 1
        self.events.add_report(seq, int(self._clock()), body)
        self._persist_or_log("event")

    async def _send_events(self, mqtt: MqttConnection) -> None:
        """Publish stored events in order; each leaves the disk only once the broker has it."""
        while True:
            await self.events.ready.wait()
            while self.events.items:
                item = self.events.items[0]
                if "payload" in item:
                    payload = bytes.fromhex(item["payload"])
                else:
                    if self.commands.key is None:
                        break  # reports wait for the command key
                    payload = seal_report(
                        key=self.commands.key,
                        lock_id=self.lock_id,
                        report=LockReport(
                            self.commands.epoch,
                            int(item["seq"]),
                            int(item["at"]),
                            body_from_json(item["body"]),
                        ),
                    )
                await mqtt.publish(self.events_topic, payload)
                if self.events.items and self.events.items[0] is item:
                    self.events.items.popleft()
                self._persist_or_log("event upload")
            self.events.ready.clear()
            if self.events.dropped:
                logger.warning(
                    "%d refused-token reports were dropped while offline (storage bound)",
                    self.events.dropped,
                )
                self.events.dropped = 0

    async def _heartbeats(self) -> None:
        while True:
            now = self._clock()
            locked_until = self.verifier.intrusion.locked_until(LOCK_SUBJECT, now)
            self._report(
                Heartbeat(
                    self._bolt_state(),
                    self.verifier.revocation_version,
                    len(self.verifier.active_keys(now)),
                    int(locked_until or 0),
                )
            )
            await asyncio.sleep(self._heartbeat_s)

    # --- BLE -----------------------------------------------------------------------------------

    async def _scan(self) -> None:
        async with open_radio(self.radio_transport, name=self.lock_id) as radio:
            logger.info("Scanning for BLE advertisements on %s", self.radio_transport)
            self._radio_ready.set()
            scanner = radio.scan()
            async for report in scanner:
                if self._booted:
                    self._safely(self.on_advertisement, report)

    def on_advertisement(self, report: AdvertisingReport) -> None:
        if self._syncing:
            return  # just reconnected: revocations first (the guest keeps advertising)
        now = self._clock()
        try:
            check_signal(report.rssi, self._min_rssi)
            granted = self.verifier.check_advertisement(report.data, now)
        except Rejected as rejected:
            self.rejections.record("advertisement", rejected, report.address)
            if rejected.attempt:
                self._report(
                    TokenRefused(rejected.reason, rejected.who, rejected.pass_id, rejected.attempt)
                )
            elif rejected.reason is Reason.LOCKED_OUT and now >= self._next_lockout_report:
                # attempts during a lockout are logged too, at most one a second (a flood of
                # them must not fill the lock's storage or the audit log)
                self._next_lockout_report = now + 1.0
                self._report(TokenRefused(rejected.reason, "", 0, 0))
            if rejected.lockout_until is not None:
                logger.warning(
                    "INTRUSION: %d failed tokens at %s; refusing tokens for %.0f s",
                    rejected.attempt,
                    self.lock_id,
                    rejected.lockout_until - now,
                )
                self._report(Lockout(int(rejected.lockout_until), rejected.attempt))
            return
        if granted is not None:
            self._act(granted)

    def _act(self, granted: AccessGranted) -> None:
        self._refresh_lock_keys()
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
        if not self._drive(granted.action, guest_id):
            return
        event = make_access_event(
            granted,
            lock_key=self._lock_keys.current,
            now=self._clock(),
            random_bytes=crypto.random_bytes,
        )
        self.events.add_payload(bytes(event))
        self._persist_or_log("access event")

    def _drive(self, action: Action, for_whom: str) -> bool:
        try:
            if action is Action.UNLOCK:
                self.actuator.unlock()
            else:
                self.actuator.lock()
        except Exception as exc:  # a jammed bolt must not stop the lock from serving others
            logger.error(
                "The bolt did not move for %s (%s: %s); state %s",
                for_whom,
                type(exc).__name__,
                exc,
                self.actuator.state.value,
            )
            return False
        if action is Action.UNLOCK:
            logger.info("UNLOCKED %s for %s", self.lock_id, for_whom)
            self._schedule_relock()
        else:
            if self._relock is not None:  # already locked: the pending relock has nothing to do
                self._relock.cancel()
                self._relock = None
            logger.info("LOCKED %s for %s", self.lock_id, for_whom)
        return True

    def _bolt_state(self) -> str:
        return self.actuator.state.value.lower()

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
        now = self._clock()
        self.verifier.prune(now)
        state = {
            "version": STATE_VERSION,
            "verifier": self.verifier.snapshot().decode(),
            "commands": self.commands.snapshot(),
            "events": self.events.to_json(),
            "next_seq": self._next_seq,
        }
        write_private(self.state_path, json.dumps(state).encode())

    def _persist_or_log(self, what: str) -> None:
        try:
            self._persist()
        except OSError as exc:
            logger.error("Cannot store the lock's state after %s (%s)", what, exc.strerror)
