"""Fuzzes the lock's MAC'd reports (smartlock.core.reports): ``open_report`` and the stored form of
unsent report bodies, ``body_from_json``.

Rules: the genuine sealed report opens and every mutation of it is refused with ``Rejected``; any
bytes offered as a report are refused with ``Rejected``; ``body_from_json`` raises only
``ValueError``; valid reports round-trip through ``seal_report`` / ``open_report`` and valid bodies
through ``body_to_json`` / ``body_from_json``.
"""

from __future__ import annotations

import math

import pytest
from fuzz_support import (
    LOCK_ID,
    NOW,
    actions,
    assert_mutation_refused,
    json_values,
    mutations,
    short_texts,
    u16,
    u32,
)
from hypothesis import example, given
from hypothesis import strategies as st

from smartlock.core.errors import Rejected
from smartlock.core.messages import PROTOCOL_VERSION, MessageType
from smartlock.core.reports import (
    CommandResult,
    Heartbeat,
    Lockout,
    LockReport,
    ReportBody,
    TokenRefused,
    body_from_json,
    body_to_json,
    open_report,
    seal_report,
)

KEY = bytes(range(32))
EPOCH = 2

bodies: st.SearchStrategy[ReportBody] = st.one_of(
    st.builds(Heartbeat, short_texts, u32, u16, u32),
    st.builds(
        CommandResult,
        st.binary(min_size=12, max_size=12),
        actions,
        short_texts,
        short_texts,
        short_texts,
    ),
    st.builds(TokenRefused, short_texts, short_texts, u32, u16),
    st.builds(Lockout, u32, u16),
)
reports = st.builds(LockReport, st.just(EPOCH), u32, u32, bodies)
SEALED = seal_report(
    key=KEY,
    lock_id=LOCK_ID,
    report=LockReport(EPOCH, 41, int(NOW), TokenRefused("bad_mac", "guest1", 7, 2)),
)


def _open(payload: bytes) -> LockReport:
    return open_report(payload, key=KEY, lock_id=LOCK_ID, epoch=EPOCH)


@given(reports)
def test_reports_round_trip(report: LockReport) -> None:
    assert _open(seal_report(key=KEY, lock_id=LOCK_ID, report=report)) == report


@given(mutations())
def test_a_mutated_report_is_always_refused(mutation) -> None:
    assert_mutation_refused(_open, SEALED, mutation)


@given(
    st.binary(max_size=120)
    | st.binary(max_size=120).map(bytes([PROTOCOL_VERSION, MessageType.LOCK_REPORT]).__add__)
)
def test_any_bytes_offered_as_a_report_are_refused(payload: bytes) -> None:
    with pytest.raises(Rejected):
        _open(payload)


@given(bodies)
def test_stored_report_bodies_round_trip(body: ReportBody) -> None:
    assert body_from_json(body_to_json(body)) == body


@st.composite
def damaged_stored_bodies(draw: st.DrawFn) -> object:
    """A stored body with its kind or its hex changed, or any JSON value."""
    kind, hex_body = body_to_json(draw(bodies))
    return draw(
        st.one_of(
            st.builds(lambda k: [k, hex_body], json_values),
            st.builds(lambda h: [kind, h], json_values),
            st.builds(lambda m: [kind, m.apply(bytes.fromhex(str(hex_body))).hex()], mutations()),
            json_values,
        )
    )


@given(damaged_stored_bodies())
@example(item=[math.inf, None])  # found by the fuzzer: OverflowError out of body_from_json
def test_a_damaged_stored_report_body_is_refused_with_value_error_or_re_stores_the_same(
    item: object,
) -> None:
    try:
        body = body_from_json(item)
    except ValueError:
        return
    assert body_from_json(body_to_json(body)) == body
