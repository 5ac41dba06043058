"""What a lock tells the backend besides key acks and granted BLE events (README, "Protocol").

A :class:`LockReport` on ``locks/{lock}/events``: ``version | type | epoch | seq | at | kind |
body | tag``, where ``tag`` is a MAC (HMAC-SHA-256/16) under the lock's report key (derived
from its command key by HKDF) over the label, the lock id and every other field.  ``seq`` grows
by one with every report the lock ever makes (kept on disk): the backend accepts a report only
if its ``seq`` is higher than the last it accepted from that lock, so a report is logged exactly
once and a replayed one is refused.

Kinds: a heartbeat (every ``heartbeat_s``: bolt state, revocation list version, keys held,
lockout), the outcome of a remote command, a refused BLE token (reason, whom it was made for
when the lock could tell, the attempt number), the start of a lockout and the steps of a
software update.  The lock keeps its
reports on disk while it is offline and uploads them in order on reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import PROTOCOL_VERSION, Action, MessageType, open_frame
from smartlock.core.wire import Reader, Writer

LABEL_LOCK_REPORT = b"smartlock/v1/lock-report"
LABEL_REPORT_KEY = b"smartlock/v1/report-key"


def report_key(command_key: bytes, lock_id: str) -> bytes:
    """The MAC key of a lock's reports, derived from its command key (one key, one use: the
    command key itself only ever seals commands)."""
    return crypto.derive_key(command_key, LABEL_REPORT_KEY, lock_id.encode())


class ReportKind(IntEnum):
    HEARTBEAT = 1
    COMMAND_RESULT = 2
    TOKEN_REFUSED = 3
    LOCKOUT = 4
    UPDATE_STEP = 5


@dataclass(frozen=True)
class Heartbeat:
    bolt: str
    revocation_version: int
    keys_held: int
    locked_out_until: int  # 0: not locked out
    kind = ReportKind.HEARTBEAT

    def encode(self) -> bytes:
        return (
            Writer()
            .text(self.bolt)
            .u32(self.revocation_version)
            .u16(self.keys_held)
            .u32(self.locked_out_until)
            .getvalue()
        )

    @classmethod
    def decode(cls, reader: Reader) -> Heartbeat:
        return cls(reader.text_value(), reader.u32(), reader.u16(), reader.u32())


@dataclass(frozen=True)
class CommandResult:
    nonce: bytes
    action: Action
    result: str  # "done" | "refused" | "failed"
    reason: str
    bolt: str
    kind = ReportKind.COMMAND_RESULT

    def encode(self) -> bytes:
        return (
            Writer()
            .raw(self.nonce)
            .u8(self.action)
            .text(self.result)
            .text(self.reason)
            .text(self.bolt)
            .getvalue()
        )

    @classmethod
    def decode(cls, reader: Reader) -> CommandResult:
        nonce = reader.raw(crypto.NONCE_BYTES)
        try:
            action = Action(reader.u8())
        except ValueError:
            raise Rejected(Reason.MALFORMED, "unknown action") from None
        return cls(nonce, action, reader.text_value(), reader.text_value(), reader.text_value())


@dataclass(frozen=True)
class TokenRefused:
    reason: str
    who: str  # "" when the token could not be tied to a key
    pass_id: int
    attempt: int  # failures counted at this lock within the intrusion window
    kind = ReportKind.TOKEN_REFUSED

    def encode(self) -> bytes:
        return (
            Writer()
            .text(self.reason)
            .text(self.who)
            .u32(self.pass_id)
            .u16(min(self.attempt, 0xFFFF))
            .getvalue()
        )

    @classmethod
    def decode(cls, reader: Reader) -> TokenRefused:
        return cls(reader.text_value(), reader.text_value(), reader.u32(), reader.u16())


@dataclass(frozen=True)
class Lockout:
    until: int
    failures: int
    kind = ReportKind.LOCKOUT

    def encode(self) -> bytes:
        return Writer().u32(self.until).u16(min(self.failures, 0xFFFF)).getvalue()

    @classmethod
    def decode(cls, reader: Reader) -> Lockout:
        return cls(reader.u32(), reader.u16())


UPDATE_STEPS = ("downloading", "refused", "installed", "healthy", "rolled_back", "running")


@dataclass(frozen=True)
class UpdateStep:
    """A step of a software update at the lock (README, "Updates"): ``downloading`` (the head
    verified, chunks being fetched), ``refused`` (``reason`` says why), ``installed`` (in the
    spare slot, restarting into it on trial), ``healthy`` (the trial passed: the new version
    runs), ``rolled_back`` (``reason``: ``exited``, ``not_healthy`` or ``interrupted``), and
    ``running`` (the version a lock runs, said once after each start)."""

    version: str
    step: str
    reason: str
    kind = ReportKind.UPDATE_STEP

    def encode(self) -> bytes:
        return Writer().text(self.version).text(self.step).text(self.reason).getvalue()

    @classmethod
    def decode(cls, reader: Reader) -> UpdateStep:
        step = cls(reader.text_value(), reader.text_value(), reader.text_value())
        if step.step not in UPDATE_STEPS:
            raise Rejected(Reason.MALFORMED, "unknown update step")
        return step


ReportBody = Heartbeat | CommandResult | TokenRefused | Lockout | UpdateStep
_BODIES: dict[
    int,
    type[Heartbeat] | type[CommandResult] | type[TokenRefused] | type[Lockout] | type[UpdateStep],
] = {
    ReportKind.HEARTBEAT: Heartbeat,
    ReportKind.COMMAND_RESULT: CommandResult,
    ReportKind.TOKEN_REFUSED: TokenRefused,
    ReportKind.LOCKOUT: Lockout,
    ReportKind.UPDATE_STEP: UpdateStep,
}


@dataclass(frozen=True)
class LockReport:
    epoch: int
    seq: int
    at: int
    body: ReportBody


def _mac_input(lock_id: str, epoch: int, seq: int, at: int, kind: int, body: bytes) -> bytes:
    return (
        Writer()
        .u8(PROTOCOL_VERSION)
        .text(lock_id)
        .u16(epoch)
        .u32(seq)
        .u32(at)
        .u8(kind)
        .long_bytes(body)
        .getvalue()
    )


def seal_report(*, key: bytes, lock_id: str, report: LockReport) -> bytes:
    body = report.body.encode()
    kind = report.body.kind
    tag = crypto.mac(
        report_key(key, lock_id),
        LABEL_LOCK_REPORT,
        _mac_input(lock_id, report.epoch, report.seq, report.at, kind, body),
    )
    return (
        Writer()
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.LOCK_REPORT)
        .u16(report.epoch)
        .u32(report.seq)
        .u32(report.at)
        .u8(kind)
        .long_bytes(body)
        .raw(tag)
        .getvalue()
    )


def open_report(payload: bytes, *, key: bytes, lock_id: str, epoch: int) -> LockReport:
    """Verify a report from ``lock_id`` under its command key of ``epoch`` (the current one)."""
    reader = open_frame(payload, MessageType.LOCK_REPORT)
    report_epoch = reader.u16()
    seq = reader.u32()
    at = reader.u32()
    kind = reader.u8()
    body = reader.long_bytes()
    tag = reader.raw(crypto.MAC_BYTES)
    reader.end()
    if report_epoch != epoch:
        raise Rejected(Reason.UNKNOWN_KEY, f"report under epoch {report_epoch}, current {epoch}")
    if not crypto.mac_is_valid(
        report_key(key, lock_id),
        LABEL_LOCK_REPORT,
        _mac_input(lock_id, report_epoch, seq, at, kind, body),
        tag,
    ):
        raise Rejected(Reason.BAD_MAC, f"report from {lock_id}")
    body_type = _BODIES.get(kind)
    if body_type is None:
        raise Rejected(Reason.MALFORMED, f"unknown report kind {kind}")
    body_reader = Reader(body)
    decoded = body_type.decode(body_reader)
    body_reader.end()
    return LockReport(report_epoch, seq, at, decoded)


def body_to_json(body: ReportBody) -> list[object]:
    """``[kind, hex]``: how a lock keeps an unsent report on disk."""
    return [int(body.kind), body.encode().hex()]


def body_from_json(item: object) -> ReportBody:
    try:
        if not isinstance(item, list) or len(item) != 2:
            raise TypeError("not a pair")
        body_type = _BODIES[int(item[0])]
        reader = Reader(bytes.fromhex(str(item[1])))
    except (TypeError, ValueError, KeyError, OverflowError):
        raise ValueError("unreadable stored report") from None
    try:
        body = body_type.decode(reader)
        reader.end()
    except Rejected:
        raise ValueError("unreadable stored report") from None
    return body
