"""Fuzzes the codec and the opener of the backend's signed alerts (smartlock.core.alerts):
``Alert.from_bytes`` and ``open_alert``.

Rule: any bytes decode to an alert that re-encodes to exactly them, or are refused with
``Rejected``; the genuine signed alert opens and every mutation of it is refused with ``Rejected``;
valid alerts round-trip.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fuzz_support import (
    NOW,
    DeterministicRandom,
    assert_mutation_refused,
    decoded_or_refused,
    ids,
    mutations,
    short_texts,
    u32,
)
from hypothesis import given
from hypothesis import strategies as st

from smartlock import crypto
from smartlock.core.alerts import Alert, make_alert, open_alert
from smartlock.core.messages import PROTOCOL_VERSION, MessageType

alerts = st.builds(
    Alert,
    alert_id=ids,
    at=u32,
    kind=short_texts,
    lock_id=short_texts,
    subject=short_texts,
    detail=short_texts,
    signature=st.binary(max_size=300),
)
after_header = st.binary(max_size=300).map(bytes([PROTOCOL_VERSION, MessageType.ALERT]).__add__)


@given(alerts)
def test_alerts_round_trip(alert: Alert) -> None:
    assert Alert.from_bytes(bytes(alert)) == alert


@given(
    st.binary(max_size=300)
    | after_header
    | st.builds(lambda a, m: m.apply(bytes(a)), alerts, mutations())
)
def test_any_bytes_decode_to_an_alert_of_exactly_those_bytes_or_are_refused(payload: bytes) -> None:
    alert = decoded_or_refused(Alert.from_bytes, payload)
    if alert is not None:
        assert bytes(alert) == payload


@pytest.fixture(scope="module")
def open_(backend_key: crypto.PrivateKey) -> Callable[[bytes], object]:
    return lambda payload: open_alert(payload, backend_public=backend_key.public_key())


@pytest.fixture(scope="module")
def alert(backend_key: crypto.PrivateKey) -> bytes:
    made = make_alert(
        kind="intrusion",
        lock_id="lock1",
        subject="lock1",
        detail="4 failed attempts: lockout for 300 s",
        now=NOW,
        backend_key=backend_key,
        random_bytes=DeterministicRandom(),
    )
    return bytes(made)


@given(mutations())
def test_a_mutated_alert_is_always_refused(
    open_: Callable[[bytes], object], alert: bytes, mutation
) -> None:
    assert_mutation_refused(open_, alert, mutation)
