"""smartlock.core.issuer: the backend's state machine from request to delivery or denial."""

from __future__ import annotations

import dataclasses

import pytest

from smartlock import crypto
from smartlock.core.access import access_ack_is_valid, make_access_event, open_access_event
from smartlock.core.errors import Reason, Rejected
from smartlock.core.issuance import (
    SessionKey,
    make_key_ack,
    open_denial,
    open_guest_delivery,
    open_lock_delivery,
)
from smartlock.core.issuer import (
    LOCK_UNREACHABLE,
    MAX_PENDING_PER_GUEST,
    REQUEST_BURST,
    REQUESTS_PER_MINUTE,
    TOO_MANY_REQUESTS,
    DeliverToGuest,
    DeliverToLock,
    DenyGuest,
    KeyDirectory,
    KeyIssuer,
)
from smartlock.core.messages import MAX_MESSAGE_BYTES, KeyAck, SessionDenied, SessionRequest
from smartlock.core.policy import KeyGrant
from smartlock.core.roles import Role
from smartlock.core.token import advertising_data, make_token

NOW = 1_800_000_000.0
ACK_TIMEOUT_S = 5.0
TTL_S = 120
GUEST_PASS = KeyGrant(Role.GUEST, pass_id=42, max_uses=3, not_after=int(NOW) + 60)


class FakeDirectory:
    """An in-memory :class:`KeyDirectory`: known keys, and one answer per (user, lock)."""

    def __init__(
        self,
        *,
        locks: dict[str, crypto.PublicKey],
        users: dict[str, crypto.PublicKey],
        answers: dict[tuple[str, str], KeyGrant | Reason],
    ) -> None:
        self.locks, self.users, self.answers = locks, users, answers

    def authorize_key(self, user: str, lock_id: str, now: float) -> KeyGrant:
        if user not in self.users:
            raise Rejected(Reason.UNKNOWN_USER, user, who=user)
        if lock_id not in self.locks:
            raise Rejected(Reason.UNKNOWN_LOCK, lock_id)
        answer = self.answers.get((user, lock_id), Reason.NO_PASS)
        if isinstance(answer, Reason):
            raise Rejected(answer, f"{user} at {lock_id}", who=user, pass_id=7)
        return answer

    def lock_public(self, lock_id: str) -> crypto.PublicKey:
        return self.locks[lock_id]

    def user_public(self, user: str) -> crypto.PublicKey:
        return self.users[user]


@pytest.fixture
def directory(lock_key, other_lock_key, guest_key, other_guest_key) -> FakeDirectory:
    return FakeDirectory(
        locks={"lock1": lock_key.public_key(), "lock2": other_lock_key.public_key()},
        users={"guest1": guest_key.public_key(), "guest2": other_guest_key.public_key()},
        answers={
            ("guest1", "lock1"): KeyGrant(Role.RESIDENT),
            ("guest2", "lock1"): KeyGrant(Role.RESIDENT),
            ("guest2", "lock2"): GUEST_PASS,
        },
    )


@pytest.fixture
def issuer(backend_key, directory, random_bytes) -> KeyIssuer:
    checked: KeyDirectory = directory  # the fake honours the protocol
    return KeyIssuer(
        backend_key=backend_key,
        directory=checked,
        random_bytes=random_bytes,
        ttl_s=TTL_S,
        ack_timeout_s=ACK_TIMEOUT_S,
    )


def _request(
    lock_id: str = "lock1", *, sent_at: float = NOW, request_id: bytes = b"\x01" * 16
) -> bytes:
    return bytes(SessionRequest(request_id=request_id, sent_at=int(sent_at), lock_id=lock_id))


def _reason(call, *args) -> Reason:
    with pytest.raises(Rejected) as caught:
        call(*args)
    return caught.value.reason


def _open_denial(deny: DenyGuest, backend_key, request_id: bytes = b"\x01" * 16) -> SessionDenied:
    return open_denial(
        deny.payload,
        guest_id=deny.guest_id,
        request_id=request_id,
        backend_public=backend_key.public_key(),
    )


@pytest.fixture
def delivered(issuer) -> DeliverToLock:
    out = issuer.on_request("guest1", _request(), NOW)
    assert isinstance(out, DeliverToLock)
    return out


# --- requests ---------------------------------------------------------------------------------


def test_request_yields_a_delivery_the_lock_can_open(delivered, backend_key, lock_key) -> None:
    assert delivered.lock_id == "lock1"
    key = open_lock_delivery(
        delivered.payload,
        lock_id="lock1",
        backend_public=backend_key.public_key(),
        lock_key=lock_key,
        now=NOW,
    )
    assert key == delivered.key
    assert key.header.guest_id == "guest1"
    assert key.header.expires_at - key.header.issued_at == TTL_S


