"""Fuzzes the codec and the opener of the signed revocation list (smartlock.core.revocation):
``RevocationList.from_bytes`` and ``open_revocation_list``.

Rule: any bytes decode to a list that re-encodes to exactly them and holds at most ``MAX_ENTRIES``
valid entries, or are refused with ``Rejected``; the genuine signed list opens and every mutation
of it is refused with ``Rejected``; valid lists round-trip.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fuzz_support import (
    LOCK_ID,
    NOW,
    assert_mutation_refused,
    decoded_or_refused,
    identifiers,
    mutations,
    u32,
)
from hypothesis import given
from hypothesis import strategies as st

from smartlock import crypto
from smartlock.core.messages import PROTOCOL_VERSION, MessageType
from smartlock.core.revocation import (
    MAX_ENTRIES,
    RevocationList,
    make_revocation_list,
    open_revocation_list,
)


@st.composite
def revocation_lists(draw: st.DrawFn) -> RevocationList:
    pass_ids = draw(st.lists(u32, max_size=MAX_ENTRIES))
    users = draw(
        st.lists(st.tuples(identifiers, u32), max_size=min(20, MAX_ENTRIES - len(pass_ids)))
    )
    return RevocationList(
        draw(u32),
        draw(u32),
        draw(identifiers),
        tuple(pass_ids),
        tuple(users),
        draw(st.binary(max_size=300)),
    )


after_header = st.binary(max_size=300).map(
    bytes([PROTOCOL_VERSION, MessageType.REVOCATION_LIST]).__add__
)


@given(revocation_lists())
def test_revocation_lists_round_trip(revocations: RevocationList) -> None:
    assert RevocationList.from_bytes(bytes(revocations)) == revocations


@given(
    st.binary(max_size=300)
    | after_header
    | st.builds(lambda r, m: m.apply(bytes(r)), revocation_lists(), mutations())
)
def test_any_bytes_decode_to_a_list_of_exactly_those_bytes_or_are_refused(payload: bytes) -> None:
    revocations = decoded_or_refused(RevocationList.from_bytes, payload)
    if revocations is not None:
        assert bytes(revocations) == payload
        assert len(revocations.pass_ids) + len(revocations.users) <= MAX_ENTRIES


@pytest.fixture(scope="module")
def open_(backend_key: crypto.PrivateKey) -> Callable[[bytes], object]:
    return lambda payload: open_revocation_list(
        payload, lock_id=LOCK_ID, backend_public=backend_key.public_key()
    )


@pytest.fixture(scope="module")
def signed(backend_key: crypto.PrivateKey) -> bytes:
    made = make_revocation_list(
        version=4,
        lock_id=LOCK_ID,
        pass_ids=[3, 9],
        users=[("alice", int(NOW) - 60)],
        now=NOW,
        backend_key=backend_key,
    )
    return bytes(made)


@given(mutations())
def test_a_mutated_revocation_list_is_always_refused(
    open_: Callable[[bytes], object], signed: bytes, mutation
) -> None:
    assert_mutation_refused(open_, signed, mutation)
