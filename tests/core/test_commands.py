"""smartlock.core.commands: remote lock / unlock from the requester to the lock and back."""

from __future__ import annotations

import dataclasses
import json
from typing import cast

import pytest

from smartlock import crypto
from smartlock.core.commands import (
    RECENT_NONCES_MAX,
    CommandKeyDelivery,
    CommandReceiver,
    CommandReply,
    CommandRequest,
    LockCommand,
    command_key,
    make_command_key_delivery,
    make_command_reply,
    open_command_key_delivery,
    open_command_reply,
    seal_lock_command,
)
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import PROTOCOL_VERSION, Action, MessageType, SessionRequest

NOW = 1_800_000_000.0
LOCK = "lock1"
OTHER_LOCK = "lock2"
MASTER = bytes(range(32))
OTHER_MASTER = b"\x07" * 32
EPOCH = 3
WINDOW_S = 30.0
REQUEST_ID = b"\x01" * 16
KEY = command_key(MASTER, LOCK, EPOCH)


def _reason(call, *args, **kwargs) -> Reason:
    with pytest.raises(Rejected) as caught:
        call(*args, **kwargs)
    return caught.value.reason


# --- the request --------------------------------------------------------------------------------


def _request(action: Action = Action.UNLOCK) -> CommandRequest:
    return CommandRequest(request_id=REQUEST_ID, sent_at=int(NOW), lock_id=LOCK, action=action)


@pytest.mark.parametrize("action", list(Action))
def test_command_request_round_trips(action: Action) -> None:
    request = _request(action)
    assert CommandRequest.from_bytes(bytes(request)) == request


def test_command_request_is_not_read_as_a_session_request() -> None:
    payload = bytes(_request())
    assert payload[:2] == bytes([PROTOCOL_VERSION, MessageType.COMMAND_REQUEST])
    assert _reason(SessionRequest.from_bytes, payload) is Reason.WRONG_TYPE


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda p: p[:-1], Reason.MALFORMED),
        (lambda p: p + b"\x00", Reason.MALFORMED),
        (lambda p: p[:-1] + b"\x03", Reason.MALFORMED),  # no such action
        (lambda p: b"\x01" + p[1:], Reason.WRONG_VERSION),  # the version before this one
        (lambda p: p[:1] + bytes([MessageType.SESSION_REQUEST]) + p[2:], Reason.WRONG_TYPE),
    ],
    ids=["truncated", "trailing", "unknown-action", "version", "type"],
)
def test_mangled_command_request_is_refused(mangle, reason: Reason) -> None:
    assert _reason(CommandRequest.from_bytes, mangle(bytes(_request()))) is reason


@pytest.mark.parametrize(
    "changes", [{"request_id": b"\x01" * 15}, {"lock_id": "Lock 1"}], ids=["short-id", "bad-lock"]
)
def test_command_request_with_bad_fields_cannot_be_made(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"ids are 16 bytes|invalid lock id"):
        dataclasses.replace(_request(), **changes)


# --- the command key ----------------------------------------------------------------------------


def test_command_key_is_deterministic_and_32_bytes() -> None:
    assert len(KEY) == 32
    assert command_key(MASTER, LOCK, EPOCH) == KEY


@pytest.mark.parametrize(
    ("master", "lock_id", "epoch"),
    [(OTHER_MASTER, LOCK, EPOCH), (MASTER, OTHER_LOCK, EPOCH), (MASTER, LOCK, EPOCH + 1)],
    ids=["other-master", "other-lock", "next-epoch"],
)
def test_command_key_differs_per_master_lock_and_epoch(
    master: bytes, lock_id: str, epoch: int
) -> None:
    assert command_key(master, lock_id, epoch) != KEY


def test_command_key_needs_a_32_byte_master() -> None:
    with pytest.raises(crypto.CryptoError):
        command_key(MASTER[:31], LOCK, EPOCH)


# --- the command key delivery -------------------------------------------------------------------


def _key_delivery(signer, lock_public, lock_id: str = LOCK) -> CommandKeyDelivery:
    return make_command_key_delivery(
        master=MASTER,
        lock_id=lock_id,
        epoch=EPOCH,
        now=NOW,
        lock_public=lock_public,
        backend_key=signer,
    )


@pytest.fixture
def key_delivery(backend_key, lock_key) -> CommandKeyDelivery:
    return _key_delivery(backend_key, lock_key.public_key())