def test_the_grant_of_a_pass_is_written_into_the_key(issuer, backend_key, other_lock_key) -> None:
    out = issuer.on_request("guest2", _request("lock2"), NOW)
    assert isinstance(out, DeliverToLock)
    assert out.grant == GUEST_PASS
    key = open_lock_delivery(
        out.payload,
        lock_id="lock2",
        backend_public=backend_key.public_key(),
        lock_key=other_lock_key,
        now=NOW,
    )
    assert (key.header.pass_id, key.header.max_uses) == (42, 3)
    assert key.header.expires_at == GUEST_PASS.not_after  # the pass ends before the TTL


def test_a_grant_without_a_pass_gives_a_key_of_the_full_lifetime(delivered) -> None:
    header = delivered.key.header
    assert (header.pass_id, header.max_uses) == (0, 0)
    assert header.expires_at == int(NOW) + TTL_S


def test_a_pass_ending_after_the_lifetime_does_not_lengthen_the_key(issuer, directory) -> None:
    directory.answers["guest1", "lock1"] = dataclasses.replace(
        GUEST_PASS, not_after=int(NOW) + 10 * TTL_S
    )
    out = issuer.on_request("guest1", _request(), NOW)
    assert isinstance(out, DeliverToLock)
    assert out.key.header.expires_at == int(NOW) + TTL_S


def test_request_leaves_the_guest_delivery_pending_until_the_deadline(issuer, delivered) -> None:
    assert issuer.next_deadline() == NOW + ACK_TIMEOUT_S
    assert issuer.expire(NOW + ACK_TIMEOUT_S - 0.01) == []


def test_duplicate_request_id_is_replay(issuer, delivered) -> None:
    assert _reason(issuer.on_request, "guest1", _request(), NOW + 1) is Reason.REPLAY


def test_denied_request_replayed_is_replay(issuer) -> None:
    assert isinstance(issuer.on_request("guest1", _request("lock2"), NOW), DenyGuest)
    assert _reason(issuer.on_request, "guest1", _request("lock2"), NOW) is Reason.REPLAY


def test_same_request_id_from_another_guest_is_not_a_replay(issuer, delivered) -> None:
    out = issuer.on_request("guest2", _request(), NOW)
    assert isinstance(out, DeliverToLock)
    assert out.key.header.guest_id == "guest2"


def test_replayed_request_outside_the_replay_window_is_stale(issuer, delivered) -> None:
    out = issuer.on_request("guest1", _request(), NOW + 100)
    assert isinstance(out, DenyGuest)
    assert out.reason == Reason.STALE.value


def test_policy_refusal_is_a_signed_denial_carrying_the_refusal(issuer, backend_key) -> None:
    out = issuer.on_request("guest1", _request("lock2"), NOW)
    assert isinstance(out, DenyGuest)
    assert out.guest_id == "guest1"
    assert out.reason == Reason.NO_PASS.value
    assert out.rejected is not None
    assert (out.rejected.reason, out.rejected.who, out.rejected.pass_id) == (
        Reason.NO_PASS,
        "guest1",
        7,
    )
    denial = _open_denial(out, backend_key)
    assert denial.reason == "no_pass"
    assert issuer.next_deadline() is None  # nothing was issued


@pytest.mark.parametrize(
    "reason", [Reason.OUTSIDE_HOURS, Reason.PASS_REVOKED, Reason.USES_EXHAUSTED, Reason.EXPIRED]
)
def test_each_policy_refusal_reaches_the_guest_signed(
    issuer, directory, backend_key, reason: Reason
) -> None:
    directory.answers["guest1", "lock1"] = reason
    out = issuer.on_request("guest1", _request(), NOW)
    assert isinstance(out, DenyGuest)
    assert out.rejected is not None
    assert out.rejected.reason is reason
    assert _open_denial(out, backend_key).reason == reason.value


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_request("lock9"), Reason.UNKNOWN_LOCK),
        (_request(sent_at=NOW - 61), Reason.STALE),
        (_request(sent_at=NOW + 31), Reason.NOT_YET_VALID),
    ],
    ids=["unknown-lock", "stale", "future"],
)
def test_refused_request_is_denied_with_its_reason(
    issuer, backend_key, payload: bytes, reason: Reason
) -> None:
    out = issuer.on_request("guest1", payload, NOW)
    assert isinstance(out, DenyGuest)
    assert out.reason == reason.value
    assert _open_denial(out, backend_key).reason == reason.value


def test_request_from_unknown_user_is_rejected_not_answered(issuer) -> None:
    assert _reason(issuer.on_request, "guest9", _request(), NOW) is Reason.UNKNOWN_USER
    assert issuer.next_deadline() is None


