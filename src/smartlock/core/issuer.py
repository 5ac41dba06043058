"""The backend's key issuer as a state machine: requests in, deliveries and denials out.

1. ``on_request`` (guest -> backend): decode, check the policy, issue a key and return the
   lock's delivery; keep the guest's delivery pending.
2. ``on_key_ack`` (lock -> backend): when the lock proves it holds the key, release the guest's
   delivery -- so a guest never advertises before the lock can check its token.
3. ``expire``: a lock that does not answer within ``ack_timeout_s`` yields a signed denial
   ("lock unreachable") for the guest instead of silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.issuance import (
    DEFAULT_CLOCK_SKEW_S,
    DEFAULT_KEY_TTL_S,
    RandomBytes,
    SessionKey,
    issue_session_key,
    key_ack_is_valid,
    make_denial,
)
from smartlock.core.messages import KeyAck, SessionRequest
from smartlock.core.policy import (
    MAX_REQUEST_AGE_S,
    KeyGrant,
    RateLimit,
    RecentIds,
    check_request_time,
)

LOCK_UNREACHABLE = "lock_unreachable"
TOO_MANY_REQUESTS = "too_many_requests"
MAX_PENDING_PER_GUEST = 3  # issuances awaiting their lock's acknowledgement
REQUEST_BURST = 5  # a guest may ask this many times at once...
REQUESTS_PER_MINUTE = 12.0  # ...and then once every 5 s on average


class KeyDirectory(Protocol):
    """Where the backend finds what it needs at request time (the store and the site)."""

    def authorize_key(self, user: str, lock_id: str, now: float) -> KeyGrant:
        """Raise :class:`Rejected` unless ``user`` may have a key for ``lock_id`` now."""

    def lock_public(self, lock_id: str) -> crypto.PublicKey: ...

    def user_public(self, user: str) -> crypto.PublicKey: ...


@dataclass(frozen=True)
class DeliverToLock:
    lock_id: str
    payload: bytes
    key: SessionKey
    grant: KeyGrant


@dataclass(frozen=True)
class DeliverToGuest:
    guest_id: str
    payload: bytes
    key: SessionKey


@dataclass(frozen=True)
class DenyGuest:
    guest_id: str
    payload: bytes
    reason: str
    rejected: Rejected | None = None  # the policy's refusal, when there was one


@dataclass
class _Pending:
    key: SessionKey
    guest_payload: bytes
    request_id: bytes
    deadline: float


class KeyIssuer:
    def __init__(
        self,
        *,
        backend_key: crypto.PrivateKey,
        directory: KeyDirectory,
        random_bytes: RandomBytes,
        ttl_s: int = DEFAULT_KEY_TTL_S,
        ack_timeout_s: float = 5.0,
        clock_skew_s: int = DEFAULT_CLOCK_SKEW_S,
    ) -> None:
        self._backend_key = backend_key
        self._directory = directory
        self._random_bytes = random_bytes
        self._ttl_s = ttl_s
        self._ack_timeout_s = ack_timeout_s
        self._clock_skew_s = clock_skew_s
        self._pending: dict[bytes, _Pending] = {}
        self._request_ids = RecentIds(window_s=MAX_REQUEST_AGE_S + clock_skew_s)
        self._request_rate = RateLimit(burst=REQUEST_BURST, per_minute=REQUESTS_PER_MINUTE)

    def set_backend_key(self, backend_key: crypto.PrivateKey) -> None:
        """Sign from now on with ``backend_key`` (``smartlock rotate backend-key``)."""
        self._backend_key = backend_key

    def on_request(self, guest_id: str, payload: bytes, now: float) -> DeliverToLock | DenyGuest:
        """Answer one request; raises :class:`Rejected` when there is no one to answer."""
        request = SessionRequest.from_bytes(payload)
        if self._request_ids.seen_before(guest_id.encode() + b"/" + request.request_id, now):
            raise Rejected(Reason.REPLAY, f"request from {guest_id} already answered")
        decision: KeyGrant | Rejected
        try:
            decision = self._directory.authorize_key(guest_id, request.lock_id, now)
        except Rejected as refusal:
            if refusal.reason is Reason.UNKNOWN_USER:
                raise  # nobody to tell, whatever the request's time: no such user (any more)
            decision = refusal
        try:
            check_request_time(request.sent_at, now, self._clock_skew_s)
        except Rejected as refusal:
            decision = refusal  # a request of the wrong time is refused for that first
        if not self._request_rate.allow(guest_id, now):
            # No answer: a signed denial or a key would cost the RSA signature the limit protects.
            raise Rejected(Reason.RATE_LIMITED, f"{guest_id} asks more often than allowed")
        if isinstance(decision, Rejected):
            return self._deny(guest_id, request.request_id, decision.reason.value, now, decision)
        grant = decision
        waiting = sum(1 for p in self._pending.values() if p.key.header.guest_id == guest_id)
        if waiting >= MAX_PENDING_PER_GUEST:
            return self._deny(guest_id, request.request_id, TOO_MANY_REQUESTS, now)
        issuance = issue_session_key(
            request=request,
            guest_id=guest_id,
            now=now,
            ttl_s=self._ttl_s,
            backend_key=self._backend_key,
            lock_public=self._directory.lock_public(request.lock_id),
            guest_public=self._directory.user_public(guest_id),
            random_bytes=self._random_bytes,
            pass_id=grant.pass_id,
            max_uses=grant.max_uses,
            not_after=grant.not_after,
        )
        self._pending[issuance.key.key_id] = _Pending(
            issuance.key,
            bytes(issuance.guest_delivery),
            request.request_id,
            now + self._ack_timeout_s,
        )
        return DeliverToLock(request.lock_id, bytes(issuance.lock_delivery), issuance.key, grant)

    def on_key_ack(self, lock_id: str, payload: bytes) -> DeliverToGuest:
        ack = KeyAck.from_bytes(payload)
        pending = self._pending.get(ack.key_id)
        if pending is None:
            raise Rejected(
                Reason.UNKNOWN_KEY, f"acknowledgement of unknown key {ack.key_id[:4].hex()}"
            )
        if pending.key.header.lock_id != lock_id or not key_ack_is_valid(ack, pending.key):
            raise Rejected(
                Reason.BAD_MAC, f"acknowledgement of key {pending.key.handle} from {lock_id}"
            )
        del self._pending[ack.key_id]
        return DeliverToGuest(pending.key.header.guest_id, pending.guest_payload, pending.key)

    def withdraw(self, key_id: bytes, now: float, reason: str) -> DenyGuest:
        """Take back an issuance not yet sent (e.g. it could not be logged): a denial instead."""
        pending = self._pending.pop(key_id)
        return self._deny(pending.key.header.guest_id, pending.request_id, reason, now)

    def expire(self, now: float) -> list[DenyGuest]:
        """Denials for every issuance whose lock did not acknowledge in time."""
        return [denial for denial, _ in self.expire_with_locks(now)]

    def expire_with_locks(self, now: float) -> list[tuple[DenyGuest, str]]:
        """Like :meth:`expire`, each denial with the lock that did not answer."""
        late = [key_id for key_id, p in self._pending.items() if now >= p.deadline]
        denials = []
        for key_id in late:
            pending = self._pending.pop(key_id)
            header = pending.key.header
            denials.append(
                (
                    self._deny(header.guest_id, pending.request_id, LOCK_UNREACHABLE, now),
                    header.lock_id,
                )
            )
        return denials

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def _deny(
        self,
        guest_id: str,
        request_id: bytes,
        reason: str,
        now: float,
        rejected: Rejected | None = None,
    ) -> DenyGuest:
        denial = make_denial(
            request_id=request_id,
            guest_id=guest_id,
            reason=reason,
            now=now,
            backend_key=self._backend_key,
        )
        return DenyGuest(guest_id, bytes(denial), reason, rejected)