def _open_key(payload: bytes, backend_key, lock_key, lock_id: str = LOCK) -> tuple[int, bytes]:
    return open_command_key_delivery(
        payload, lock_id=lock_id, lock_key=lock_key, backend_public=backend_key.public_key()
    )


def test_command_key_delivery_gives_the_lock_its_key_of_the_epoch(
    key_delivery, backend_key, lock_key
) -> None:
    assert _open_key(bytes(key_delivery), backend_key, lock_key) == (EPOCH, KEY)
    assert key_delivery.issued_at == int(NOW)


def test_command_key_delivery_round_trips(key_delivery) -> None:
    assert CommandKeyDelivery.from_bytes(bytes(key_delivery)) == key_delivery


def test_command_key_delivery_carries_no_key_in_clear(key_delivery) -> None:
    assert KEY not in bytes(key_delivery)


def test_command_key_delivery_signed_by_another_key_is_refused(
    backend_key, lock_key, other_lock_key
) -> None:
    forged = _key_delivery(other_lock_key, lock_key.public_key())
    assert _reason(_open_key, bytes(forged), backend_key, lock_key) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "changes",
    [{"epoch": EPOCH + 1}, {"issued_at": int(NOW) + 1}, {"lock_id": OTHER_LOCK}],
    ids=["epoch", "issued-at", "lock-id"],
)
def test_command_key_delivery_with_an_altered_field_is_refused(
    key_delivery, backend_key, lock_key, changes: dict[str, object]
) -> None:
    altered = bytes(dataclasses.replace(key_delivery, **changes))
    lock_id = str(changes.get("lock_id", LOCK))
    assert _reason(_open_key, altered, backend_key, lock_key, lock_id) is Reason.BAD_SIGNATURE


def test_command_key_delivery_for_another_lock_is_refused(
    backend_key, lock_key, other_lock_key
) -> None:
    for_other = _key_delivery(backend_key, other_lock_key.public_key(), OTHER_LOCK)
    assert _reason(_open_key, bytes(for_other), backend_key, lock_key) is Reason.WRONG_LOCK


def test_command_key_delivery_encrypted_to_another_lock_is_undecryptable(
    backend_key, lock_key, other_lock_key
) -> None:
    misdirected = _key_delivery(backend_key, other_lock_key.public_key())
    assert _reason(_open_key, bytes(misdirected), backend_key, lock_key) is Reason.UNDECRYPTABLE


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda p: p[:-1], Reason.MALFORMED),
        (lambda p: p + b"\x00", Reason.MALFORMED),
        (lambda p: p[:1] + bytes([MessageType.LOCK_COMMAND]) + p[2:], Reason.WRONG_TYPE),
    ],
    ids=["truncated", "trailing", "type"],
)
def test_mangled_command_key_delivery_is_refused(
    key_delivery, backend_key, lock_key, mangle, reason: Reason
) -> None:
    assert _reason(_open_key, mangle(bytes(key_delivery)), backend_key, lock_key) is reason


# --- the command: sealed by the backend, opened by the lock -------------------------------------


