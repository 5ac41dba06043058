"""Fuzzes the openers of a session key's messages (smartlock.core.issuance): ``open_lock_delivery``,
``open_guest_delivery``, ``open_denial``, and the key acknowledgement the backend's issuer checks
(``KeyIssuer.on_key_ack``).

Rule: each opens the genuine message and refuses every mutation of it (a bit flipped, a byte
replaced, bytes cut off, appended, inserted or deleted, another version byte) with ``Rejected``;
any bytes offered in their place are refused with ``Rejected``; nothing else ever escapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fuzz_support import (
    GUEST_ID,
    LOCK_ID,
    NOW,
    DeterministicRandom,
    assert_mutation_refused,
    mutations,
)
from hypothesis import given
from hypothesis import strategies as st

from smartlock import crypto
from smartlock.core.errors import Rejected
from smartlock.core.issuance import (
    Issuance,
    issue_session_key,
    make_denial,
    make_key_ack,
    open_denial,
    open_guest_delivery,
    open_lock_delivery,
)
from smartlock.core.issuer import DeliverToLock, KeyIssuer
from smartlock.core.messages import PROTOCOL_VERSION, MessageType, SessionRequest
from smartlock.core.policy import KeyGrant
from smartlock.core.roles import Role

REQUEST = SessionRequest(request_id=bytes(range(16)), sent_at=int(NOW), lock_id=LOCK_ID)


@dataclass(frozen=True)
class Keys:
    backend: crypto.PrivateKey
    lock: crypto.PrivateKey
    guest: crypto.PrivateKey


@pytest.fixture(scope="module")
def keys(
    backend_key: crypto.PrivateKey, lock_key: crypto.PrivateKey, guest_key: crypto.PrivateKey
) -> Keys:
    return Keys(backend_key, lock_key, guest_key)


@pytest.fixture(scope="module")
def issuance(keys: Keys) -> Issuance:
    return issue_session_key(
        request=REQUEST,
        guest_id=GUEST_ID,
        now=NOW,
        ttl_s=300,
        backend_key=keys.backend,
        lock_public=keys.lock.public_key(),
        guest_public=keys.guest.public_key(),
        random_bytes=DeterministicRandom(),
        pass_id=7,
        max_uses=3,
    )


def _lock_opener(keys: Keys) -> Callable[[bytes], object]:
    return lambda payload: open_lock_delivery(
        payload,
        lock_id=LOCK_ID,
        backend_public=keys.backend.public_key(),
        lock_key=keys.lock,
        now=NOW,
    )


def _guest_opener(keys: Keys) -> Callable[[bytes], object]:
    return lambda payload: open_guest_delivery(
        payload,
        guest_id=GUEST_ID,
        lock_id=LOCK_ID,
        request_id=REQUEST.request_id,
        backend_public=keys.backend.public_key(),
        guest_key=keys.guest,
        now=NOW,
    )


def _denial_opener(keys: Keys) -> Callable[[bytes], object]:
    return lambda payload: open_denial(
        payload,
        guest_id=GUEST_ID,
        request_id=REQUEST.request_id,
        backend_public=keys.backend.public_key(),
    )


def _after_header(message_type: MessageType) -> st.SearchStrategy[bytes]:
    """Any bytes after a valid header of ``message_type`` (they reach the field decoders)."""
    return st.binary(max_size=700).map(bytes([PROTOCOL_VERSION, message_type]).__add__)


@given(mutations())
def test_a_mutated_lock_delivery_is_always_refused(
    keys: Keys, issuance: Issuance, mutation
) -> None:
    assert_mutation_refused(_lock_opener(keys), bytes(issuance.lock_delivery), mutation)


@given(mutations())
def test_a_mutated_guest_delivery_is_always_refused(
    keys: Keys, issuance: Issuance, mutation
) -> None:
    assert_mutation_refused(_guest_opener(keys), bytes(issuance.guest_delivery), mutation)


@given(mutations())
def test_a_mutated_denial_is_always_refused(keys: Keys, mutation) -> None:
    denial = make_denial(
        request_id=REQUEST.request_id,
        guest_id=GUEST_ID,
        reason="outside_hours",
        now=NOW,
        backend_key=keys.backend,
    )
    assert_mutation_refused(_denial_opener(keys), bytes(denial), mutation)


@given(
    st.binary(max_size=700)
    | _after_header(MessageType.LOCK_DELIVERY)
    | _after_header(MessageType.GUEST_DELIVERY)
    | _after_header(MessageType.SESSION_DENIED),
)
def test_any_bytes_offered_as_a_delivery_or_a_denial_are_refused(
    keys: Keys, payload: bytes
) -> None:
    for open_ in (_lock_opener(keys), _guest_opener(keys), _denial_opener(keys)):
        with pytest.raises(Rejected):
            open_(payload)


# --- the lock's acknowledgement, as the backend's issuer checks it -------------------------------


class _Directory:
    """Everyone may have a key; the one lock and the one guest have the fuzz suite's keys."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    def authorize_key(self, user: str, lock_id: str, now: float) -> KeyGrant:
        return KeyGrant(Role.RESIDENT)

    def lock_public(self, lock_id: str) -> crypto.PublicKey:
        return self._keys.lock.public_key()

    def user_public(self, user: str) -> crypto.PublicKey:
        return self._keys.guest.public_key()


def _issuer_awaiting_an_ack(keys: Keys) -> tuple[KeyIssuer, bytes]:
    """An issuer that issued one key (the same every time) and the lock's genuine ack of it."""
    issuer = KeyIssuer(
        backend_key=keys.backend, directory=_Directory(keys), random_bytes=DeterministicRandom()
    )
    delivered = issuer.on_request(GUEST_ID, bytes(REQUEST), NOW)
    assert isinstance(delivered, DeliverToLock)
    return issuer, bytes(make_key_ack(delivered.key))


@given(mutations())
def test_a_mutated_key_ack_never_releases_the_guest_s_key(keys: Keys, mutation) -> None:
    issuer, ack = _issuer_awaiting_an_ack(keys)
    assert_mutation_refused(lambda payload: issuer.on_key_ack(LOCK_ID, payload), ack, mutation)


@given(st.binary(max_size=100) | _after_header(MessageType.KEY_ACK))
def test_any_bytes_offered_as_a_key_ack_are_refused(keys: Keys, payload: bytes) -> None:
    issuer, _ = _issuer_awaiting_an_ack(keys)
    with pytest.raises(Rejected):
        issuer.on_key_ack(LOCK_ID, payload)
