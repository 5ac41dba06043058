"""The backend service: decides every request from the store, and watches the locks.

Topics (all of them in :mod:`smartlock.core.topics`; ACL in :mod:`smartlock.broker`):

* in  ``backend/session_requests/{user}`` -> out ``locks/{lock}/session``, then (after the lock's
  ack) ``users/{user}/session``;
* in  ``backend/commands/{user}`` (v5 response topic + correlation data) -> out
  ``locks/{lock}/commands`` -> in the lock's report -> out the reply on the response topic;
* in  ``locks/{lock}/events``: key acks, access events (forwarded to ``users/{user}/events``),
  sequence-numbered reports (heartbeats, command results, refused tokens, lockouts);
* in  ``locks/{lock}/availability`` (the lock's last will);
* out, retained: ``locks/{lock}/command_key``, ``locks/{lock}/revocations``, and for pushed
  software updates ``locks/{lock}/update`` and ``updates/{bundle}/{index}``
  (:mod:`smartlock.services.update_publisher`);
* out ``users/{owner or resident}/alerts``.

Every decision and every attempt goes to the audit log, once.  Key requests and remote commands
that are refused count as failed attempts of that user (:mod:`smartlock.core.intrusion`); the
locks count refused BLE tokens themselves and report lockouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from smartlock import admin, crypto
from smartlock.adapters.key_files import MISSING, RotatingKey, file_version
from smartlock.adapters.mqtt import Incoming, MqttConnection
from smartlock.adapters.store import Store
from smartlock.adapters.web.backend_port import AlertNotice, CommandOutcome, Enrollment
from smartlock.adapters.web.metrics import Metrics
from smartlock.core import home_assistant, topics
from smartlock.core.access import open_access_event
from smartlock.core.alerts import make_alert
from smartlock.core.backend_key import ENDORSE, RETIRE, make_backend_key_notice
from smartlock.core.ca_notice import make_ca_notice
from smartlock.core.commands import (
    CommandRequest,
    command_key,
    make_command_key_delivery,
    make_command_reply,
    seal_lock_command,
)
from smartlock.core.errors import ConfigError, Reason, Rejected, StoreUnavailable
from smartlock.core.intrusion import IntrusionDetector
from smartlock.core.issuance import MAX_KEY_TTL_S
from smartlock.core.issuer import DeliverToLock, KeyIssuer
from smartlock.core.lock_verifier import USE_MERGE_S
from smartlock.core.messages import (
    ID_BYTES,
    NO_PASS,
    Action,
    MessageType,
    SessionRequest,
    peek_type,
)
from smartlock.core.policy import (
    KeyGrant,
    RateLimit,
    RecentIds,
    check_request_time,
    decide_command,
    decide_key_request,
)
from smartlock.core.records import AuditRecord, Invitation, LockHealth, LockRecord
from smartlock.core.reports import (
    CommandResult,
    Heartbeat,
    Lockout,
    TokenRefused,
    UpdateStep,
    open_report,
)
from smartlock.core.revocation import make_revocation_list
from smartlock.core.roles import Role
from smartlock.services.common import Outbox, Rejections, reconnecting
from smartlock.services.home_assistant import HomeAssistantBridge
from smartlock.services.update_publisher import UpdatePublisher
from smartlock.site import BACKEND_USER, Site, write_private

logger = logging.getLogger("smartlock.backend")

EVENT_MEMORY_S = 24 * 3600
COMMAND_TIMEOUT_S = 5.0
TICK_S = 0.5
COMMAND_BURST = 5  # remote commands a user may send at once...
COMMANDS_PER_MINUTE = 30.0  # ...and then one every 2 s on average
UNLOGGED_CAPACITY = 10_000  # lock events kept in memory while the store cannot write
NOT_COUNTED = frozenset({Reason.LOCKED_OUT, Reason.RATE_LIMITED, Reason.UNKNOWN_USER})
ATTEMPT_RESULTS = frozenset({"granted", "denied", "failed"})
ATTEMPT_ACTIONS = frozenset({"unlock", "lock", "key_request", "login"})
ALERT_FEED_CAPACITY = 100
ISSUING_CAPACITY = 10_000
CERTIFICATE_CHECK_S = 24 * 3600  # certificates close to expiry are alerted about once a day
RECENT_ALERTS = 50
ALERT_KIND_OF_ACTION = {"offline": "lock_offline", "lockout": "intrusion"}  # audit -> alert kind


# how a command's end reaches its requester: (result, reason, bolt) -> signed MQTT reply, or
# the dashboard's awaiting request
ReplyTo = Callable[[str, str, str], None]


@dataclass
class _PendingCommand:
    user: str
    role: Role
    request: CommandRequest
    reply: ReplyTo
    deadline: float
    channel: str


def token_words(token: tuple[int, str]) -> tuple[str, str]:
    return ("trust" if token[0] == ENDORSE else "drop", token[1])


class SiteDirectory:
    """The issuer's view of the world: the store at request time, the site's public keys."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._keys: dict[str, tuple[tuple[int, int], crypto.PublicKey]] = {}  # by file version
        self._previous: dict[str, tuple[tuple[int, int], crypto.PublicKey]] = {}

    def authorize_key(self, user: str, lock_id: str, now: float) -> KeyGrant:
        self._backend.check_not_locked_out(user, now)
        store = self._backend.store
        return decide_key_request(
            name=user,
            user=store.get_user(user),
            lock_id=lock_id,
            lock=store.get_lock(lock_id),
            passes=store.passes_for(user, lock_id),
            now=now,
            zone=self._backend.site.zone,
        )

    def public_key(self, identity: str) -> crypto.PublicKey:
        """``identity``'s public key, read again when its file changed (a user removed and
        added back has a new key pair, a lock's key was rotated)."""
        site = self._backend.refresh_site(identity)
        path = site.public_key_path(identity)
        version = file_version(path)  # missing: public_key() raises its clear error
        cached = self._keys.get(identity)
        if cached is None or cached[0] != version:
            cached = self._keys[identity] = (version, site.public_key(identity))
        return cached[1]

    def key_version(self, identity: str) -> tuple[int, int]:
        """Changes whenever ``identity``'s public key file is replaced."""
        return file_version(self._backend.refresh_site(identity).public_key_path(identity))

    def previous_publics(self, identity: str) -> tuple[crypto.PublicKey, ...]:
        """The key an unfinished rotation replaced (``smartlock rotate lock-key``), if any."""
        path = self._backend.refresh_site(identity).previous_public_key_path(identity)
        version = file_version(path)
        if version == MISSING:
            return ()
        cached = self._previous.get(identity)
        if cached is None or cached[0] != version:
            try:
                key = crypto.load_public_key(path.read_bytes())
            except (OSError, crypto.CryptoError) as exc:
                logger.error("Previous key of %s unreadable (%s); not accepted", identity, exc)
                return ()
            cached = self._previous[identity] = (version, key)
        return (cached[1],)

    def lock_public(self, lock_id: str) -> crypto.PublicKey:
        return self.public_key(lock_id)

    def user_public(self, user: str) -> crypto.PublicKey:
        return self.public_key(user)