@pytest.mark.parametrize("sent_at", [NOW - 3600, NOW + 3600], ids=["stale", "future"])
def test_unknown_user_is_never_answered(issuer, sent_at: float) -> None:
    assert _reason(issuer.on_request, "guest9", _request(sent_at=sent_at), NOW) is (
        Reason.UNKNOWN_USER
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", Reason.MALFORMED),
        (_request()[:-1], Reason.MALFORMED),
        (_request() + b"\x00", Reason.MALFORMED),
        (b"\x01" + _request()[1:], Reason.WRONG_VERSION),  # the version before this one
        (bytes(KeyAck(b"\x00" * 16, "lock1", b"\x00" * 16)), Reason.WRONG_TYPE),
        (_request() + b"\x00" * MAX_MESSAGE_BYTES, Reason.OVERSIZED),
    ],
    ids=["empty", "truncated", "trailing", "version", "type", "oversized"],
)
def test_malformed_request_is_rejected(issuer, payload: bytes, reason: Reason) -> None:
    assert _reason(issuer.on_request, "guest1", payload, NOW) is reason
    assert issuer.next_deadline() is None


# --- key acknowledgements ---------------------------------------------------------------------


def test_valid_key_ack_releases_a_delivery_the_guest_can_open(
    issuer, delivered, backend_key, guest_key
) -> None:
    out = issuer.on_key_ack("lock1", bytes(make_key_ack(delivered.key)))
    assert isinstance(out, DeliverToGuest)
    assert out.guest_id == "guest1"
    assert out.key == delivered.key
    key = open_guest_delivery(
        out.payload,
        guest_id="guest1",
        lock_id="lock1",
        request_id=b"\x01" * 16,
        backend_public=backend_key.public_key(),
        guest_key=guest_key,
        now=NOW,
    )
    assert key == delivered.key
    assert issuer.next_deadline() is None
    assert issuer.expire(NOW + 3600) == []  # acknowledged issuances are never denied


def test_key_ack_with_wrong_mac_is_rejected_and_keeps_the_issuance(issuer, delivered) -> None:
    forged = make_key_ack(SessionKey(delivered.key.header, b"\x00" * 32))
    assert _reason(issuer.on_key_ack, "lock1", bytes(forged)) is Reason.BAD_MAC
    # the genuine lock can still acknowledge
    assert isinstance(
        issuer.on_key_ack("lock1", bytes(make_key_ack(delivered.key))), DeliverToGuest
    )


def test_key_ack_from_another_lock_is_rejected(issuer, delivered) -> None:
    ack = bytes(make_key_ack(delivered.key))
    assert _reason(issuer.on_key_ack, "lock2", ack) is Reason.BAD_MAC


def test_key_ack_naming_another_lock_is_rejected(issuer, delivered) -> None:
    ack = dataclasses.replace(make_key_ack(delivered.key), lock_id="lock2")
    assert _reason(issuer.on_key_ack, "lock2", bytes(ack)) is Reason.BAD_MAC
    assert _reason(issuer.on_key_ack, "lock1", bytes(ack)) is Reason.BAD_MAC


def test_key_ack_for_unknown_key_is_rejected(issuer, delivered) -> None:
    ack = dataclasses.replace(make_key_ack(delivered.key), key_id=b"\x00" * 16)
    assert _reason(issuer.on_key_ack, "lock1", bytes(ack)) is Reason.UNKNOWN_KEY


def test_key_ack_replayed_after_release_is_rejected(issuer, delivered) -> None:
    ack = bytes(make_key_ack(delivered.key))
    issuer.on_key_ack("lock1", ack)
    assert _reason(issuer.on_key_ack, "lock1", ack) is Reason.UNKNOWN_KEY


def test_malformed_key_ack_is_rejected(issuer, delivered) -> None:
    ack = bytes(make_key_ack(delivered.key))
    assert _reason(issuer.on_key_ack, "lock1", ack[:-1]) is Reason.MALFORMED


# --- timeouts ------------------------------------------------------------------------------------


def test_unacknowledged_issuance_expires_into_a_signed_denial(
    issuer, delivered, backend_key
) -> None:
    denials = issuer.expire(NOW + ACK_TIMEOUT_S)
    assert len(denials) == 1
    deny = denials[0]
    assert (deny.guest_id, deny.reason) == ("guest1", LOCK_UNREACHABLE)
    denial = _open_denial(deny, backend_key)
    assert denial.reason == "lock_unreachable"
    assert denial.at == int(NOW + ACK_TIMEOUT_S)
    # expired once only, and a late ack no longer releases the key
    assert issuer.expire(NOW + 2 * ACK_TIMEOUT_S) == []
    assert issuer.next_deadline() is None
    late_ack = bytes(make_key_ack(delivered.key))
    assert _reason(issuer.on_key_ack, "lock1", late_ack) is Reason.UNKNOWN_KEY


