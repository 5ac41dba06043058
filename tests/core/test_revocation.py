"""smartlock.core.revocation: the signed list of revoked passes and removed users, per lock."""

from __future__ import annotations

import dataclasses

import pytest

from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, MessageType
from smartlock.core.revocation import (
    MAX_ENTRIES,
    RevocationList,
    make_revocation_list,
    open_revocation_list,
)
from smartlock.core.wire import Writer

NOW = 1_800_000_000.0
LOCK = "lock1"
OTHER_LOCK = "lock2"
REMOVED_AT = int(NOW) - 60  # guest9's keys issued at or before this are revoked


def _make(
    signer,
    *,
    lock_id: str = LOCK,
    pass_ids=(12, 3, 7),
    users=(("guest9", REMOVED_AT),),
    version: int = 4,
) -> RevocationList:
    return make_revocation_list(
        version=version,
        lock_id=lock_id,
        pass_ids=list(pass_ids),
        users=list(users),
        now=NOW,
        backend_key=signer,
    )


def _open(payload: bytes, backend_key, lock_id: str = LOCK) -> RevocationList:
    return open_revocation_list(payload, lock_id=lock_id, backend_public=backend_key.public_key())


def _reason(payload: bytes, backend_key, lock_id: str = LOCK) -> Reason:
    with pytest.raises(Rejected) as caught:
        _open(payload, backend_key, lock_id)
    return caught.value.reason


def test_signed_list_opens_with_its_entries(backend_key) -> None:
    made = _make(backend_key)
    opened = _open(bytes(made), backend_key)
    assert opened == made
    assert (opened.version, opened.issued_at, opened.lock_id) == (4, int(NOW), LOCK)
    assert opened.pass_ids == (3, 7, 12)  # sorted
    assert opened.users == (("guest9", REMOVED_AT),)


def test_empty_list_opens(backend_key) -> None:
    made = _make(backend_key, pass_ids=(), users=())
    assert _open(bytes(made), backend_key).pass_ids == ()


def test_list_round_trips_through_bytes(backend_key) -> None:
    made = _make(backend_key)
    assert RevocationList.from_bytes(bytes(made)) == made


def test_user_entries_round_trip_as_name_and_revoked_before_pairs(backend_key) -> None:
    users = [("resident1", 0), ("guest9", REMOVED_AT), ("owner2", 0xFFFF_FFFF)]
    made = _make(backend_key, pass_ids=(), users=users)
    opened = _open(bytes(made), backend_key)
    assert opened.users == tuple(users)  # in the order given, each with its own time


def test_each_user_name_is_followed_by_its_revoked_before_as_u32_on_the_wire() -> None:
    payload = (
        Writer()
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.REVOCATION_LIST)
        .u32(4)
        .u32(int(NOW))
        .text(LOCK)
        .u16(0)
        .u16(2)
        .text("guest9")
        .u32(REMOVED_AT)
        .text("resident1")
        .u32(7)
        .long_bytes(b"\x00" * 256)
        .getvalue()
    )
    assert RevocationList.from_bytes(payload).users == (("guest9", REMOVED_AT), ("resident1", 7))


def test_list_signed_by_another_key_is_refused(backend_key, lock_key) -> None:
    assert _reason(bytes(_make(lock_key)), backend_key) is Reason.BAD_SIGNATURE


def test_list_for_another_lock_is_refused(backend_key) -> None:
    for_other = _make(backend_key, lock_id=OTHER_LOCK)
    assert _reason(bytes(for_other), backend_key) is Reason.WRONG_LOCK


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"pass_ids": (3, 7)}, id="pass-removed"),
        pytest.param({"pass_ids": ()}, id="every-pass-removed"),
        pytest.param({"users": ()}, id="user-removed"),
        pytest.param({"users": (("guest9", REMOVED_AT - 1),)}, id="revoked-before-moved"),
        pytest.param({"version": 5}, id="version-bumped"),
        pytest.param({"issued_at": int(NOW) + 1}, id="issued-at"),
        pytest.param({"lock_id": OTHER_LOCK}, id="lock-id"),
    ],
)
def test_tampered_list_is_refused(backend_key, changes: dict[str, object]) -> None:
    tampered = dataclasses.replace(_make(backend_key), **changes)
    lock_id = str(changes.get("lock_id", LOCK))
    assert _reason(bytes(tampered), backend_key, lock_id) is Reason.BAD_SIGNATURE


def test_list_of_max_entries_is_made_and_opened(backend_key) -> None:
    made = _make(backend_key, pass_ids=range(1, MAX_ENTRIES + 1), users=())
    payload = bytes(made)
    assert len(payload) <= MAX_MESSAGE_BYTES
    assert len(_open(payload, backend_key).pass_ids) == MAX_ENTRIES


def test_list_over_max_entries_cannot_be_made(backend_key) -> None:
    with pytest.raises(ValueError, match="at most"):
        _make(backend_key, pass_ids=range(MAX_ENTRIES), users=[("guest9", REMOVED_AT)])


def test_list_the_lock_could_not_read_is_never_made(backend_key) -> None:
    """Removed users with long names: fewer than MAX_ENTRIES, but too big for one message."""
    users = [(f"user-{n:027d}", REMOVED_AT) for n in range(60)]  # 32 characters each
    with pytest.raises(ValueError, match="one message"):
        _make(backend_key, pass_ids=(), users=users)


def _unsigned_list(pass_count: int, users: list[bytes]) -> bytes:
    writer = (
        Writer()
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.REVOCATION_LIST)
        .u32(4)
        .u32(int(NOW))
        .text(LOCK)
    )
    writer.u16(pass_count)
    for n in range(pass_count):
        writer.u32(n)
    writer.u16(len(users))
    for user in users:
        writer.short_bytes(user).u32(REMOVED_AT)
    return writer.long_bytes(b"\x00" * 256).getvalue()


def test_list_with_too_many_entries_is_malformed_before_its_signature_is_checked(
    backend_key,
) -> None:
    assert _reason(_unsigned_list(MAX_ENTRIES + 1, []), backend_key) is Reason.MALFORMED


def test_list_with_a_bad_user_name_is_malformed(backend_key) -> None:
    assert _reason(_unsigned_list(0, [b"Not A User"]), backend_key) is Reason.MALFORMED


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda p: p[:-1], Reason.MALFORMED),
        (lambda p: p + b"\x00", Reason.MALFORMED),
        (lambda p: b"\x01" + p[1:], Reason.WRONG_VERSION),  # the version before this one
        (lambda p: p[:1] + bytes([MessageType.ALERT]) + p[2:], Reason.WRONG_TYPE),
    ],
    ids=["truncated", "trailing", "version", "type"],
)
def test_mangled_list_is_refused(backend_key, mangle, reason: Reason) -> None:
    assert _reason(mangle(bytes(_make(backend_key))), backend_key) is reason


def test_list_with_a_bad_lock_id_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="lock id"):
        RevocationList(1, int(NOW), "Lock 1", (), ())