class Backend:
    def __init__(
        self,
        site: Site,
        *,
        store: Store,
        clock: Callable[[], float] = time.time,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> None:
        self.site = site
        self.store = store
        self._clock = clock
        self._command_timeout_s = command_timeout_s
        self.rejections = Rejections(logger)
        # the signing key, followed on disk: 'rotate backend-key' replaces it while we run
        self._signing = RotatingKey(
            site.private_key_path(BACKEND_USER), site.previous_private_key_path(BACKEND_USER)
        )
        self._notices_sent: tuple[int, str] | None = None  # (kind, key) told to every device
        self._notice_basis: object = None  # the key files the last notice was made from
        self._ca_sent: tuple[int, int] | None = None  # the ca.crt version told to every device
        self._command_master = site.secret(site.command_master_key_path)
        self.directory = SiteDirectory(self)
        self.issuer = KeyIssuer(
            backend_key=self._backend_key,
            directory=self.directory,
            random_bytes=crypto.random_bytes,
            ttl_s=site.session_ttl_s,
        )
        self.intrusion = IntrusionDetector(
            threshold=site.max_failures, window_s=site.failure_window_s, lockout_s=site.lockout_s
        )
        self._intrusion_path = site.root / "backend" / "intrusion.json"
        if self._intrusion_path.exists():  # lockouts outlive a backend restart
            try:
                self.intrusion.restore(self._intrusion_path.read_bytes())
            except ValueError as exc:
                raise ConfigError(f"{self._intrusion_path}: {exc}") from None
        self._outbox = Outbox()
        self._event_ids = RecentIds(window_s=EVENT_MEMORY_S)
        self._command_ids = RecentIds(window_s=EVENT_MEMORY_S)
        self._pending_commands: dict[bytes, _PendingCommand] = {}  # by the command's nonce
        self._late_commands: dict[bytes, _PendingCommand] = {}  # timed out, still remembered
        # lock -> (command key epoch, lock key file version) published: a rotated lock key gets
        # the command key again, sealed for the new key
        self._published_keys: dict[str, tuple[int, tuple[int, int]]] = {}
        self._published_revocations: dict[str, int] = {}  # lock -> revocation list version
        self._publish_failures: dict[str, int] = {}  # lock -> version already alerted about
        self._command_rate = RateLimit(burst=COMMAND_BURST, per_minute=COMMANDS_PER_MINUTE)
        self._rate_limited_audited: dict[str, float] = {}
        self._last_use: OrderedDict[bytes, float] = OrderedDict()  # key id -> last counted use
        # Lock events the store could not take (disk full, read-only): retried every tick, so
        # a door event reaches the audit log once the store writes again.
        self._unlogged: deque[_KeptEvent] = deque()
        self._connection: MqttConnection | None = None  # the current one, for late acks
        self._started_at = clock()
        self._next_certificate_check = 0.0  # at the first tick, then every CERTIFICATE_CHECK_S
        self.metrics = Metrics(lambda: self.rejections.counts)
        self._issuing: dict[bytes, float] = {}  # key id -> when its request arrived (latency)
        self._alert_listeners: set[asyncio.Queue[AlertNotice]] = set()
        self.updates = UpdatePublisher(site, store, self._outbox, self.audit)
        self.home_assistant: HomeAssistantBridge | None = None
        if site.home_assistant_user is not None:
            self.home_assistant = HomeAssistantBridge(site, self._outbox)

    # --- site and store -------------------------------------------------------------------------

    def refresh_site(self, identity: str) -> Site:
        """The site again from disk when ``identity`` was added after we started."""
        if identity not in (*self.site.locks, *self.site.users):
            self.site = Site.load(self.site.root)
        return self.site

    def check_not_locked_out(self, user: str, now: float) -> None:
        until = self.intrusion.locked_until(f"user:{user}", now)
        if until is not None:
            raise Rejected(
                Reason.LOCKED_OUT,
                f"{user} is locked out for {until - now:.0f} s after failed attempts",
                who=user,
            )

    def audit(
        self,
        *,
        who: str,
        lock_id: str,
        channel: str,
        action: str,
        result: str,
        reason: str = "",
        attempt: int = 0,
        event_key: str | None = None,
        at: float | None = None,
    ) -> bool:
        """Append to the audit log; False when this event was logged already."""
        user = self.store.get_user(who) if who else None
        record = AuditRecord(
            at_ms=int((self._clock() if at is None else at) * 1000),
            who=who,
            role=user.role.value if user else "",
            lock_id=lock_id,
            channel=channel,
            action=action,
            result=result,
            reason=reason,
            attempt=attempt,
            event_key=event_key,
        )
        logged = self.store.append_audit(record) is not None
        if logged:
            self._count_attempt(channel, action, result)
        return logged

    def now(self) -> float:
        return self._clock()

    @property
    def _backend_key(self) -> crypto.PrivateKey:
        return self._signing.current

    def follow_signing_key(self) -> None:
        """Sign with the key on disk; during a rotation tell every lock and user device, with
        a notice signed by a key it trusts, which backend key to trust
        (:mod:`smartlock.core.backend_key`)."""
        try:
            changed = self._signing.refresh()
        except ConfigError as exc:
            logger.error("Backend key unreadable (%s); signing with the one in use", exc)
            return
        if changed:
            self.issuer.set_backend_key(self._signing.current)
            self._published_keys.clear()  # retained state, signed again with the new key
            self._published_revocations.clear()
            self._notices_sent = None
            logger.info(
                "Signing with backend key %s",
                crypto.public_key_fingerprint(self._signing.current.public_key()),
            )
        # a notice is made (signed) only when the key files changed, not on every tick
        basis = (self._signing.version, file_version(self.site.retired_backend_key_path))
        if basis == self._notice_basis:
            return
        self._notice_basis = basis
        notice = self._backend_key_notice()
        if notice is None:
            return
        token, payload = notice
        if token == self._notices_sent:
            return
        self._tell_every_device("backend_key", payload)
        self._notices_sent = token
        logger.info("Told every device: %s backend key %s", *token_words(token))

    def publish_site_ca(self) -> None:
        """Tell every device, signed, which site CA certificates to trust -- again whenever
        ``ca.crt`` changes (``smartlock rotate ca``): a device with its own copy of the site
        learns the next CA before the broker switches to it (:mod:`smartlock.core.ca_notice`)."""
        path = self.site.ca_cert
        version = file_version(path)
        if version == self._ca_sent:
            return
        try:
            certificates = crypto.certificates_to_der(path.read_bytes())
            payload = make_ca_notice(certificates, now=self._clock(), backend_key=self._backend_key)
        except (OSError, crypto.CryptoError, ValueError) as exc:
            logger.error("Cannot tell the devices the site CA (%s): %s", path, exc)
            self._ca_sent = version  # logged once; tried again when the file changes
            return
        self._tell_every_device("ca", payload)
        self._ca_sent = version
        logger.info("Told every device: trust %d site CA certificate(s)", len(certificates))

    def _tell_every_device(self, leaf: str, payload: bytes) -> None:
        """Retained on ``locks/{lock}/{leaf}`` and ``users/{user}/{leaf}`` for every device."""
        site = Site.load(self.site.root)  # devices added since we started are told too
        for lock_id in site.locks:
            self._outbox.put(topics.lock_topic(lock_id, leaf), payload, retain=True)
        for user in site.users:
            self._outbox.put(topics.user_topic(user, leaf), payload, retain=True)

    def _backend_key_notice(self) -> tuple[tuple[int, str], bytes] | None:
        now = self._clock()
        previous = self._signing.previous
        current_der = crypto.public_key_to_der(self._signing.current.public_key())
        if previous and crypto.public_key_to_der(previous[0].public_key()) != current_der:
            # the overlap: the previous key endorses the new one
            key = self._signing.current.public_key()
            token = (ENDORSE, crypto.public_key_fingerprint(key))
            signer = previous[0]
        else:
            path = self.site.retired_backend_key_path
            if not path.exists():
                return None
            try:
                key = crypto.load_public_key(path.read_bytes())
            except (OSError, crypto.CryptoError) as exc:
                logger.error("Retired backend key %s unreadable (%s)", path, exc)
                return None
            token = (RETIRE, crypto.public_key_fingerprint(key))
            signer = self._signing.current
        return token, make_backend_key_notice(token[0], key, now=now, signing_key=signer)

    def _count_attempt(self, channel: str, action: str, result: str) -> None:
        if result in ATTEMPT_RESULTS and action in ATTEMPT_ACTIONS:
            self.metrics.attempts.labels(channel, result).inc()

    def _failure(
        self, user: str, rejected: Rejected, lock_id: str, now: float, channel: str
    ) -> int:
        """Count a refused request of ``user``; start a lockout (and alert) on one too many."""
        if rejected.reason in NOT_COUNTED or not user:
            return 0
        verdict = self.intrusion.record_failure(f"user:{user}", now)
        try:
            write_private(self._intrusion_path, self.intrusion.snapshot())
        except OSError as exc:
            logger.error("Cannot store the failed-attempt counters (%s)", exc.strerror)
        if verdict.lockout_until is not None:
            detail = (
                f"{verdict.attempt} failed attempts by {user} within "
                f"{self.site.failure_window_s} s; locked out for {self.site.lockout_s} s"
            )
            logger.warning("INTRUSION: %s", detail)
            self.audit(
                who=user,
                lock_id=lock_id,
                channel=channel,
                action="lockout",
                result="alert",
                reason=rejected.reason.value,
                attempt=verdict.attempt,
            )
            self.alert("intrusion", lock_id=lock_id, subject=user, detail=detail)
        return verdict.attempt

    def alert(self, kind: str, *, lock_id: str, subject: str, detail: str) -> None:
        """Sign one alert and send it to every owner and resident."""
        alert = make_alert(
            kind=kind,
            lock_id=lock_id,
            subject=subject,
            detail=detail,
            now=self._clock(),
            backend_key=self._backend_key,
            random_bytes=crypto.random_bytes,
        )
        payload = bytes(alert)
        for user in self.store.list_users():
            if user.role.receives_alerts:
                self._outbox.put(topics.user_topic(user.name, "alerts"), payload)
        self.metrics.alerts.labels(kind).inc()
        notice = AlertNotice(self._clock(), kind, lock_id, subject, detail)
        for listener in list(self._alert_listeners):
            if listener.full():  # a stalled page loses alerts, never the backend
                continue
            listener.put_nowait(notice)

    def _bolts(self) -> tuple[list[str], dict[str, str | None]]:
        locks = [lock.lock_id for lock in self.store.list_locks()]
        bolts: dict[str, str | None] = {}
        for lock_id in locks:
            health = self.store.lock_health(lock_id)
            bolts[lock_id] = health.bolt_state if health is not None else None
        return locks, bolts

    def _local_request(self, lock_id: str, action: Action) -> CommandRequest:
        """A command request made here (dashboard, Home Assistant), as a user's would arrive."""
        return CommandRequest(
            request_id=crypto.random_bytes(ID_BYTES),
            sent_at=int(self._clock()),
            lock_id=lock_id,
            action=action,
        )

    def on_bolt_moving(self, lock_id: str, action: Action) -> None:
        if self.home_assistant is not None:
            self.home_assistant.moving(lock_id, action)

    def on_bolt_settled(self, lock_id: str, bolt: str | None) -> None:
        if self.home_assistant is not None:
            self.home_assistant.settled(lock_id, bolt)

    def _on_home_assistant_command(self, lock_id: str, message: Incoming) -> None:
        assert self.home_assistant is not None
        action = home_assistant.parse_command(message.payload)
        request = self._local_request(lock_id, action)
        # Home Assistant sees the result on the state topic (the hooks above)
        self._command(self.home_assistant.user, request, _no_reply, "homeassistant")

    # --- the dashboard's view (smartlock.adapters.web.backend_port.BackendPort) -----------------

    def audit_web(self, *, who: str, action: str, result: str, reason: str = "") -> None:
        self.audit(who=who, lock_id="", channel="web", action=action, result=result, reason=reason)

    async def remote_command(
        self, user: str, lock_id: str, action: Action, *, channel: str
    ) -> CommandOutcome:
        """A remote command from the dashboard or Home Assistant, decided and audited as one
        over MQTT (same rate limit, lockout, roles and fail-closed audit)."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[CommandOutcome] = loop.create_future()

        def reply(result: str, reason: str, bolt: str) -> None:
            if not outcome.done():
                outcome.set_result(CommandOutcome(result, reason, bolt))

        request = self._local_request(lock_id, action)
        try:
            self._command(user, request, reply, channel)
        except Rejected as rejected:
            self.rejections.record(f"{channel} command", rejected, user)
            return CommandOutcome("denied", rejected.reason.value)
        except StoreUnavailable as exc:
            self.store_unavailable(f"{channel} command of {user}", exc)
            return CommandOutcome("denied", Reason.AUDIT_UNAVAILABLE.value)
        # the command's own deadline answers "failed" in time; this bound is only a backstop
        return await asyncio.wait_for(outcome, self._command_timeout_s + 2 * TICK_S + 1)

    async def alert_feed(self) -> AsyncIterator[AlertNotice]:
        queue: asyncio.Queue[AlertNotice] = asyncio.Queue(maxsize=ALERT_FEED_CAPACITY)
        self._alert_listeners.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._alert_listeners.discard(queue)

    def recent_alerts(self) -> list[AlertNotice]:
        """The newest alerts in the audit log (they outlive a restart), newest first."""
        return [
            AlertNotice(
                entry.record.at_ms / 1000,
                ALERT_KIND_OF_ACTION.get(entry.record.action, entry.record.action),
                entry.record.lock_id,
                entry.record.who or entry.record.lock_id,
                entry.record.reason,
            )
            for entry in reversed(self.store.audit_entries(result="alert", limit=RECENT_ALERTS))
        ]

    def enroll_guest(self, invitation: Invitation, public_key_pem: bytes) -> Enrollment:
        site, password = admin.enroll_guest(self.site, invitation, public_key_pem)
        self.site = site
        logger.info(
            "Guest %s enrolled its own device (pass %d)", invitation.guest, invitation.pass_id
        )
        return Enrollment(
            site_name=site.name,
            guest=invitation.guest,
            broker_host=site.broker_host,
            broker_port=site.broker_port,
            password=password,
            ca_pem=site.ca_cert.read_text(),
            backend_public_pem=site.public_key_path(BACKEND_USER).read_text(),
            locks=(invitation.lock_id,),
        )

    # --- the service ----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await reconnecting(self._session, logger)
        finally:
            logger.info("Backend stopping; %s", self.rejections.summary())

    async def _session(self) -> None:
        async with MqttConnection(
            self.site, self.site.credentials(BACKEND_USER), persistent=True, manual_ack=True
        ) as mqtt:
            self._connection = mqtt
            self._published_keys.clear()
            self._published_revocations.clear()
            self.updates.reset()
            self._notices_sent = None
            self._notice_basis = None
            self._ca_sent = None
            try:
                self.follow_signing_key()
                self.publish_site_ca()
                self.publish_lock_state()
            except Exception:  # the periodic tick tries again; the session must go on
                self.rejections.counts["internal_error"] += 1
                logger.exception("Could not publish the locks' command keys and revocations")
            subscriptions = [
                topics.session_requests("+"),
                topics.command_requests("+"),
                topics.lock_topic("+", "events"),
                topics.lock_topic("+", "availability"),
            ]
            if self.home_assistant is not None:
                subscriptions.append(topics.home_assistant_command("+"))
                self.home_assistant.announce(*self._bolts())
            for topic in subscriptions:
                await mqtt.subscribe(topic)
            logger.info(
                "Backend listening for session requests on %s", topics.session_requests("+")
            )
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._outbox.drain(mqtt.publish), name="backend-outbox")
                tasks.create_task(self._ticks(), name="backend-ticks")
                async for message in mqtt.messages():
                    if not _is_lock_event(message.topic):
                        mqtt.ack(message)  # a request is answered at most once
                        self.handle(message)
                    elif self.handle(message):
                        mqtt.ack(message)  # a door event only once it is stored

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.tick()
            except Exception:  # a bug in one tick must not stop the next
                self.rejections.counts["internal_error"] += 1
                logger.exception("Internal error in the backend's periodic work")

    def store_unavailable(self, what: str, exc: StoreUnavailable) -> None:
        """Log and count one thing the store could not take."""
        self.rejections.counts[Reason.AUDIT_UNAVAILABLE.value] += 1
        logger.error("Store unavailable, %s not handled: %s", what, exc)

    def tick(self) -> None:
        try:
            self._tick()
        except StoreUnavailable as exc:
            self.store_unavailable("periodic work", exc)

    def _tick(self) -> None:
        now = self._clock()
        self._retry_unlogged()
        for denial, lock_id in self.issuer.expire_with_locks(now):
            logger.warning("Lock did not confirm a key in time; telling %s", denial.guest_id)
            self.audit(
                who=denial.guest_id,
                lock_id=lock_id,
                channel="ble",
                action="key_request",
                result="failed",
                reason=denial.reason,
            )
            self._outbox.put(topics.user_topic(denial.guest_id, "session"), denial.payload)
        self._expire_commands(now)
        self.follow_signing_key()  # before the retained state it may have to sign again
        self.publish_site_ca()
        locks = self.store.list_locks()  # read once a tick, for both
        self.publish_lock_state(locks)
        self.updates.publish()
        self._check_heartbeats(now, locks)
        self.metrics.locks_known.set(len(locks))
        if now >= self._next_certificate_check:
            self._next_certificate_check = now + CERTIFICATE_CHECK_S
            self._check_certificates(now)

    def _check_certificates(self, now: float) -> None:
        """Alert owners and residents, once per check, about a certificate that expires within
        30 days (or is not usable): the same checks as ``smartlock doctor``."""
        from smartlock import doctor

        for check in (
            doctor.check_ca_certificate(self.site, now=now),
            doctor.check_broker_certificate(self.site, now=now),
        ):
            if check.ok:
                continue
            logger.warning("Certificate: %s: %s (fix: %s)", check.name, check.detail, check.fix)
            self.audit(
                who="",
                lock_id="",
                channel="system",
                action="certificate",
                result="alert",
                reason=f"{check.name}: {check.detail}"[:200],
            )
            self.alert(
                "certificate_expiring",
                lock_id="",
                subject=check.name.replace(" ", "_"),
                detail=f"{check.name}: {check.detail}; fix: {check.fix}",
            )

    def handle(self, message: Incoming) -> bool:
        """Dispatch one message; a refused one is logged and counted, never raised.

        False when a lock's event could not be stored yet: it is kept and tried again each
        tick, and acknowledged to the broker only once stored (see :meth:`_retry_unlogged`).
        """
        parts = message.topic.split("/")
        try:
            if parts[0] in ("backend", "smartlock") and message.retained:
                # a request is an event, not a state: kept by the broker it would be answered
                # again after every restart of the backend
                raise Rejected(Reason.REPLAY, f"retained request on {message.topic}")
            if len(parts) == 3 and parts[0] == "backend" and parts[1] == "session_requests":
                self._on_key_request(parts[2], message.payload)
            elif len(parts) == 3 and parts[0] == "backend" and parts[1] == "commands":
                self._on_command_request(parts[2], message)
            elif _is_lock_event(message.topic):
                self._on_lock_event_or_keep(parts[1], message)
            elif len(parts) == 3 and parts[0] == "locks" and parts[2] == "availability":
                self._on_availability(parts[1], message.payload)
            elif (
                self.home_assistant is not None
                and len(parts) == 4
                and message.topic == topics.home_assistant_command(parts[2])
            ):
                self._on_home_assistant_command(parts[2], message)
            else:
                logger.warning("Ignored message on unexpected topic %s", message.topic)
        except Rejected as rejected:
            self.rejections.record("message", rejected, message.topic)
        except StoreUnavailable as exc:
            self.store_unavailable(f"a message on {message.topic}", exc)
            return not _is_lock_event(message.topic)
        except Exception:  # a bug must cost one message, never the service
            self.rejections.counts["internal_error"] += 1
            logger.exception("Internal error on a message from %s; dropped", message.topic)
        return True

    # --- key requests ---------------------------------------------------------------------------

    def _on_key_request(self, user: str, payload: bytes) -> None:
        now = self._clock()
        started = time.perf_counter()
        try:
            answer = self.issuer.on_request(user, payload, now)
        except Rejected as rejected:
            if rejected.reason is Reason.UNKNOWN_USER:
                self.audit(
                    who=user,
                    lock_id="",
                    channel="ble",
                    action="key_request",
                    result="denied",
                    reason=rejected.reason.value,
                )
            raise
        if isinstance(answer, DeliverToLock):
            logger.info(
                "Issued session key %s for %s on %s, expires in %d s (lock delivery %d bytes)",
                answer.key.handle,
                user,
                answer.lock_id,
                answer.key.header.expires_at - answer.key.header.issued_at,
                len(answer.payload),
            )
            try:
                self.audit(
                    who=user,
                    lock_id=answer.lock_id,
                    channel="ble",
                    action="key_request",
                    result="granted",
                    reason=f"pass {answer.grant.pass_id}" if answer.grant.pass_id else "",
                )
            except StoreUnavailable as exc:  # fail closed: no access that cannot be logged
                self.store_unavailable(f"key for {user} on {answer.lock_id} refused", exc)
                denial = self.issuer.withdraw(
                    answer.key.key_id, now, Reason.AUDIT_UNAVAILABLE.value
                )
                self._outbox.put(topics.user_topic(user, "session"), denial.payload)
                return
            self._outbox.put(topics.lock_topic(answer.lock_id, "session"), answer.payload)
            self._issuing[answer.key.key_id] = started
            while len(self._issuing) > ISSUING_CAPACITY:  # keys never acknowledged
                del self._issuing[next(iter(self._issuing))]
            return
        lock_id = _lock_of_request(payload)
        attempt = 0
        if answer.rejected is not None:
            attempt = self._failure(user, answer.rejected, lock_id, now, "ble")
        logger.warning("Denied session key to %s: %s", user, answer.reason)
        try:
            self.audit(
                who=user,
                lock_id=lock_id,
                channel="ble",
                action="key_request",
                result="denied",
                reason=answer.reason,
                attempt=attempt,
            )
        except StoreUnavailable as exc:  # a refusal still goes out, even unlogged
            self.store_unavailable(f"the refusal of a key to {user}", exc)
        self._outbox.put(topics.user_topic(answer.guest_id, "session"), answer.payload)

    # --- remote commands ------------------------------------------------------------------------

    def _on_command_request(self, user: str, message: Incoming) -> None:
        now = self._clock()
        request = CommandRequest.from_bytes(message.payload)
        reply_topic = topics.user_topic(user, "replies")
        if message.response_topic != reply_topic:
            raise Rejected(
                Reason.BAD_REPLY_TOPIC,
                f"command from {user} must name {reply_topic} as its response topic",
            )
        if self._command_ids.seen_before(user.encode() + b"/" + request.request_id, now):
            raise Rejected(Reason.REPLAY, f"command {request.request_id[:4].hex()} from {user}")
        correlation = message.correlation_data

        def reply(result: str, reason: str, bolt: str) -> None:
            self._reply(request, reply_topic, correlation, result, reason, bolt)

        self._command(user, request, reply, "remote")

    def _command(self, user: str, request: CommandRequest, reply: ReplyTo, channel: str) -> None:
        """Decide, audit and send one remote command; its end goes to ``reply`` (a refusal that
        gets no answer at all, a flood, raises :class:`Rejected`)."""
        now = self._clock()
        action = request.action.name.lower()
        if not self._command_rate.allow(user, now):
            # no signed answer and no bolt: a flood costs the backend almost nothing; the log
            # gets one line a second of it
            if now - self._rate_limited_audited.get(user, 0.0) >= 1.0:
                self._rate_limited_audited[user] = now
                self.audit(
                    who=user,
                    lock_id=request.lock_id,
                    channel=channel,
                    action=action,
                    result="denied",
                    reason=Reason.RATE_LIMITED.value,
                )
            raise Rejected(Reason.RATE_LIMITED, f"{user} sends commands faster than allowed")
        try:
            window = self.site.command_window_s
            check_request_time(request.sent_at, now, window, max_age_s=window)
            self.check_not_locked_out(user, now)
            lock = self.store.get_lock(request.lock_id)
            role = decide_command(
                name=user, user=self.store.get_user(user), lock_id=request.lock_id, lock=lock
            )
        except Rejected as rejected:
            attempt = self._failure(user, rejected, request.lock_id, now, channel)
            logger.warning(
                "Refused %s %s of %s by %s: %s", channel, action, request.lock_id, user, rejected
            )
            self.audit(
                who=user,
                lock_id=request.lock_id,
                channel=channel,
                action=action,
                result="denied",
                reason=rejected.reason.value,
                attempt=attempt,
            )
            reply("denied", rejected.reason.value, "unknown")
            return
        assert lock is not None  # decide_command checked it
        try:  # fail closed: a door that moves is in the log before the command leaves
            self.audit(
                who=user, lock_id=lock.lock_id, channel=channel, action=action, result="sent"
            )
        except StoreUnavailable as exc:
            self.store_unavailable(f"{channel} {action} of {lock.lock_id} by {user} refused", exc)
            reply("denied", Reason.AUDIT_UNAVAILABLE.value, "unknown")
            return
        payload, nonce = seal_lock_command(
            key=command_key(self._command_master, lock.lock_id, lock.command_epoch),
            lock_id=lock.lock_id,
            epoch=lock.command_epoch,
            action=request.action,
            now=now,
            random_bytes=crypto.random_bytes,
        )
        self._pending_commands[nonce] = _PendingCommand(
            user, role, request, reply, now + self._command_timeout_s, channel
        )
        self.on_bolt_moving(lock.lock_id, request.action)
        logger.info(
            "%s %s of %s for %s sent to the lock (%d bytes)",
            channel.capitalize(),
            action,
            lock.lock_id,
            user,
            len(payload),
        )
        # Undelivered within the timeout, the broker drops it: a lock that comes back later
        # must not act on a command whose requester was already told it failed.
        self._outbox.put(
            topics.lock_topic(lock.lock_id, "commands"),
            payload,
            expiry_s=self._command_timeout_s,
        )

    def _reply(
        self,
        request: CommandRequest,
        topic: str,
        correlation: bytes | None,
        result: str,
        reason: str,
        bolt: str = "unknown",
    ) -> None:
        reply = make_command_reply(
            request=request,
            result=result,
            reason=reason,
            bolt=bolt,
            now=self._clock(),
            backend_key=self._backend_key,
        )
        self._outbox.put(topic, bytes(reply), correlation_data=correlation)

    def _expire_commands(self, now: float) -> None:
        keep_s = 2 * self.site.command_window_s
        for nonce, late in list(self._late_commands.items()):
            if now > late.deadline + keep_s:
                del self._late_commands[nonce]
        for nonce, pending in list(self._pending_commands.items()):
            if now < pending.deadline:
                continue
            del self._pending_commands[nonce]
            self._late_commands[nonce] = pending  # a report may still come (a close race)
            request = pending.request
            logger.warning("Lock %s did not answer a remote command in time", request.lock_id)
            self.audit(
                who=pending.user,
                lock_id=request.lock_id,
                channel=pending.channel,
                action=request.action.name.lower(),
                result="failed",
                reason="lock_unreachable",
            )
            pending.reply("failed", "lock_unreachable", "unknown")
            self.on_bolt_settled(request.lock_id, None)

    # --- what the locks say ---------------------------------------------------------------------

    def _on_lock_event_or_keep(self, lock_id: str, message: Incoming) -> None:
        """Handle a lock's event; one the store cannot take now is kept to try again."""
        try:
            self._on_lock_event(lock_id, message.payload)
        except StoreUnavailable:
            if len(self._unlogged) >= UNLOGGED_CAPACITY:
                self._unlogged.popleft()  # unacknowledged: the broker has it after a restart
                logger.error("Too many lock events waiting for the store; the oldest is dropped")
            self._unlogged.append(_KeptEvent(lock_id, message, self._connection))
            raise

    def _retry_unlogged(self) -> None:
        """Lock events kept while the store could not write, in their order, until it can.

        Each is acknowledged once stored, if its connection is still the current one (after a
        reconnection the broker sends it again, and the copy is a known event, refused).
        """
        while self._unlogged:
            kept = self._unlogged[0]
            try:
                self._on_lock_event(kept.lock_id, kept.message.payload)
            except StoreUnavailable:
                return  # still unavailable: the next tick tries again
            except Rejected as rejected:
                self.rejections.record("kept lock event", rejected, kept.lock_id)
            self._unlogged.popleft()
            if kept.connection is not None and kept.connection is self._connection:
                kept.connection.ack(kept.message)
            if not self._unlogged:
                logger.info("The store writes again; every kept lock event is handled")

    def _on_lock_event(self, lock_id: str, payload: bytes) -> None:
        lock = self.store.get_lock(lock_id)
        if lock is None:
            raise Rejected(Reason.UNKNOWN_LOCK, lock_id)
        kind = peek_type(
            payload, (MessageType.KEY_ACK, MessageType.ACCESS_EVENT, MessageType.LOCK_REPORT)
        )
        if kind is MessageType.KEY_ACK:
            release = self.issuer.on_key_ack(lock_id, payload)
            logger.info(
                "Lock %s holds key %s; delivering it to %s",
                lock_id,
                release.key.handle,
                release.guest_id,
            )
            self._outbox.put(topics.user_topic(release.guest_id, "session"), release.payload)
            started = self._issuing.pop(release.key.key_id, None)
            if started is not None:
                self.metrics.issuance_seconds.observe(time.perf_counter() - started)
        elif kind is MessageType.ACCESS_EVENT:
            self._on_access_event(lock_id, payload)
        else:
            report = open_report(
                payload,
                key=command_key(self._command_master, lock_id, lock.command_epoch),
                lock_id=lock_id,
                epoch=lock.command_epoch,
            )
            fresh = self.store.advance_report_seq(lock_id, report.seq)
            body = report.body
            if not fresh and not isinstance(body, TokenRefused | Lockout):
                raise Rejected(Reason.REPLAY, f"report {report.seq} from {lock_id} already seen")
            # A refused token or a lockout is audited under its own event key, at most once: one
            # seen before whose audit write failed (store unavailable) is written now.
            if isinstance(body, Heartbeat):
                self._on_heartbeat(lock, report.at, body)
            elif isinstance(body, CommandResult):
                self._on_command_result(lock_id, report.at, body)
            elif isinstance(body, TokenRefused):
                logged = self.audit(
                    who=body.who,
                    lock_id=lock_id,
                    channel="ble",
                    action="unlock",
                    result="denied",
                    reason=body.reason,
                    attempt=body.attempt,
                    event_key=f"report/{lock_id}/{lock.command_epoch}/{report.seq}",
                    at=report.at,
                )
                if not logged:
                    raise Rejected(Reason.REPLAY, f"report {report.seq} from {lock_id} logged")
                logger.warning(
                    "Lock %s refused a token (%s), attempt %d", lock_id, body.reason, body.attempt
                )
            elif isinstance(body, Lockout):
                self._on_lockout(lock_id, report.at, report.seq, lock.command_epoch, body)
            elif isinstance(body, UpdateStep):
                event_key = f"report/{lock_id}/{lock.command_epoch}/{report.seq}"
                self.updates.on_step(lock_id, report.at, body, event_key)

    def _on_access_event(self, lock_id: str, payload: bytes) -> None:
        event = open_access_event(
            payload,
            lock_id=lock_id,
            lock_public=self.directory.lock_public(lock_id),
            previous_lock_publics=self.directory.previous_publics(lock_id),
        )
        if self._event_ids.seen_before(event.event_id, self._clock()):
            raise Rejected(Reason.REPLAY, f"access event from {lock_id} already received")
        action = event.action.name.lower()
        try:
            first_time = self.audit(
                who=event.guest_id,
                lock_id=lock_id,
                channel="ble",
                action=action,
                result="granted",
                reason=f"pass {event.pass_id}" if event.pass_id else "",
                event_key=f"ble/{event.event_id.hex()}",
                at=event.at,
            )
        except StoreUnavailable:
            self._event_ids.forget(event.event_id)  # kept by the caller, to be tried again
            raise
        if not first_time:
            raise Rejected(Reason.REPLAY, f"access event from {lock_id} already logged")
        if event.pass_id != NO_PASS and event.action is Action.UNLOCK:
            last = self._last_use.get(event.key_id)
            if last is None or event.at - last > USE_MERGE_S:  # as the lock counts uses
                self.store.record_pass_use(event.pass_id)
                self._last_use[event.key_id] = event.at
                while len(self._last_use) > 10_000:
                    self._last_use.popitem(last=False)
        logger.info(
            "Access event: %s %s for %s (token %d, key %s)",
            lock_id,
            action,
            event.guest_id,
            event.counter,
            event.key_id[:4].hex(),
        )
        self._outbox.put(topics.user_topic(event.guest_id, "events"), payload)

    def _on_command_result(self, lock_id: str, at: int, result: CommandResult) -> None:
        pending = self._pending_commands.pop(result.nonce, None)
        late = self._late_commands.pop(result.nonce, None)
        if late is not None and late.request.lock_id == lock_id:
            # The requester was told "failed"; the door still acted: the log must say so.
            logger.warning(
                "Lock %s reported a remote %s for %s after the timeout: %s",
                lock_id,
                late.request.action.name.lower(),
                late.user,
                result.result,
            )
            self.audit(
                who=late.user,
                lock_id=lock_id,
                channel=late.channel,
                action=late.request.action.name.lower(),
                result="granted" if result.result == "done" else "failed",
                reason="after_timeout",
            )
            return
        if pending is None or pending.request.lock_id != lock_id:
            # e.g. the backend restarted while the command was on its way: the door still
            # acted (or refused), and the log must say so even without the requester's name
            logger.warning("Lock %s reported on a command this backend does not know", lock_id)
            self.audit(
                who="",
                lock_id=lock_id,
                channel="remote",
                action=result.action.name.lower(),
                result="granted" if result.result == "done" else "failed",
                reason=result.reason or "unknown_command",
                at=at,
            )
            return
        request = pending.request
        done = result.result == "done"
        logger.info(
            "Remote %s of %s for %s: %s%s",
            request.action.name.lower(),
            lock_id,
            pending.user,
            result.result,
            f" ({result.reason})" if result.reason else "",
        )
        self.audit(
            who=pending.user,
            lock_id=lock_id,
            channel=pending.channel,
            action=request.action.name.lower(),
            result="granted" if done else "failed",
            reason=result.reason,
        )
        pending.reply("done" if done else "failed", result.reason, result.bolt or "unknown")
        # a bolt that did not move is jammed until the lock reports it again
        self.on_bolt_settled(
            lock_id, "jammed" if result.reason == "bolt_failed" else (result.bolt or None)
        )
        health = self.store.lock_health(lock_id)
        if health is not None and result.bolt:
            self.store.set_lock_health(
                LockHealth(
                    lock_id,
                    health.online,
                    health.last_heartbeat,
                    result.bolt,
                    health.revocation_version_applied,
                    health.changed_at,
                )
            )

    def _on_lockout(self, lock_id: str, at: int, seq: int, epoch: int, lockout: Lockout) -> None:
        detail = (
            f"{lockout.failures} failed BLE tokens at {lock_id} within "
            f"{self.site.failure_window_s} s; tokens refused for "
            f"{max(0, lockout.until - at)} s"
        )
        logger.warning("INTRUSION: %s", detail)
        if self.audit(
            who="",
            lock_id=lock_id,
            channel="ble",
            action="lockout",
            result="alert",
            reason="too_many_failures",
            attempt=lockout.failures,
            event_key=f"report/{lock_id}/{epoch}/{seq}",
            at=at,
        ):
            self.alert("intrusion", lock_id=lock_id, subject=lock_id, detail=detail)

    def _on_heartbeat(self, lock: LockRecord, at: int, heartbeat: Heartbeat) -> None:
        lock_id = lock.lock_id
        now = self._clock()
        if at < now - 2 * self.site.heartbeat_s:
            return  # an old heartbeat uploaded after an outage says nothing about now
        if heartbeat.revocation_version < lock.revocation_version:
            # The retained list the lock read is older than the store's: withheld or overwritten
            # on the broker (or lost).  Publish it again: the lock applies it within a tick.
            logger.warning(
                "Lock %s applied revocation list v%d, the store has v%d: publishing it again",
                lock_id,
                heartbeat.revocation_version,
                lock.revocation_version,
            )
            self._published_revocations.pop(lock_id, None)
        before = self.store.lock_health(lock_id)
        self.on_bolt_settled(lock_id, heartbeat.bolt)
        self.store.set_lock_health(
            LockHealth(
                lock_id,
                True,
                at,
                heartbeat.bolt,
                heartbeat.revocation_version,
                before.changed_at if before is not None and before.online else int(now),
            )
        )
        if before is None or not before.online:
            logger.info("Lock %s is online (bolt %s)", lock_id, heartbeat.bolt)
            self.audit(who="", lock_id=lock_id, channel="system", action="online", result="info")
            if before is not None:
                self.alert(
                    "lock_online",
                    lock_id=lock_id,
                    subject=lock_id,
                    detail=f"{lock_id} is back online",
                )

    def _on_availability(self, lock_id: str, payload: bytes) -> None:
        if payload == topics.OFFLINE:
            self._mark_offline(lock_id, "the lock stopped, or its connection dropped (last will)")

    def _check_heartbeats(self, now: float, locks: list[LockRecord]) -> None:
        limit = 2 * self.site.heartbeat_s + 1
        online = 0
        for lock in locks:
            health = self.store.lock_health(lock.lock_id)
            online += health is not None and health.online
            if health is None:
                if now - self._started_at > limit:
                    self._mark_offline(lock.lock_id, "no heartbeat since the backend started")
            elif health.online and (health.last_heartbeat or 0) < now - limit:
                self._mark_offline(lock.lock_id, "two heartbeats missed")
                online -= 1
        self.metrics.locks_online.set(online)

    def _mark_offline(self, lock_id: str, why: str) -> None:
        if self.store.get_lock(lock_id) is None:
            return
        before = self.store.lock_health(lock_id)
        if before is not None and not before.online:
            return
        now = int(self._clock())
        self.store.set_lock_health(
            LockHealth(
                lock_id,
                False,
                before.last_heartbeat if before else None,
                before.bolt_state if before else "unknown",
                before.revocation_version_applied if before else 0,
                now,
            )
        )
        logger.warning("Lock %s is OFFLINE: %s", lock_id, why)
        self.audit(
            who="", lock_id=lock_id, channel="system", action="offline", result="alert", reason=why
        )
        self.alert(
            "lock_offline", lock_id=lock_id, subject=lock_id, detail=f"{lock_id} offline: {why}"
        )

    # --- what the locks must hold ---------------------------------------------------------------

    def publish_lock_state(self, locks: list[LockRecord] | None = None) -> None:
        """Command keys and revocation lists, retained, for every lock whose version moved."""
        now = self._clock()
        removed_cache: list[list[tuple[str, int]]] = []  # read once per round, if needed
        for lock in self.store.list_locks() if locks is None else locks:
            try:
                self._publish_one_lock_state(lock, now, removed_cache)
            except Exception as exc:  # one lock's trouble must not stop the others' lists
                if self._publish_failures.get(lock.lock_id) != lock.revocation_version:
                    self._publish_failures[lock.lock_id] = lock.revocation_version
                    logger.exception("Cannot publish the state of %s", lock.lock_id)
                    self.alert(
                        "revocation_failed",
                        lock_id=lock.lock_id,
                        subject=lock.lock_id,
                        detail=f"revocation list v{lock.revocation_version} not published: "
                        f"{type(exc).__name__}",
                    )

    def _publish_one_lock_state(
        self, lock: LockRecord, now: float, removed_cache: list[list[tuple[str, int]]]
    ) -> None:
        published = (lock.command_epoch, self.directory.key_version(lock.lock_id))
        if self._published_keys.get(lock.lock_id) != published:
            delivery = make_command_key_delivery(
                master=self._command_master,
                lock_id=lock.lock_id,
                epoch=lock.command_epoch,
                now=now,
                lock_public=self.directory.lock_public(lock.lock_id),
                backend_key=self._backend_key,
            )
            self._outbox.put(
                topics.lock_topic(lock.lock_id, "command_key"), bytes(delivery), retain=True
            )
            self._published_keys[lock.lock_id] = published
        if self._published_revocations.get(lock.lock_id) != lock.revocation_version:
            if not removed_cache:
                removed_cache.append(self.store.revoked_user_keys(since=int(now) - MAX_KEY_TTL_S))
            removed = removed_cache[0]
            revocations = make_revocation_list(
                version=lock.revocation_version,
                lock_id=lock.lock_id,
                pass_ids=self.store.revoked_pass_ids(lock.lock_id, now=int(now)),
                users=removed,
                now=now,
                backend_key=self._backend_key,
            )
            self._outbox.put(
                topics.lock_topic(lock.lock_id, "revocations"), bytes(revocations), retain=True
            )
            self._published_revocations[lock.lock_id] = lock.revocation_version
            logger.info(
                "Published revocation list v%d for %s (%d passes, %d users)",
                revocations.version,
                lock.lock_id,
                len(revocations.pass_ids),
                len(revocations.users),
            )


@dataclass(frozen=True)
class _KeptEvent:
    """A lock's event the store could not take yet, with what is needed to acknowledge it."""

    lock_id: str
    message: Incoming
    connection: MqttConnection | None


def _no_reply(result: str, reason: str, bolt: str) -> None:
    """Home Assistant's commands get no reply message: the state topic answers them."""


def _is_lock_event(topic: str) -> bool:
    parts = topic.split("/")
    return len(parts) == 3 and parts[0] == "locks" and parts[2] == "events"


def _lock_of_request(payload: bytes) -> str:
    """The lock a (refused) key request named, for the audit log; "" if it cannot be read."""
    try:
        return SessionRequest.from_bytes(payload).lock_id
    except Rejected:
        return ""


async def serve_backend(
    site: Site, *, db: str | None = None, http: str | None = None, public_url: str | None = None
) -> None:
    """The backend, and with ``http`` (``HOST:PORT``) its dashboard on the same event loop."""
    from smartlock.adapters.web.app import (
        DashboardServer,
        check_dashboard_url,
        create_app,
        is_loopback,
        parse_listen,
    )

    with admin.open_store(site, db) as store:
        backend = Backend(site, store=store)
        if http is None:
            await backend.run()
            return
        host, port = parse_listen(http)
        tls = not is_loopback(host)
        if public_url is not None:
            check_dashboard_url(public_url, "--public-url")
        app = create_app(backend, public_url=public_url or "")
        server = DashboardServer(
            app,
            host,
            port,
            certfile=site.broker_dir / "broker.crt" if tls else None,
            keyfile=site.broker_dir / "broker.key" if tls else None,
        )
        shown = f"[{host}]" if ":" in host else host
        url = f"{'https' if tls else 'http'}://{shown}:{server.port}"
        app.state.public_url = public_url or url
        logger.info("Dashboard on %s/", url)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(backend.run(), name="backend")
            tasks.create_task(server.serve(), name="dashboard")
