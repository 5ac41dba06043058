"""Fuzzes the backend's opener of a lock's signed access events
(smartlock.core.access.open_access_event).

Rule: the genuine event opens and every mutation of it is refused with ``Rejected``; any bytes
offered as an event are refused with ``Rejected``; nothing else ever escapes.
"""

from __future__ import annotations

from collections.abc import Callable

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
from smartlock.core.access import make_access_event, open_access_event
from smartlock.core.errors import Rejected
from smartlock.core.issuance import SessionKey
from smartlock.core.lock_verifier import AccessGranted
from smartlock.core.messages import PROTOCOL_VERSION, Action, IssuanceHeader, MessageType

KEY = SessionKey(
    IssuanceHeader(bytes(range(16)), int(NOW) - 10, int(NOW) + 290, LOCK_ID, GUEST_ID, 7, 5),
    bytes(range(32, 64)),
)


@pytest.fixture(scope="module")
def open_event(lock_key: crypto.PrivateKey) -> Callable[[bytes], object]:
    return lambda payload: open_access_event(
        payload, lock_id=LOCK_ID, lock_public=lock_key.public_key()
    )


@pytest.fixture(scope="module")
def event(lock_key: crypto.PrivateKey) -> bytes:
    grant = AccessGranted(KEY, counter=6, action=Action.UNLOCK)
    made = make_access_event(grant, lock_key=lock_key, now=NOW, random_bytes=DeterministicRandom())
    return bytes(made)


@given(mutations())
def test_a_mutated_access_event_is_always_refused(
    open_event: Callable[[bytes], object], event: bytes, mutation
) -> None:
    assert_mutation_refused(open_event, event, mutation)


@given(
    st.binary(max_size=400)
    | st.binary(max_size=400).map(bytes([PROTOCOL_VERSION, MessageType.ACCESS_EVENT]).__add__)
)
def test_any_bytes_offered_as_an_access_event_are_refused(
    open_event: Callable[[bytes], object], payload: bytes
) -> None:
    with pytest.raises(Rejected):
        open_event(payload)
