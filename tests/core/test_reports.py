"""smartlock.core.reports: a lock's MAC'd reports (heartbeat, command result, refusal, lockout)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import PROTOCOL_VERSION, Action, MessageType
from smartlock.core.reports import (
    LABEL_LOCK_REPORT,
    UPDATE_STEPS,
    CommandResult,
    Heartbeat,
    Lockout,
    LockReport,
    ReportBody,
    ReportKind,
    TokenRefused,
    UpdateStep,
    body_from_json,
    body_to_json,
    open_report,
    report_key,
    seal_report,
)
from smartlock.core.wire import Writer

NOW = 1_800_000_000
LOCK = "lock1"
OTHER_LOCK = "lock2"
KEY = b"\x42" * 32
OTHER_KEY = b"\x43" * 32
EPOCH = 2

BODIES: list[ReportBody] = [
    Heartbeat(bolt="locked", revocation_version=7, keys_held=3, locked_out_until=0),
    CommandResult(
        nonce=b"\x05" * 12, action=Action.UNLOCK, result="done", reason="", bolt="unlocked"
    ),
    TokenRefused(reason="bad_mac", who="guest1", pass_id=12, attempt=2),
    Lockout(until=NOW + 300, failures=4),
]
BODY_IDS = ["heartbeat", "command-result", "token-refused", "lockout"]


def _report(body: ReportBody = BODIES[0], *, epoch: int = EPOCH, seq: int = 9) -> LockReport:
    return LockReport(epoch=epoch, seq=seq, at=NOW, body=body)


def _sealed(body: ReportBody = BODIES[0], *, key: bytes = KEY, lock_id: str = LOCK) -> bytes:
    return seal_report(key=key, lock_id=lock_id, report=_report(body))


def _open(payload: bytes, *, key: bytes = KEY, lock_id: str = LOCK, epoch: int = EPOCH):
    return open_report(payload, key=key, lock_id=lock_id, epoch=epoch)


def _reason(payload: bytes, **kwargs) -> Reason:
    with pytest.raises(Rejected) as caught:
        _open(payload, **kwargs)
    return caught.value.reason


@pytest.mark.parametrize("body", BODIES, ids=BODY_IDS)
def test_sealed_report_opens_to_the_same_report(body: ReportBody) -> None:
    assert _open(_sealed(body)) == _report(body)


@pytest.mark.parametrize("body", BODIES, ids=BODY_IDS)
def test_report_is_header_fields_body_and_a_16_byte_tag(body: ReportBody) -> None:
    payload = _sealed(body)
    assert payload[:2] == bytes([PROTOCOL_VERSION, MessageType.LOCK_REPORT])
    # version, type | epoch | seq | at | kind | body (two-byte length) | tag
    assert len(payload) == 2 + 2 + 4 + 4 + 1 + 2 + len(body.encode()) + 16


def test_report_under_another_key_is_bad_mac() -> None:
    assert _reason(_sealed(key=OTHER_KEY)) is Reason.BAD_MAC


def test_the_report_key_is_derived_from_the_command_key_per_lock() -> None:
    """One key, one use: the command key seals commands, a key derived from it MACs reports."""
    derived = report_key(KEY, LOCK)
    assert len(derived) == 32
    assert derived != KEY
    assert derived == report_key(KEY, LOCK)  # both ends derive the same key
    assert derived == crypto.derive_key(KEY, b"smartlock/v1/report-key", LOCK.encode())
    assert derived != report_key(KEY, OTHER_LOCK)
    assert derived != report_key(OTHER_KEY, LOCK)


def _hand_made(tag_key: bytes, body: ReportBody = BODIES[0], seq: int = 9) -> bytes:
    """A report assembled field by field, as the README describes it, its tag under ``tag_key``."""
    encoded = body.encode()
    mac_input = (
        Writer()
        .u8(PROTOCOL_VERSION)
        .text(LOCK)
        .u16(EPOCH)
        .u32(seq)
        .u32(NOW)
        .u8(body.kind)
        .long_bytes(encoded)
        .getvalue()
    )
    tag = crypto.mac(tag_key, LABEL_LOCK_REPORT, mac_input)
    return (
        Writer()
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.LOCK_REPORT)
        .u16(EPOCH)
        .u32(seq)
        .u32(NOW)
        .u8(body.kind)
        .long_bytes(encoded)
        .raw(tag)
        .getvalue()
    )


def test_a_report_tagged_under_the_report_key_opens() -> None:
    payload = _hand_made(report_key(KEY, LOCK))
    assert payload == _sealed()
    assert _open(payload) == _report()


def test_a_report_tagged_under_the_raw_command_key_is_bad_mac() -> None:
    assert _reason(_hand_made(KEY)) is Reason.BAD_MAC


def test_report_of_another_lock_is_bad_mac() -> None:
    # a report lock2 made under the very same key does not pass as lock1's
    assert _reason(_sealed(lock_id=OTHER_LOCK)) is Reason.BAD_MAC


@pytest.mark.parametrize("epoch", [EPOCH - 1, EPOCH + 1])
def test_report_of_another_epoch_is_refused(epoch: int) -> None:
    assert _reason(_sealed(), epoch=epoch) is Reason.UNKNOWN_KEY


@pytest.mark.parametrize("body", BODIES, ids=BODY_IDS)
def test_every_flipped_byte_of_a_report_is_refused(body: ReportBody) -> None:
    payload = _sealed(body)
    for index in range(len(payload)):
        flipped = bytearray(payload)
        flipped[index] ^= 0x01
        with pytest.raises(Rejected):
            _open(bytes(flipped))


@pytest.mark.parametrize("size", [0, 1, 2, 10, -1])
def test_truncated_report_is_refused(size: int) -> None:
    with pytest.raises(Rejected):
        _open(_sealed()[:size])


def test_report_with_trailing_bytes_is_malformed() -> None:
    assert _reason(_sealed() + b"\x00") is Reason.MALFORMED


@dataclass(frozen=True)
class _RawBody:
    """A body as a lock might send it, of any kind and content (for refusals)."""

    kind: int
    raw: bytes

    def encode(self) -> bytes:
        return self.raw


def test_report_of_an_unknown_kind_is_malformed() -> None:
    payload = _sealed(_RawBody(kind=9, raw=b""))  # type: ignore[arg-type]
    assert _reason(payload) is Reason.MALFORMED


def test_report_body_with_trailing_bytes_is_malformed() -> None:
    raw = BODIES[3].encode() + b"\x00"
    payload = _sealed(_RawBody(kind=ReportKind.LOCKOUT, raw=raw))  # type: ignore[arg-type]
    assert _reason(payload) is Reason.MALFORMED


def test_report_body_cut_short_is_malformed() -> None:
    raw = BODIES[0].encode()[:-1]
    payload = _sealed(_RawBody(kind=ReportKind.HEARTBEAT, raw=raw))  # type: ignore[arg-type]
    assert _reason(payload) is Reason.MALFORMED


def test_command_result_with_an_unknown_action_is_malformed() -> None:
    raw = Writer().raw(b"\x05" * 12).u8(3).text("done").text("").text("locked").getvalue()
    payload = _sealed(_RawBody(kind=ReportKind.COMMAND_RESULT, raw=raw))  # type: ignore[arg-type]
    assert _reason(payload) is Reason.MALFORMED


def test_counts_beyond_sixteen_bits_are_reported_as_the_largest() -> None:
    refused = TokenRefused(reason="replay", who="", pass_id=0, attempt=70_000)
    lockout = Lockout(until=NOW, failures=70_000)
    assert _open(_sealed(refused)).body == TokenRefused("replay", "", 0, 0xFFFF)
    assert _open(_sealed(lockout)).body == Lockout(NOW, 0xFFFF)


# --- kept on disk while offline ------------------------------------------------------------------


@pytest.mark.parametrize("body", BODIES, ids=BODY_IDS)
def test_body_survives_json_on_disk(body: ReportBody) -> None:
    stored = json.loads(json.dumps(body_to_json(body)))
    assert stored[0] == body.kind
    assert body_from_json(stored) == body


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(None, id="null"),
        pytest.param("1", id="text"),
        pytest.param({"kind": 1}, id="object"),
        pytest.param([], id="empty"),
        pytest.param([1], id="kind-only"),
        pytest.param([1, "00", "00"], id="three-items"),
        pytest.param([9, ""], id="unknown-kind"),
        pytest.param(["heartbeat", ""], id="kind-as-name"),
        pytest.param([None, ""], id="kind-null"),
        pytest.param([1, "zz"], id="not-hex"),
        pytest.param([1, ""], id="empty-body"),
        pytest.param([4, BODIES[3].encode().hex() + "00"], id="trailing"),
        pytest.param([4, BODIES[3].encode().hex()[:-2]], id="cut-short"),
        pytest.param([2, BODIES[0].encode().hex()], id="body-of-another-kind"),
    ],
)
def test_stored_garbage_is_a_value_error(garbage: object) -> None:
    with pytest.raises(ValueError, match="unreadable stored report"):
        body_from_json(garbage)


# --- software update steps -----------------------------------------------------------------------

UPDATE_STEP_BODIES = [
    UpdateStep(version="1.1.0", step="downloading", reason=""),
    UpdateStep(version="1.1.0", step="refused", reason="bad_signature"),
    UpdateStep(version="1.1.0", step="installed", reason=""),
    UpdateStep(version="1.1.0", step="healthy", reason=""),
    UpdateStep(version="1.1.0", step="rolled_back", reason="not_healthy"),
    UpdateStep(version="1.0.0", step="running", reason=""),
]


def test_every_update_step_is_tested() -> None:
    assert sorted(body.step for body in UPDATE_STEP_BODIES) == sorted(UPDATE_STEPS)


def test_update_steps_are_report_kind_five() -> None:
    assert UpdateStep.kind is ReportKind.UPDATE_STEP
    assert int(UpdateStep.kind) == 5
    payload = _sealed(UPDATE_STEP_BODIES[0])
    assert payload[2 + 2 + 4 + 4] == 5  # the kind byte after version, type, epoch, seq, at


@pytest.mark.parametrize("body", UPDATE_STEP_BODIES, ids=UPDATE_STEPS)
def test_sealed_update_step_opens_to_the_same_report(body: UpdateStep) -> None:
    assert _open(_sealed(body)) == _report(body)


@pytest.mark.parametrize("body", UPDATE_STEP_BODIES, ids=UPDATE_STEPS)
def test_update_step_survives_json_on_disk(body: UpdateStep) -> None:
    stored = json.loads(json.dumps(body_to_json(body)))
    assert stored[0] == ReportKind.UPDATE_STEP
    assert body_from_json(stored) == body


def test_every_flipped_byte_of_an_update_step_report_is_refused() -> None:
    payload = _sealed(UPDATE_STEP_BODIES[1])
    for index in range(len(payload)):
        flipped = bytearray(payload)
        flipped[index] ^= 0x01
        with pytest.raises(Rejected):
            _open(bytes(flipped))


@pytest.mark.parametrize("step", ["exploded", "", "Healthy", "pushed", "healthy "])
def test_an_update_step_the_protocol_does_not_know_is_malformed(step: str) -> None:
    unknown = UpdateStep(version="1.1.0", step=step, reason="")
    assert _reason(_sealed(unknown)) is Reason.MALFORMED  # MAC'd by the lock, still refused
    with pytest.raises(ValueError, match="unreadable stored report"):
        body_from_json(body_to_json(unknown))


def test_an_update_step_cut_short_is_malformed() -> None:
    raw = UPDATE_STEP_BODIES[0].encode()[:-1]
    payload = _sealed(_RawBody(kind=ReportKind.UPDATE_STEP, raw=raw))  # type: ignore[arg-type]
    assert _reason(payload) is Reason.MALFORMED