class Counter:
    """Distinct nonces, reproducibly: 1, 2, 3, ... as 12 bytes."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, size: int) -> bytes:
        self.n += 1
        return self.n.to_bytes(size, "big")


def _seal(
    action: Action = Action.UNLOCK,
    *,
    at: float = NOW,
    key: bytes = KEY,
    lock_id: str = LOCK,
    epoch: int = EPOCH,
    random_bytes=None,
) -> bytes:
    payload, _ = seal_lock_command(
        key=key,
        lock_id=lock_id,
        epoch=epoch,
        action=action,
        now=at,
        random_bytes=random_bytes or Counter(),
    )
    return payload


def _receiver(epoch: int = EPOCH, key: bytes = KEY) -> CommandReceiver:
    receiver = CommandReceiver(lock_id=LOCK, window_s=WINDOW_S)
    assert receiver.install(epoch, key)
    return receiver


def test_sealed_command_is_37_bytes() -> None:
    # version 1 + type 1 + epoch 2 + nonce 12 + AES-GCM(issued_at 4 + action 1) 5 + tag 16
    assert len(_seal()) == 1 + 1 + 2 + 12 + 5 + 16 == 37


def test_mqtt_publish_of_a_command_fits_in_108_bytes() -> None:
    """A whole MQTT v5 PUBLISH, QoS 1, of one command on ``locks/lock_01/commands``, as the
    backend sends it: with a message expiry (the command must not outlive its timeout)."""
    topic = b"locks/lock_01/commands"
    payload = _seal()
    properties = 1 + 4  # Message Expiry Interval: identifier 0x02, then a four-byte integer
    variable_header = (
        2
        + len(topic)  # topic name: two-byte length, then the UTF-8 bytes (22)
        + 2  # packet identifier (QoS 1)
        + 1  # properties length: one varint byte (5)
        + properties
    )
    remaining_length = variable_header + len(payload)  # 32 + 37 = 69
    assert remaining_length < 128  # so its varint is one byte
    packet = 1 + 1 + remaining_length  # fixed header: type and flags, remaining length
    assert packet == 71
    assert packet <= 108


def test_sealed_command_opens_with_its_nonce_time_and_action() -> None:
    payload, nonce = seal_lock_command(
        key=KEY,
        lock_id=LOCK,
        epoch=EPOCH,
        action=Action.LOCK,
        now=NOW + 0.7,
        random_bytes=Counter(),
    )
    assert len(nonce) == 12
    assert _receiver().open(payload, NOW + 1) == LockCommand(nonce, int(NOW), Action.LOCK)


def test_install_takes_a_new_epoch_and_ignores_the_same_one_again() -> None:
    receiver = CommandReceiver(lock_id=LOCK, window_s=WINDOW_S)
    assert (receiver.epoch, receiver.key) == (0, None)
    assert receiver.install(EPOCH, KEY) is True
    assert receiver.install(EPOCH, KEY) is False
    assert (receiver.epoch, receiver.key) == (EPOCH, KEY)


def test_install_of_an_older_epoch_is_a_replay() -> None:
    receiver = _receiver()
    older = command_key(MASTER, LOCK, EPOCH - 1)
    assert _reason(receiver.install, EPOCH - 1, older) is Reason.REPLAY
    assert receiver.key == KEY
    assert receiver.open(_seal(), NOW) is not None


def test_command_before_any_key_is_unknown_key() -> None:
    receiver = CommandReceiver(lock_id=LOCK, window_s=WINDOW_S)
    assert _reason(receiver.open, _seal(), NOW) is Reason.UNKNOWN_KEY


@pytest.mark.parametrize("epoch", [EPOCH - 1, EPOCH + 1])
def test_command_of_another_epoch_is_unknown_key(epoch: int) -> None:
    payload = _seal(key=command_key(MASTER, LOCK, epoch), epoch=epoch)
    assert _reason(_receiver().open, payload, NOW) is Reason.UNKNOWN_KEY


def test_command_after_the_key_moved_to_a_new_epoch_is_refused() -> None:
    receiver = _receiver()
    old = _seal()
    receiver.install(EPOCH + 1, command_key(MASTER, LOCK, EPOCH + 1))
    assert _reason(receiver.open, old, NOW) is Reason.UNKNOWN_KEY


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_seal(key=command_key(OTHER_MASTER, LOCK, EPOCH)), id="other-master"),
        pytest.param(_seal(key=command_key(MASTER, OTHER_LOCK, EPOCH)), id="other-lock-key"),
        pytest.param(_seal(lock_id=OTHER_LOCK), id="sealed-for-other-lock"),
    ],
)
def test_command_that_does_not_open_under_the_key_is_bad_mac(payload: bytes) -> None:
    assert _reason(_receiver().open, payload, NOW) is Reason.BAD_MAC


def test_every_flipped_byte_of_a_command_is_refused() -> None:
    payload = _seal()
    expected = (
        [Reason.WRONG_VERSION, Reason.WRONG_TYPE]
        + [Reason.UNKNOWN_KEY] * 2  # epoch
        + [Reason.BAD_MAC] * (12 + 5 + 16)  # nonce, ciphertext, tag
    )
    assert len(expected) == len(payload)
    for index in range(len(payload)):
        flipped = bytearray(payload)
        flipped[index] ^= 0x01
        with pytest.raises(Rejected) as caught:
            _receiver().open(bytes(flipped), NOW)
        assert caught.value.reason is expected[index], f"byte {index}"


def test_truncated_command_is_refused() -> None:
    for size in (2, 4, 16, 36):
        with pytest.raises(Rejected):
            _receiver().open(_seal()[:size], NOW)


def test_command_with_an_unknown_action_is_malformed() -> None:
    payload = _seal(cast(Action, 3))
    assert _reason(_receiver().open, payload, NOW) is Reason.MALFORMED


def test_command_at_the_edges_of_the_window_is_accepted() -> None:
    assert _receiver().open(_seal(at=NOW - WINDOW_S), NOW) is not None
    assert _receiver().open(_seal(at=NOW + WINDOW_S), NOW) is not None


def test_command_older_than_the_window_is_stale() -> None:
    assert _reason(_receiver().open, _seal(at=NOW - WINDOW_S - 1), NOW) is Reason.STALE


def test_command_from_beyond_the_window_ahead_is_not_yet_valid() -> None:
    assert _reason(_receiver().open, _seal(at=NOW + WINDOW_S + 1), NOW) is Reason.NOT_YET_VALID


def test_command_is_executed_once() -> None:
    receiver = _receiver()
    payload = _seal()
    assert receiver.open(payload, NOW) is not None
    assert _reason(receiver.open, payload, NOW + 1) is Reason.REPLAY


def test_commands_with_distinct_nonces_are_each_executed() -> None:
    receiver, nonces = _receiver(), Counter()
    first, second = _seal(random_bytes=nonces), _seal(random_bytes=nonces)
    assert receiver.open(first, NOW).nonce != receiver.open(second, NOW).nonce


def test_refused_command_does_not_use_up_its_nonce() -> None:
    receiver = _receiver()
    payload = _seal(at=NOW)
    assert _reason(receiver.open, payload, NOW + WINDOW_S + 1) is Reason.STALE
    assert receiver.open(payload, NOW) is not None


def _remembered(receiver: CommandReceiver) -> list[str]:
    return [nonce for nonce, _ in cast(list[list[object]], receiver.snapshot()["nonces"])]


def test_nonces_are_remembered_for_twice_the_window_then_forgotten() -> None:
    receiver, nonces = _receiver(), Counter()
    receiver.open(_seal(random_bytes=nonces), NOW)
    first = _remembered(receiver)
    receiver.open(_seal(at=NOW + 2 * WINDOW_S, random_bytes=nonces), NOW + 2 * WINDOW_S)
    assert _remembered(receiver)[:1] == first  # the edge is inside
    receiver.open(_seal(at=NOW + 2 * WINDOW_S + 1, random_bytes=nonces), NOW + 2 * WINDOW_S + 1)
    assert first[0] not in _remembered(receiver)
    assert len(_remembered(receiver)) == 2


def test_a_command_is_stale_before_its_nonce_is_forgotten() -> None:
    """Whatever the timing, a command is stale before the lock forgets its nonce."""
    for issued_offset in (-WINDOW_S, 0.0, WINDOW_S):
        receiver, nonces = _receiver(), Counter()
        payload = _seal(at=NOW + issued_offset, random_bytes=nonces)
        receiver.open(payload, NOW)
        for later in (2 * WINDOW_S, 2 * WINDOW_S + 1, 10 * WINDOW_S):
            receiver.open(_seal(at=NOW + later, random_bytes=nonces), NOW + later)
            assert _reason(receiver.open, payload, NOW + later) in {Reason.REPLAY, Reason.STALE}


def test_nonce_memory_is_bounded() -> None:
    receiver, nonces = _receiver(), Counter()
    for _ in range(RECENT_NONCES_MAX + 10):
        receiver.open(_seal(random_bytes=nonces), NOW)
    remembered = _remembered(receiver)
    assert len(remembered) == RECENT_NONCES_MAX
    assert (11).to_bytes(12, "big").hex() == remembered[0]  # the oldest went first


def test_new_epoch_forgets_the_nonces_of_the_old_one() -> None:
    receiver = _receiver()
    receiver.open(_seal(), NOW)
    receiver.install(EPOCH + 1, command_key(MASTER, LOCK, EPOCH + 1))
    assert _remembered(receiver) == []


def test_snapshot_restores_key_epoch_and_nonces() -> None:
    receiver, nonces = _receiver(), Counter()
    payload = _seal(random_bytes=nonces)
    receiver.open(payload, NOW)
    receiver.open(_seal(random_bytes=nonces), NOW)
    snapshot = json.loads(json.dumps(receiver.snapshot()))  # as it is kept on disk
    restarted = CommandReceiver(lock_id=LOCK, window_s=WINDOW_S)
    restarted.restore(snapshot)
    assert (restarted.epoch, restarted.key) == (EPOCH, KEY)
    assert restarted.snapshot() == receiver.snapshot()
    assert _reason(restarted.open, payload, NOW + 1) is Reason.REPLAY


def test_snapshot_without_a_key_restores() -> None:
    restarted = _receiver()
    restarted.restore(CommandReceiver(lock_id=LOCK, window_s=WINDOW_S).snapshot())
    assert (restarted.epoch, restarted.key) == (0, None)


def _valid_state() -> dict[str, object]:
    return {"epoch": EPOCH, "key": KEY.hex(), "nonces": [["00" * 12, NOW]]}


def _damaged(**changes: object) -> dict[str, object]:
    return {**_valid_state(), **changes}


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(None, id="null"),
        pytest.param([], id="list"),
        pytest.param("state", id="text"),
        pytest.param({}, id="empty"),
        pytest.param({"key": None, "nonces": []}, id="no-epoch"),
        pytest.param(_damaged(epoch="three"), id="epoch-text"),
        pytest.param(_damaged(epoch=None), id="epoch-null"),
        pytest.param(_damaged(epoch=-1), id="epoch-negative"),
        pytest.param(_damaged(epoch=0x10000), id="epoch-beyond-u16"),
        pytest.param(_damaged(key="zz"), id="key-not-hex"),
        pytest.param(_damaged(key="00" * 31), id="key-short"),
        pytest.param(_damaged(key=5), id="key-number"),
        pytest.param(_damaged(nonces=None), id="nonces-null"),
        pytest.param(_damaged(nonces=[["zz", NOW]]), id="nonce-not-hex"),
        pytest.param(_damaged(nonces=[["00" * 12]]), id="nonce-without-time"),
        pytest.param(_damaged(nonces=[["00" * 12, "soon"]]), id="nonce-time-text"),
        pytest.param(_damaged(nonces=[["00" * 12, None]]), id="nonce-time-null"),
    ],
)
def test_restore_of_garbage_is_a_value_error_and_keeps_the_state(garbage: object) -> None:
    receiver = _receiver()
    receiver.open(_seal(), NOW)
    before = receiver.snapshot()
    with pytest.raises(ValueError, match="command"):
        receiver.restore(garbage)
    assert receiver.snapshot() == before


def test_valid_state_fixture_restores() -> None:
    # guards the garbage above: each differs from a restorable state only by its defect
    receiver = CommandReceiver(lock_id=LOCK, window_s=WINDOW_S)
    receiver.restore(_valid_state())
    assert receiver.key == KEY


@pytest.mark.parametrize("window_s", [0.0, -1.0])
def test_receiver_needs_a_positive_window(window_s: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        CommandReceiver(lock_id=LOCK, window_s=window_s)


# --- the reply ------------------------------------------------------------------------------------


def _reply(backend_key, **changes: str) -> CommandReply:
    fields = {"result": "done", "reason": "", "bolt": "unlocked", **changes}
    return make_command_reply(request=_request(), now=NOW + 2, backend_key=backend_key, **fields)


def test_command_reply_opens_with_every_field(backend_key) -> None:
    reply = _reply(backend_key)
    opened = open_command_reply(bytes(reply), backend_public=backend_key.public_key())
    assert opened == reply
    assert (opened.request_id, opened.at, opened.lock_id, opened.action) == (
        REQUEST_ID,
        int(NOW) + 2,
        LOCK,
        Action.UNLOCK,
    )
    assert (opened.result, opened.reason, opened.bolt) == ("done", "", "unlocked")


def test_denied_command_reply_carries_its_reason(backend_key) -> None:
    reply = _reply(backend_key, result="denied", reason="role_not_allowed", bolt="unknown")
    opened = open_command_reply(bytes(reply), backend_public=backend_key.public_key())
    assert (opened.result, opened.reason) == ("denied", "role_not_allowed")


def test_command_reply_signed_by_another_key_is_refused(backend_key, lock_key) -> None:
    forged = _reply(lock_key)
    assert (
        _reason(open_command_reply, bytes(forged), backend_public=backend_key.public_key())
        is Reason.BAD_SIGNATURE
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"result": "denied"},
        {"reason": "stale"},
        {"bolt": "locked"},
        {"action": Action.LOCK},
        {"request_id": b"\x02" * 16},
        {"at": int(NOW) + 3},
        {"lock_id": OTHER_LOCK},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_command_reply_with_an_altered_field_is_refused(
    backend_key, changes: dict[str, object]
) -> None:
    altered = dataclasses.replace(_reply(backend_key), **changes)
    assert (
        _reason(open_command_reply, bytes(altered), backend_public=backend_key.public_key())
        is Reason.BAD_SIGNATURE
    )


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda p: p[:-1], Reason.MALFORMED),
        (lambda p: p + b"\x00", Reason.MALFORMED),
        (lambda p: p[:1] + bytes([MessageType.COMMAND_REQUEST]) + p[2:], Reason.WRONG_TYPE),
    ],
    ids=["truncated", "trailing", "type"],
)
def test_mangled_command_reply_is_refused(backend_key, mangle, reason: Reason) -> None:
    payload = mangle(bytes(_reply(backend_key)))
    assert _reason(open_command_reply, payload, backend_public=backend_key.public_key()) is reason


# --- a rotation of the lock's key: the overlap --------------------------------------------------


@pytest.fixture(scope="module")
def rotated_key() -> crypto.PrivateKey:
    """The lock's new key after ``smartlock rotate lock-key``; ``lock_key`` is the previous one."""
    return crypto.generate_private_key()