def test_only_late_issuances_expire(issuer, delivered) -> None:
    second = issuer.on_request("guest2", _request(request_id=b"\x02" * 16), NOW + 3)
    assert isinstance(second, DeliverToLock)
    assert issuer.next_deadline() == NOW + ACK_TIMEOUT_S
    denials = issuer.expire(NOW + ACK_TIMEOUT_S)
    assert [d.guest_id for d in denials] == ["guest1"]
    assert issuer.next_deadline() == NOW + 3 + ACK_TIMEOUT_S


# --- the whole protocol, without IO -----------------------------------------------------------


def test_full_flow_lets_the_guest_unlock_and_prove_the_lock_acted(
    issuer, make_verifier, backend_key, lock_key, guest_key, random_bytes
) -> None:
    verifier = make_verifier()
    to_lock = issuer.on_request("guest1", _request(), NOW)
    installed = verifier.accept_delivery(to_lock.payload, NOW + 0.1)
    to_guest = issuer.on_key_ack("lock1", bytes(make_key_ack(installed.key)))
    guest_copy = open_guest_delivery(
        to_guest.payload,
        guest_id="guest1",
        lock_id="lock1",
        request_id=b"\x01" * 16,
        backend_public=backend_key.public_key(),
        guest_key=guest_key,
        now=NOW + 0.2,
    )
    grant = verifier.check_advertisement(advertising_data(make_token(guest_copy, 1)), NOW + 1)
    assert grant is not None
    assert grant.key == installed.key
    event = make_access_event(grant, lock_key=lock_key, now=NOW + 1, random_bytes=random_bytes)
    received = open_access_event(bytes(event), lock_id="lock1", lock_public=lock_key.public_key())
    assert received.guest_id == "guest1"
    assert access_ack_is_valid(received, guest_copy)


def test_a_guest_cannot_pile_up_issuances_its_lock_has_not_acknowledged(issuer) -> None:
    for n in range(MAX_PENDING_PER_GUEST):
        answer = issuer.on_request("guest1", _request(request_id=bytes([n + 1]) * 16), NOW)
        assert isinstance(answer, DeliverToLock)
    refused = issuer.on_request("guest1", _request(request_id=b"\x09" * 16), NOW)
    assert isinstance(refused, DenyGuest)
    assert refused.reason == TOO_MANY_REQUESTS
    other = issuer.on_request("guest2", _request(request_id=b"\x0a" * 16), NOW)
    assert isinstance(other, DeliverToLock)


def test_a_refused_guest_asking_too_often_is_rate_limited_without_an_answer(
    issuer, directory
) -> None:
    """Every denial costs an RSA signature: the limit guards denials as well as keys."""
    directory.answers["guest1", "lock1"] = Reason.OUTSIDE_HOURS
    for n in range(REQUEST_BURST):
        answer = issuer.on_request("guest1", _request(request_id=bytes([n + 1]) * 16), NOW)
        assert isinstance(answer, DenyGuest)
    over = _request(request_id=b"\x7f" * 16)
    assert _reason(issuer.on_request, "guest1", over, NOW) is Reason.RATE_LIMITED


def test_stale_requests_asked_too_often_are_rate_limited_without_an_answer(issuer) -> None:
    for n in range(REQUEST_BURST):
        stale = _request(request_id=bytes([n + 1]) * 16, sent_at=NOW - 3600)
        assert isinstance(issuer.on_request("guest1", stale, NOW), DenyGuest)
    over = _request(request_id=b"\x7f" * 16, sent_at=NOW - 3600)
    assert _reason(issuer.on_request, "guest1", over, NOW) is Reason.RATE_LIMITED


def test_a_guest_asking_too_often_is_rate_limited_without_an_answer(issuer) -> None:
    answers = []
    for n in range(REQUEST_BURST):
        answer = issuer.on_request("guest1", _request(request_id=bytes([n + 1]) * 16), NOW)
        assert isinstance(answer, DeliverToLock)
        issuer.on_key_ack("lock1", bytes(make_key_ack(answer.key)))  # nothing left pending
        answers.append(answer)
    assert len({a.key.key_id for a in answers}) == REQUEST_BURST
    over = _request(request_id=b"\x7f" * 16)
    assert _reason(issuer.on_request, "guest1", over, NOW) is Reason.RATE_LIMITED
    assert isinstance(
        issuer.on_request("guest2", _request(request_id=b"\x7e" * 16), NOW), DeliverToLock
    )
    later = NOW + 60 / REQUESTS_PER_MINUTE + 0.1
    refilled = issuer.on_request("guest1", _request(request_id=b"\x7d" * 16, sent_at=later), later)
    assert isinstance(refilled, DeliverToLock)
