"""Fuzzes remote commands (smartlock.core.commands): ``CommandRequest.from_bytes``,
``CommandKeyDelivery`` / ``open_command_key_delivery``, ``CommandReply`` / ``open_command_reply``,
the lock's ``CommandReceiver.open`` fed sealed commands, and ``CommandReceiver.restore``.

Rules: any bytes decode to a message that re-encodes to exactly them, or are refused with
``Rejected``; the genuine signed (or AES-GCM sealed) message opens and every mutation of it is
refused with ``Rejected``; ``restore`` raises only ``ValueError``, and a state it accepts never
makes ``open`` raise anything but ``Rejected``; valid values round-trip.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from fuzz_support import (
    LOCK_ID,
    NOW,
    DeterministicRandom,
    actions,
    assert_mutation_refused,
    decoded_or_refused,
    edited_json,
    finite_times,
    identifiers,
    ids,
    json_values,
    mutations,
    short_texts,
    u16,
    u32,
)
from hypothesis import example, given
from hypothesis import strategies as st

from smartlock import crypto
from smartlock.core.commands import (
    CommandKeyDelivery,
    CommandReceiver,
    CommandReply,
    CommandRequest,
    command_key,
    make_command_key_delivery,
    make_command_reply,
    open_command_key_delivery,
    open_command_reply,
    seal_lock_command,
)
from smartlock.core.errors import Rejected
from smartlock.core.messages import PROTOCOL_VERSION, Action, MessageType

MASTER = bytes(range(32))
EPOCH = 3
WINDOW_S = 30.0
KEY = command_key(MASTER, LOCK_ID, EPOCH)
REQUEST = CommandRequest(
    request_id=bytes(16), sent_at=int(NOW), lock_id=LOCK_ID, action=Action.UNLOCK
)

MESSAGES: dict[type[Any], st.SearchStrategy[Any]] = {
    CommandRequest: st.builds(CommandRequest, ids, u32, identifiers, actions),
    CommandKeyDelivery: st.builds(
        CommandKeyDelivery, identifiers, u16, u32, st.binary(max_size=300), st.binary(max_size=300)
    ),
    CommandReply: st.builds(
        CommandReply,
        ids,
        u32,
        identifiers,
        actions,
        short_texts,
        short_texts,
        short_texts,
        st.binary(max_size=300),
    ),
}
codecs = pytest.mark.parametrize("codec", list(MESSAGES), ids=lambda codec: codec.__name__)


@codecs
@given(data=st.data())
def test_every_command_message_round_trips(codec: type[Any], data: st.DataObject) -> None:
    message = data.draw(MESSAGES[codec], label="message")
    assert codec.from_bytes(bytes(message)) == message


@codecs
@given(data=st.data(), mutation=mutations())
def test_a_mutated_command_message_decodes_to_exactly_its_bytes_or_is_refused(
    codec: type[Any], data: st.DataObject, mutation
) -> None:
    payload = mutation.apply(bytes(data.draw(MESSAGES[codec], label="message")))
    decoded = decoded_or_refused(codec.from_bytes, payload)
    if decoded is not None:
        assert bytes(decoded) == payload


# --- signed messages: the command key delivery and the reply -------------------------------------


@pytest.fixture(scope="module")
def open_key_delivery(
    backend_key: crypto.PrivateKey, lock_key: crypto.PrivateKey
) -> Callable[[bytes], object]:
    return lambda payload: open_command_key_delivery(
        payload, lock_id=LOCK_ID, lock_key=lock_key, backend_public=backend_key.public_key()
    )


@pytest.fixture(scope="module")
def key_delivery(backend_key: crypto.PrivateKey, lock_key: crypto.PrivateKey) -> bytes:
    made = make_command_key_delivery(
        master=MASTER,
        lock_id=LOCK_ID,
        epoch=EPOCH,
        now=NOW,
        lock_public=lock_key.public_key(),
        backend_key=backend_key,
    )
    return bytes(made)


@given(mutations())
def test_a_mutated_command_key_delivery_is_always_refused(
    open_key_delivery: Callable[[bytes], object], key_delivery: bytes, mutation
) -> None:
    assert_mutation_refused(open_key_delivery, key_delivery, mutation)


@given(mutations())
def test_a_mutated_command_reply_is_always_refused(
    backend_key: crypto.PrivateKey, mutation
) -> None:
    reply = make_command_reply(
        request=REQUEST, result="done", reason="", bolt="unlocked", now=NOW, backend_key=backend_key
    )
    assert_mutation_refused(
        lambda payload: open_command_reply(payload, backend_public=backend_key.public_key()),
        bytes(reply),
        mutation,
    )


# --- the lock's receiver -------------------------------------------------------------------------


def _receiver() -> CommandReceiver:
    receiver = CommandReceiver(lock_id=LOCK_ID, window_s=WINDOW_S)
    receiver.install(EPOCH, KEY)
    return receiver


COMMAND, _ = seal_lock_command(
    key=KEY,
    lock_id=LOCK_ID,
    epoch=EPOCH,
    action=Action.UNLOCK,
    now=NOW,
    random_bytes=DeterministicRandom(),
)


@given(mutations())
def test_a_mutated_lock_command_is_always_refused(mutation) -> None:
    receiver = _receiver()
    assert_mutation_refused(lambda payload: receiver.open(payload, NOW), COMMAND, mutation)


@given(
    st.binary(max_size=80)
    | st.binary(max_size=80).map(bytes([PROTOCOL_VERSION, MessageType.LOCK_COMMAND]).__add__)
)
def test_any_bytes_offered_as_a_lock_command_are_refused(payload: bytes) -> None:
    with pytest.raises(Rejected):
        _receiver().open(payload, NOW)


# --- the receiver's durable state ----------------------------------------------------------------

STATE = {"epoch": EPOCH, "key": KEY.hex(), "nonces": [[bytes(12).hex(), NOW - 5]]}


@given(
    st.one_of(edited_json(STATE), json_values),
)
# Regressions: int(Infinity) and float() of a huge integer raised OverflowError out of
# restore (the lock agent turns only ValueError, KeyError and TypeError into a clean error).
@example(document={"epoch": math.inf, "key": None, "nonces": []})
@example(document={"epoch": 1, "key": None, "nonces": [["00", 10**400]]})
def test_a_damaged_command_state_is_refused_or_never_makes_the_receiver_fail(
    document: Any,
) -> None:
    receiver = _receiver()
    try:
        receiver.restore(document)
    except ValueError:
        return
    for payload in (COMMAND, COMMAND[:-1]):
        decoded_or_refused(lambda p: receiver.open(p, NOW), payload)
    again = CommandReceiver(lock_id=LOCK_ID, window_s=WINDOW_S)
    again.restore(receiver.snapshot())
    assert again.snapshot() == receiver.snapshot()


@given(
    st.fixed_dictionaries(
        {
            "epoch": u16,
            "key": st.none() | st.binary(min_size=32, max_size=32).map(bytes.hex),
            "nonces": st.dictionaries(
                st.binary(min_size=12, max_size=12).map(bytes.hex), finite_times, max_size=4
            ).map(lambda nonces: [[n, at] for n, at in nonces.items()]),
        }
    )
)
def test_valid_command_states_round_trip(state: dict[str, Any]) -> None:
    receiver = CommandReceiver(lock_id=LOCK_ID, window_s=WINDOW_S)
    receiver.restore(state)
    assert receiver.snapshot() == state
