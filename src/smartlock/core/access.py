"""Access events: the lock's signed record that it drove the bolt, and the guest's proof of it.

The lock signs each event (RSA-PSS, its own key) so the backend can audit it, and puts in it an
``ack_tag`` -- a MAC under the session key -- that only the guest holding that key can check.
The backend forwards the event unchanged to the guest, who thereby learns that the lock acted:
only the lock and the backend (which made the key) can compute the tag, never the broker or
another client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.issuance import SessionKey
from smartlock.core.lock_verifier import AccessGranted
from smartlock.core.messages import ID_BYTES, AccessEvent, Outcome

ACCESS_ACK_LABEL = b"smartlock/v1/access-ack"


def make_access_event(
    grant: AccessGranted,
    *,
    lock_key: crypto.PrivateKey,
    now: float,
    random_bytes: Callable[[int], bytes],
) -> AccessEvent:
    header = grant.key.header
    outcome = Outcome.GRANTED
    ack_tag = crypto.mac(
        grant.key.secret,
        ACCESS_ACK_LABEL,
        AccessEvent.ack_input(header.lock_id, header.key_id, grant.counter, grant.action, outcome),
    )
    unsigned = AccessEvent(
        random_bytes(ID_BYTES),
        int(now),
        header.lock_id,
        header.guest_id,
        header.key_id,
        header.pass_id,
        grant.counter,
        grant.action,
        outcome,
        ack_tag,
        b"",
    )
    return dataclasses.replace(unsigned, signature=crypto.sign(lock_key, unsigned.signed_bytes()))


def open_access_event(
    payload: bytes,
    *,
    lock_id: str,
    lock_public: crypto.PublicKey,
    previous_lock_publics: Sequence[crypto.PublicKey] = (),
) -> AccessEvent:
    """Verify an event published by ``lock_id`` (the broker's ACL proves which lock published).
    During a rotation of the lock's key, an event signed with the previous key (kept on the
    lock while it was offline) still verifies."""
    event_unverified = AccessEvent.from_bytes(payload)
    signed = event_unverified.signed_bytes()
    if not any(
        crypto.signature_is_valid(key, event_unverified.signature, signed)
        for key in (lock_public, *previous_lock_publics)
    ):
        raise Rejected(Reason.BAD_SIGNATURE, f"access event not signed by {lock_id}")
    if event_unverified.lock_id != lock_id:
        raise Rejected(Reason.WRONG_LOCK, f"event names {event_unverified.lock_id}")
    return event_unverified


def access_ack_is_valid(event: AccessEvent, key: SessionKey) -> bool:
    """The guest's check that the lock itself acted on a token made with ``key``."""
    header = key.header
    if event.lock_id != header.lock_id or event.key_id != header.key_id:
        return False
    return crypto.mac_is_valid(
        key.secret,
        ACCESS_ACK_LABEL,
        AccessEvent.ack_input(
            event.lock_id, event.key_id, event.counter, event.action, event.outcome
        ),
        event.ack_tag,
    )