@pytest.fixture
def decryptions(monkeypatch: pytest.MonkeyPatch) -> list[crypto.PrivateKey]:
    """The lock keys a command key delivery was decrypted with, in order."""
    tried: list[crypto.PrivateKey] = []
    real = crypto.decrypt_with

    def _decrypt(key: crypto.PrivateKey, ciphertext: bytes) -> bytes:
        tried.append(key)
        return real(key, ciphertext)

    monkeypatch.setattr(crypto, "decrypt_with", _decrypt)
    return tried


def _open_rotated(payload: bytes, backend_key, rotated_key, previous=()) -> tuple[int, bytes]:
    return open_command_key_delivery(
        payload,
        lock_id=LOCK,
        lock_key=rotated_key,
        backend_public=backend_key.public_key(),
        previous_lock_keys=previous,
    )


def test_command_key_sealed_for_the_previous_key_opens_during_the_overlap(
    key_delivery, backend_key, lock_key, rotated_key
) -> None:
    # key_delivery is sealed for lock_key: retained on the broker from before the rotation
    opened = _open_rotated(bytes(key_delivery), backend_key, rotated_key, (lock_key,))
    assert opened == (EPOCH, KEY)


def test_command_key_sealed_for_the_previous_key_is_undecryptable_once_the_overlap_is_over(
    key_delivery, backend_key, rotated_key
) -> None:
    reason = _reason(_open_rotated, bytes(key_delivery), backend_key, rotated_key)
    assert reason is Reason.UNDECRYPTABLE


