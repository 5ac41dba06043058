"""smartlock.core.access: the lock-signed access event and the guest's ack-tag proof."""

from __future__ import annotations

import dataclasses

import pytest

from smartlock.core.access import access_ack_is_valid, make_access_event, open_access_event
from smartlock.core.errors import Reason, Rejected
from smartlock.core.issuance import SessionKey, make_key_ack
from smartlock.core.lock_verifier import AccessGranted
from smartlock.core.messages import AccessEvent, Action, Outcome
from smartlock.core.token import make_token

NOW = 1_800_000_000.0
LOCK = "lock1"
OTHER_LOCK = "lock2"


@pytest.fixture
def key(issue) -> SessionKey:
    return issue().issuance.key


@pytest.fixture
def grant(key) -> AccessGranted:
    return AccessGranted(key, 3, Action.UNLOCK)


@pytest.fixture
def event(grant, lock_key, random_bytes) -> AccessEvent:
    return make_access_event(grant, lock_key=lock_key, now=NOW + 0.7, random_bytes=random_bytes)


@pytest.fixture
def open_event(lock_key):
    def _open(payload: bytes, *, lock_id: str = LOCK, public=None) -> AccessEvent:
        return open_access_event(
            payload, lock_id=lock_id, lock_public=public or lock_key.public_key()
        )

    return _open


def _reason(call, *args, **kwargs) -> Reason:
    with pytest.raises(Rejected) as caught:
        call(*args, **kwargs)
    return caught.value.reason


def test_access_event_records_the_grant(event, key) -> None:
    assert event.lock_id == LOCK
    assert event.guest_id == key.header.guest_id
    assert event.key_id == key.key_id
    assert (event.counter, event.action, event.outcome) == (3, Action.UNLOCK, Outcome.GRANTED)
    assert event.at == int(NOW)
    assert len(event.event_id) == 16


def test_access_events_get_distinct_ids(grant, lock_key, random_bytes) -> None:
    first = make_access_event(grant, lock_key=lock_key, now=NOW, random_bytes=random_bytes)
    second = make_access_event(grant, lock_key=lock_key, now=NOW, random_bytes=random_bytes)
    assert first.event_id != second.event_id


def test_access_event_round_trips(event) -> None:
    assert AccessEvent.from_bytes(bytes(event)) == event


def test_lock_signed_event_verifies(event, open_event) -> None:
    assert open_event(bytes(event)) == event


def test_event_on_another_locks_topic_is_rejected(event, open_event) -> None:
    # lock2's topic, checked against the key of the lock that really signed it
    assert _reason(open_event, bytes(event), lock_id=OTHER_LOCK) is Reason.WRONG_LOCK


def test_event_checked_with_another_locks_key_is_rejected(
    event, open_event, other_lock_key
) -> None:
    reason = _reason(open_event, bytes(event), public=other_lock_key.public_key())
    assert reason is Reason.BAD_SIGNATURE


def test_event_signed_by_another_key_is_rejected(grant, other_lock_key, random_bytes, open_event):
    forged = make_access_event(grant, lock_key=other_lock_key, now=NOW, random_bytes=random_bytes)
    assert _reason(open_event, bytes(forged)) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", b"\x00" * 16),
        ("at", int(NOW) + 1),
        ("lock_id", OTHER_LOCK),
        ("guest_id", "guest2"),
        ("key_id", b"\x01" * 16),
        ("counter", 4),
        ("action", Action.LOCK),
        ("ack_tag", b"\x00" * 16),
    ],
)
def test_tampered_event_is_rejected(event, open_event, field: str, value) -> None:
    tampered = dataclasses.replace(event, **{field: value})
    lock_id = tampered.lock_id  # even on the topic matching the tampered lock id
    assert _reason(open_event, bytes(tampered), lock_id=lock_id) is Reason.BAD_SIGNATURE


def test_event_with_any_flipped_byte_never_verifies(event, open_event) -> None:
    payload = bytes(event)
    signature_start = len(payload) - len(event.signature)
    for index in range(len(payload)):
        flipped = payload[:index] + bytes([payload[index] ^ 0x01]) + payload[index + 1 :]
        reason = _reason(open_event, flipped)
        if index >= signature_start:
            assert reason is Reason.BAD_SIGNATURE, index


def test_ack_tag_verifies_under_the_session_key(event, key) -> None:
    assert access_ack_is_valid(event, key)


def test_ack_tag_does_not_verify_under_another_session_key(event, key, issue) -> None:
    other = issue().issuance.key
    assert not access_ack_is_valid(event, other)
    same_id_other_secret = SessionKey(key.header, b"\x00" * 32)
    assert not access_ack_is_valid(event, same_id_other_secret)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("counter", 4),
        ("action", Action.LOCK),
        ("lock_id", OTHER_LOCK),
        ("key_id", b"\x01" * 16),
        ("ack_tag", b"\x00" * 16),
    ],
)
def test_ack_tag_does_not_verify_for_another_grant(event, key, field: str, value) -> None:
    assert not access_ack_is_valid(dataclasses.replace(event, **{field: value}), key)


def test_ack_tag_is_not_a_token_or_key_ack_tag(event, key) -> None:
    # domain separation: the same session key makes different tags for different purposes
    assert event.ack_tag != make_token(key, event.counter, event.action).tag
    assert event.ack_tag != make_key_ack(key).tag


# --- a rotation of the lock's key: the overlap --------------------------------------------------


@pytest.fixture(scope="module")
def rotated_key():
    """The lock's new key after ``smartlock rotate lock-key``; ``lock_key`` is the previous one."""
    from smartlock import crypto

    return crypto.generate_private_key()


def _open_rotated(payload: bytes, rotated_key, previous=()) -> AccessEvent:
    return open_access_event(
        payload,
        lock_id=LOCK,
        lock_public=rotated_key.public_key(),
        previous_lock_publics=[key.public_key() for key in previous],
    )


def test_event_signed_with_the_previous_key_verifies_during_the_overlap(
    event, rotated_key, lock_key
) -> None:
    # event is signed with lock_key: kept on the lock while it was offline during the rotation
    assert _open_rotated(bytes(event), rotated_key, (lock_key,)) == event


def test_event_signed_with_the_previous_key_is_refused_once_the_overlap_is_over(
    event, rotated_key
) -> None:
    assert _reason(_open_rotated, bytes(event), rotated_key) is Reason.BAD_SIGNATURE


def test_event_signed_with_the_new_key_verifies_during_and_after_the_overlap(
    grant, rotated_key, lock_key, random_bytes
) -> None:
    signed = make_access_event(grant, lock_key=rotated_key, now=NOW, random_bytes=random_bytes)
    assert _open_rotated(bytes(signed), rotated_key, (lock_key,)) == signed
    assert _open_rotated(bytes(signed), rotated_key) == signed


def test_event_signed_by_an_unrelated_key_is_refused_even_during_the_overlap(
    grant, rotated_key, lock_key, other_lock_key, random_bytes
) -> None:
    forged = make_access_event(grant, lock_key=other_lock_key, now=NOW, random_bytes=random_bytes)
    assert _reason(_open_rotated, bytes(forged), rotated_key, (lock_key,)) is Reason.BAD_SIGNATURE


def test_event_signed_with_the_previous_key_on_another_locks_topic_is_wrong_lock(
    event, rotated_key, lock_key
) -> None:
    reason = _reason(
        open_access_event,
        bytes(event),
        lock_id=OTHER_LOCK,
        lock_public=rotated_key.public_key(),
        previous_lock_publics=(lock_key.public_key(),),
    )
    assert reason is Reason.WRONG_LOCK