def test_command_key_sealed_for_the_new_key_opens_at_the_first_try(
    backend_key, lock_key, rotated_key, decryptions
) -> None:
    republished = _key_delivery(backend_key, rotated_key.public_key())
    assert _open_rotated(bytes(republished), backend_key, rotated_key) == (EPOCH, KEY)
    assert _open_rotated(bytes(republished), backend_key, rotated_key, (lock_key,)) == (EPOCH, KEY)
    assert decryptions == [rotated_key, rotated_key]


def test_command_key_sealed_for_no_key_of_the_lock_is_undecryptable_during_the_overlap(
    backend_key, lock_key, rotated_key, other_lock_key, decryptions
) -> None:
    misdirected = _key_delivery(backend_key, other_lock_key.public_key())
    reason = _reason(_open_rotated, bytes(misdirected), backend_key, rotated_key, (lock_key,))
    assert reason is Reason.UNDECRYPTABLE
    assert decryptions == [rotated_key, lock_key]


def test_command_key_with_a_bad_signature_is_refused_without_trying_any_key(
    backend_key, lock_key, rotated_key, other_lock_key, decryptions
) -> None:
    forged = _key_delivery(other_lock_key, lock_key.public_key())  # sealed for the previous key
    reason = _reason(_open_rotated, bytes(forged), backend_key, rotated_key, (lock_key,))
    assert reason is Reason.BAD_SIGNATURE
    assert decryptions == []


def test_command_key_for_another_lock_is_refused_without_trying_any_key(
    backend_key, lock_key, rotated_key, other_lock_key, decryptions
) -> None:
    for_other = _key_delivery(backend_key, lock_key.public_key(), OTHER_LOCK)
    reason = _reason(_open_rotated, bytes(for_other), backend_key, rotated_key, (lock_key,))
    assert reason is Reason.WRONG_LOCK
    assert decryptions == []
