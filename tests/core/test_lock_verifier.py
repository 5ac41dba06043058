"""smartlock.core.lock_verifier: deliveries once, tokens once and increasing, state survives."""

from __future__ import annotations

import dataclasses
import json

import pytest

from smartlock.core.errors import Reason, Rejected
from smartlock.core.intrusion import IntrusionDetector
from smartlock.core.issuance import SessionKey
from smartlock.core.lock_verifier import (
    COUNTED_FAILURES,
    KEEP_EXPIRED_KEYS_S,
    LOCK_SUBJECT,
    MAX_KEYS_PER_GUEST,
    USE_MERGE_S,
    AccessGranted,
    KeyInstalled,
    LockVerifier,
)
from smartlock.core.messages import NO_PASS, UNLIMITED_USES, Action
from smartlock.core.revocation import RevocationList
from smartlock.core.token import advertising_data, make_token, token_is_valid, token_slot

NOW = 1_800_000_000.0
LOCK = "lock1"
OTHER_LOCK = "lock2"
TTL_S = 300


def _ad(key: SessionKey, counter: int, action: Action = Action.UNLOCK) -> bytes:
    return advertising_data(make_token(key, counter, action))


def _reason(call, *args) -> Reason:
    with pytest.raises(Rejected) as caught:
        call(*args)
    return caught.value.reason


@pytest.fixture
def issued(issue):
    return issue(ttl_s=TTL_S)


@pytest.fixture
def verifier(make_verifier) -> LockVerifier:
    return make_verifier()


@pytest.fixture
def key(verifier: LockVerifier, issued) -> SessionKey:
    """A key installed in ``verifier`` through a real delivery."""
    installed = verifier.accept_delivery(issued.lock_payload, NOW)
    return installed.key


# --- deliveries ---------------------------------------------------------------------------------


def test_delivery_is_accepted_and_installs_the_key(verifier, issued) -> None:
    installed = verifier.accept_delivery(issued.lock_payload, NOW)
    assert installed == KeyInstalled(issued.issuance.key)
    assert verifier.active_keys(NOW) == [issued.issuance.key]


def test_replayed_delivery_is_rejected(verifier, issued) -> None:
    verifier.accept_delivery(issued.lock_payload, NOW)
    assert _reason(verifier.accept_delivery, issued.lock_payload, NOW + 1) is Reason.REPLAY


def test_replayed_delivery_after_restart_is_rejected(verifier, issued, make_verifier) -> None:
    verifier.accept_delivery(issued.lock_payload, NOW)
    restarted = make_verifier()
    restarted.restore(verifier.snapshot())
    assert _reason(restarted.accept_delivery, issued.lock_payload, NOW + 1) is Reason.REPLAY


def test_delivery_for_another_lock_is_rejected(verifier, issue) -> None:
    issued = issue(lock_id=OTHER_LOCK)
    assert _reason(verifier.accept_delivery, issued.lock_payload, NOW) is Reason.WRONG_LOCK
    assert verifier.active_keys(NOW) == []


def test_refused_delivery_installs_nothing(verifier, issued) -> None:
    assert _reason(verifier.accept_delivery, issued.lock_payload, NOW + TTL_S) is Reason.EXPIRED
    assert verifier.active_keys(NOW) == []
    token = issued.issuance.key
    assert _reason(verifier.check_advertisement, _ad(token, 1), NOW) is Reason.UNKNOWN_KEY


def test_several_keys_are_held_side_by_side(verifier, issue) -> None:
    first, second = issue(), issue(guest_id="guest2")
    verifier.accept_delivery(first.lock_payload, NOW)
    verifier.accept_delivery(second.lock_payload, NOW)
    assert len(verifier.active_keys(NOW)) == 2
    a, b = first.issuance.key, second.issuance.key
    assert verifier.check_advertisement(_ad(a, 5), NOW) == AccessGranted(a, 5, Action.UNLOCK)
    # counters are per key: b's counter 1 is still fresh
    assert verifier.check_advertisement(_ad(b, 1), NOW) == AccessGranted(b, 1, Action.UNLOCK)


# --- tokens -------------------------------------------------------------------------------------


def test_token_is_accepted_once(verifier, key) -> None:
    grant = verifier.check_advertisement(_ad(key, 1), NOW)
    assert grant == AccessGranted(key, 1, Action.UNLOCK)


def test_lock_action_is_reported(verifier, key) -> None:
    grant = verifier.check_advertisement(_ad(key, 1, Action.LOCK), NOW)
    assert grant == AccessGranted(key, 1, Action.LOCK)


@pytest.mark.parametrize("later_s", [0.0, 0.5, 2.9, 3.0])
def test_identical_advertisement_within_duplicate_window_is_ignored(
    verifier, key, later_s: float
) -> None:
    ad = _ad(key, 1)
    assert verifier.check_advertisement(ad, NOW) is not None
    assert verifier.check_advertisement(ad, NOW + later_s) is None


def test_advertisement_repeated_continuously_unlocks_once(verifier, key) -> None:
    # a frame is evaluated at most once per 3 s window: one grant, then one replay per window
    ad = _ad(key, 1)
    outcomes = []
    for i in range(100):  # every 0.1 s for 10 s
        try:
            outcomes.append(verifier.check_advertisement(ad, NOW + 0.1 * i))
        except Rejected as refusal:
            outcomes.append(refusal.reason)
    assert outcomes[0] == AccessGranted(key, 1, Action.UNLOCK)
    assert sum(isinstance(o, AccessGranted) for o in outcomes) == 1
    assert outcomes.count(Reason.REPLAY) == 3  # at 3.1 s, 6.2 s and 9.3 s
    assert outcomes.count(None) == 96


def test_same_advertisement_after_duplicate_window_is_replay(verifier, key) -> None:
    ad = _ad(key, 1)
    verifier.check_advertisement(ad, NOW)
    assert _reason(verifier.check_advertisement, ad, NOW + 3.5) is Reason.REPLAY
    # the replay is reported once per window, not on every repeat
    assert verifier.check_advertisement(ad, NOW + 4.0) is None
    assert _reason(verifier.check_advertisement, ad, NOW + 7.0) is Reason.REPLAY


def test_same_advertisement_seen_with_clock_gone_back_is_replay(verifier, key) -> None:
    ad = _ad(key, 1)
    verifier.check_advertisement(ad, NOW)
    assert _reason(verifier.check_advertisement, ad, NOW - 1) is Reason.REPLAY


def test_refused_advertisement_is_not_evaluated_again_within_the_window(verifier, key) -> None:
    forged = _ad(SessionKey(key.header, b"\x00" * 32), 1)
    assert _reason(verifier.check_advertisement, forged, NOW) is Reason.BAD_MAC
    assert verifier.check_advertisement(forged, NOW + 1) is None
    assert _reason(verifier.check_advertisement, forged, NOW + 4) is Reason.BAD_MAC


def test_duplicate_window_is_configurable(make_verifier, issued) -> None:
    verifier = make_verifier(duplicate_window_s=10.0)
    key = verifier.accept_delivery(issued.lock_payload, NOW).key
    ad = _ad(key, 1)
    verifier.check_advertisement(ad, NOW)
    assert verifier.check_advertisement(ad, NOW + 9) is None
    assert _reason(verifier.check_advertisement, ad, NOW + 20) is Reason.REPLAY


@pytest.mark.parametrize(
    ("counter", "action"), [(5, Action.LOCK), (4, Action.UNLOCK), (1, Action.UNLOCK)]
)
def test_lower_or_equal_counter_is_replay(verifier, key, counter: int, action: Action) -> None:
    verifier.check_advertisement(_ad(key, 5), NOW)
    assert _reason(verifier.check_advertisement, _ad(key, counter, action), NOW) is Reason.REPLAY


def test_higher_counter_is_accepted(verifier, key) -> None:
    assert verifier.check_advertisement(_ad(key, 5), NOW) is not None
    grant = verifier.check_advertisement(_ad(key, 6), NOW + 1)
    assert grant == AccessGranted(key, 6, Action.UNLOCK)
    later = NOW + TTL_S - 10
    slot = token_slot(key.header.issued_at, later)
    grant = verifier.check_advertisement(_ad(key, slot), later)
    assert grant == AccessGranted(key, slot, Action.UNLOCK)


def test_token_replayed_after_restart_is_rejected(verifier, key, make_verifier) -> None:
    ad = _ad(key, 1)
    verifier.check_advertisement(ad, NOW)
    restarted = make_verifier()
    restarted.restore(verifier.snapshot())
    # even within what would have been the duplicate window: a restart forgets the window
    assert _reason(restarted.check_advertisement, ad, NOW + 0.5) is Reason.REPLAY
    assert _reason(restarted.check_advertisement, _ad(key, 1, Action.LOCK), NOW) is Reason.REPLAY


def test_restored_verifier_accepts_the_next_counter(verifier, key, make_verifier) -> None:
    verifier.check_advertisement(_ad(key, 3), NOW)
    restarted = make_verifier()
    restarted.restore(verifier.snapshot())
    assert restarted.active_keys(NOW) == [key]
    assert restarted.check_advertisement(_ad(key, 4), NOW) == AccessGranted(key, 4, Action.UNLOCK)


def test_token_under_same_key_made_for_another_lock_is_bad_mac(verifier, key) -> None:
    # the same key id and secret, but a token computed for lock2
    key_for_other_lock = SessionKey(dataclasses.replace(key.header, lock_id=OTHER_LOCK), key.secret)
    frame = make_token(key_for_other_lock, 1)
    assert token_is_valid(frame, key_for_other_lock, OTHER_LOCK)
    assert not token_is_valid(frame, key_for_other_lock, LOCK)
    assert _reason(verifier.check_advertisement, advertising_data(frame), NOW) is Reason.BAD_MAC


def test_token_under_a_forged_secret_is_bad_mac(verifier, key) -> None:
    forged = SessionKey(key.header, b"\x00" * 32)
    assert _reason(verifier.check_advertisement, _ad(forged, 1), NOW) is Reason.BAD_MAC


def test_refused_token_does_not_advance_the_counter(verifier, key) -> None:
    forged = SessionKey(key.header, b"\x00" * 32)
    assert _reason(verifier.check_advertisement, _ad(forged, 60_000), NOW) is Reason.BAD_MAC
    assert verifier.check_advertisement(_ad(key, 2), NOW) is not None


def _timely_ad(key, at: float) -> bytes:
    return _ad(key, token_slot(key.header.issued_at, at))


def test_token_after_expiry_is_rejected(verifier, key) -> None:
    last_second = NOW + TTL_S - 1
    assert verifier.check_advertisement(_timely_ad(key, last_second), last_second) is not None
    expired = NOW + TTL_S
    assert _reason(verifier.check_advertisement, _timely_ad(key, expired + 2), expired) is (
        Reason.EXPIRED
    )
    assert _reason(verifier.check_advertisement, _ad(key, 3), NOW + TTL_S + 3000) is Reason.EXPIRED


def test_token_sniffed_but_never_heard_is_dead_after_the_token_window(verifier, key) -> None:
    """The guest advertised token 1 out of the lock's range; an attacker replays it later."""
    unheard = _ad(key, token_slot(key.header.issued_at, NOW))
    later = NOW + 120
    assert _reason(verifier.check_advertisement, unheard, later) is Reason.STALE


def test_token_from_too_far_in_the_future_is_stale(verifier, key) -> None:
    ahead = token_slot(key.header.issued_at, NOW) + 16  # 32 s ahead, window is 30 s
    assert _reason(verifier.check_advertisement, _ad(key, ahead), NOW) is Reason.STALE


def test_token_within_the_clock_window_is_accepted(verifier, key) -> None:
    assert verifier.check_advertisement(_ad(key, 15), NOW) is not None  # 28 s ahead


def test_token_under_unknown_key_is_rejected(verifier, key, issue) -> None:
    never_delivered = issue().issuance.key
    assert never_delivered.key_id[:4] != key.key_id[:4]
    assert _reason(verifier.check_advertisement, _ad(never_delivered, 1), NOW) is Reason.UNKNOWN_KEY


def test_every_single_bit_flip_of_the_token_is_rejected(verifier, key) -> None:
    frame = bytes(make_token(key, 7))
    prefix = _ad(key, 7)[: -len(frame)]
    expected = (
        [Reason.WRONG_VERSION]  # version
        + [Reason.MALFORMED]  # action: 1 flips to 0, 3, 5, 9, ... never to 2
        + [Reason.UNKNOWN_KEY] * 4  # key handle
        + [Reason.BAD_MAC] * 2  # counter is inside the MAC
        + [Reason.BAD_MAC] * 16  # tag
    )
    assert len(frame) == len(expected) == 24
    for bit in range(8 * len(frame)):
        flipped = bytearray(frame)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(Rejected) as caught:
            verifier.check_advertisement(prefix + bytes(flipped), NOW)
        assert caught.value.reason is expected[bit // 8], f"bit {bit}"
    # none of them consumed the counter: the genuine token still opens
    assert verifier.check_advertisement(prefix + frame, NOW) == AccessGranted(key, 7, Action.UNLOCK)


def test_truncated_mac_is_malformed(verifier, key) -> None:
    frame = bytes(make_token(key, 1))
    for size in (8, 23):
        ad = _ad(key, 1)[: -len(frame)] + frame[:size]
        ad = ad[:3] + bytes([ad[3] - (len(frame) - size)]) + ad[4:]  # keep the AD length honest
        assert _reason(verifier.check_advertisement, ad, NOW) is Reason.MALFORMED


def test_advertising_data_over_31_bytes_is_oversized(verifier, key) -> None:
    ad = _ad(key, 1) + b"\x00"
    assert _reason(verifier.check_advertisement, ad, NOW) is Reason.OVERSIZED


def test_ad_structure_overrun_is_malformed(verifier, key) -> None:
    ad = _ad(key, 1)[:-1]
    assert _reason(verifier.check_advertisement, ad, NOW) is Reason.MALFORMED


def test_advertisement_without_our_company_id_is_ignored(verifier, key) -> None:
    ad = bytearray(_ad(key, 1))
    ad[5:7] = (0x004C).to_bytes(2, "little")
    assert verifier.check_advertisement(bytes(ad), NOW) is None
    assert verifier.check_advertisement(b"\x02\x01\x06", NOW) is None
    # and it did not consume anything
    assert verifier.check_advertisement(_ad(key, 1), NOW) is not None


# --- state: snapshot, restore, prune -----------------------------------------------------------


def test_snapshot_names_this_lock_and_is_refused_by_another(verifier, key, make_verifier) -> None:
    verifier.check_advertisement(_ad(key, 1), NOW)
    snapshot = verifier.snapshot()
    assert json.loads(snapshot)["lock_id"] == LOCK
    other = make_verifier(lock_id=OTHER_LOCK)
    with pytest.raises(ValueError, match="unreadable"):
        other.restore(snapshot)
    assert other.active_keys(NOW) == []


def test_snapshot_of_another_version_is_refused(verifier, key, make_verifier) -> None:
    state = json.loads(verifier.snapshot())
    state["version"] = 2  # the format before revoked users carried a time
    with pytest.raises(ValueError, match="unreadable"):
        make_verifier().restore(json.dumps(state).encode())


def test_snapshot_restores_to_an_equal_snapshot(verifier, key, make_verifier) -> None:
    verifier.check_advertisement(_ad(key, 9), NOW)
    restarted = make_verifier()
    restarted.restore(verifier.snapshot())
    assert restarted.snapshot() == verifier.snapshot()


def _valid_state() -> dict:
    return {
        "version": 3,
        "lock_id": LOCK,
        "keys": [
            {
                "key_id": "00" * 16,
                "issued_at": int(NOW),
                "expires_at": int(NOW) + 300,
                "lock_id": LOCK,
                "guest_id": "guest1",
                "pass_id": 7,
                "max_uses": 0,
                "secret": "11" * 32,
                "last_counter": 3,
            }
        ],
        "retired_up_to": {"guest1": int(NOW) - 10},
        "pass_uses": {"7": 1},
        "revocation_version": 3,
        "revoked_passes": [5],
        "revoked_users": [["guest9", int(NOW) - 5]],
        "revoked_keys": [["22" * 16, "guest1", 5, int(NOW) + 100]],
        "intrusion": IntrusionDetector().snapshot().decode(),
    }


def _mutated(path: tuple, value) -> bytes:
    state = _valid_state()
    target = state
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(state).encode()


_DELETE = object()

GARBAGE = [
    pytest.param(b"", id="empty"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"\xff\xfe\x00", id="not-utf8"),
    pytest.param(b"[]", id="list"),
    pytest.param(b"null", id="null"),
    pytest.param(b"42", id="number"),
    pytest.param(b"{}", id="empty-object"),
    pytest.param(_mutated(("version",), _DELETE), id="no-version"),
    pytest.param(_mutated(("lock_id",), _DELETE), id="no-lock-id"),
    pytest.param(_mutated(("keys",), _DELETE), id="no-keys"),
    pytest.param(_mutated(("keys",), None), id="keys-null"),
    pytest.param(_mutated(("keys",), 5), id="keys-number"),
    pytest.param(_mutated(("keys",), ["x"]), id="key-not-object"),
    pytest.param(_mutated(("keys", 0, "key_id"), "zz"), id="key-id-not-hex"),
    pytest.param(_mutated(("keys", 0, "key_id"), "00"), id="key-id-short"),
    pytest.param(_mutated(("keys", 0, "key_id"), 7), id="key-id-number"),
    pytest.param(_mutated(("keys", 0, "secret"), "xyz"), id="secret-not-hex"),
    pytest.param(_mutated(("keys", 0, "guest_id"), "Not An Id"), id="bad-guest-id"),
    pytest.param(_mutated(("keys", 0, "issued_at"), "soon"), id="issued-at-text"),
    pytest.param(_mutated(("keys", 0, "last_counter"), [1]), id="counter-list"),
    pytest.param(_mutated(("keys", 0, "expires_at"), _DELETE), id="no-expires-at"),
    pytest.param(_mutated(("retired_up_to",), _DELETE), id="no-retired"),
    pytest.param(_mutated(("retired_up_to", "guest1"), "never"), id="retired-value-text"),
    pytest.param(_mutated(("retired_up_to",), []), id="retired-list"),
    pytest.param(_mutated(("retired_up_to",), None), id="retired-null"),
    pytest.param(_mutated(("retired_up_to",), {"Bad Guest": 1}), id="retired-bad-guest"),
    pytest.param(_mutated(("revoked_users",), ["guest9"]), id="revoked-users-bare-names"),
    pytest.param(_mutated(("revoked_users",), [["guest9"]]), id="revoked-user-no-time"),
    pytest.param(_mutated(("revoked_users",), [["guest9", "soon"]]), id="revoked-before-text"),
    pytest.param(_mutated(("revoked_users",), [["Bad Guest", 1]]), id="revoked-bad-user"),
    pytest.param(
        json.dumps(_valid_state())
        .encode()
        .replace(b'"issued_at": 1800000000', b'"issued_at": Infinity'),
        id="issued-at-infinity",
    ),
    pytest.param(b"[" * 100_000, id="deeply-nested"),
]


def test_valid_state_fixture_restores(verifier) -> None:
    # guards GARBAGE: each entry differs from a restorable state only by its defect
    verifier.restore(json.dumps(_valid_state()).encode())
    assert len(verifier.active_keys(NOW)) == 1


@pytest.mark.parametrize("garbage", GARBAGE)
def test_restore_of_garbage_raises_value_error_and_keeps_state(
    verifier, key, garbage: bytes
) -> None:
    before = verifier.snapshot()
    with pytest.raises(ValueError, match="unreadable"):
        verifier.restore(garbage)
    assert verifier.snapshot() == before


def test_prune_keeps_expired_keys_for_an_hour_then_drops_them(verifier, key) -> None:
    expires_at = key.header.expires_at
    verifier.prune(expires_at + KEEP_EXPIRED_KEYS_S - 1)
    assert verifier.active_keys(expires_at - 1) == [key]
    reason = _reason(
        verifier.check_advertisement, _ad(key, 1), expires_at + KEEP_EXPIRED_KEYS_S - 1
    )
    assert reason is Reason.EXPIRED

    verifier.prune(expires_at + KEEP_EXPIRED_KEYS_S)
    assert verifier.active_keys(expires_at - 1) == []
    state = json.loads(verifier.snapshot())
    assert state["keys"] == []
    assert state["retired_up_to"] == {}
    reason = _reason(verifier.check_advertisement, _ad(key, 2), expires_at + KEEP_EXPIRED_KEYS_S)
    assert reason is Reason.UNKNOWN_KEY


def test_accepting_a_delivery_prunes_long_expired_keys(verifier, key, issue) -> None:
    later = key.header.expires_at + KEEP_EXPIRED_KEYS_S
    fresh = issue(now=later)
    verifier.accept_delivery(fresh.lock_payload, later)
    assert verifier.active_keys(later) == [fresh.issuance.key]
    assert [k["key_id"] for k in json.loads(verifier.snapshot())["keys"]] == [
        fresh.issuance.key.key_id.hex()
    ]


def test_pruned_delivery_cannot_be_replayed(verifier, issued) -> None:
    verifier.accept_delivery(issued.lock_payload, NOW)
    later = NOW + TTL_S + KEEP_EXPIRED_KEYS_S
    verifier.prune(later)
    assert _reason(verifier.accept_delivery, issued.lock_payload, later) is Reason.EXPIRED


def test_active_keys_leave_out_expired_keys(verifier, key) -> None:
    assert verifier.active_keys(NOW + TTL_S - 1) == [key]
    assert verifier.active_keys(NOW + TTL_S) == []


def test_a_guest_holds_at_most_four_keys_the_oldest_retired(verifier, issue) -> None:
    payloads = [issue(now=NOW + i).lock_payload for i in range(6)]
    installed = [verifier.accept_delivery(p, NOW + i).key for i, p in enumerate(payloads)]
    active = verifier.active_keys(NOW + 6)
    assert [k.key_id for k in active] == [k.key_id for k in installed[-MAX_KEYS_PER_GUEST:]]
    oldest = installed[0]
    assert _reason(verifier.check_advertisement, _ad(oldest, 4), NOW + 6) is Reason.UNKNOWN_KEY
    # a retired key cannot be brought back by replaying its delivery
    assert _reason(verifier.accept_delivery, payloads[0], NOW + 7) is Reason.REPLAY


def test_a_guest_asking_again_and_again_does_not_grow_the_lock_state(verifier, issue) -> None:
    sizes = []
    for i in range(60):
        verifier.accept_delivery(issue(now=NOW + i).lock_payload, NOW + i)
        sizes.append(len(verifier.snapshot()))
    assert max(sizes[10:]) == sizes[10]  # constant once the guest holds its four keys


def test_a_delivery_older_than_a_retired_key_is_refused(verifier, issue) -> None:
    never_delivered = issue(now=NOW).lock_payload  # e.g. held back by an attacker
    for i in range(1, 1 + MAX_KEYS_PER_GUEST + 1):
        verifier.accept_delivery(issue(now=NOW + i).lock_payload, NOW + i)
    assert _reason(verifier.accept_delivery, never_delivered, NOW + 10) is Reason.REPLAY


# --- passes: use limits ------------------------------------------------------------------------

PASS_ID = 7
LONG_TTL_S = 3600


def _pass_key(
    verifier: LockVerifier,
    issue,
    *,
    pass_id: int = PASS_ID,
    max_uses: int = UNLIMITED_USES,
    guest_id: str = "guest1",
    at: float = NOW,
    ttl_s: int = TTL_S,
) -> SessionKey:
    """A key issued under a pass at ``at`` and installed through a real delivery."""
    issued = issue(guest_id=guest_id, now=at, ttl_s=ttl_s, pass_id=pass_id, max_uses=max_uses)
    return verifier.accept_delivery(issued.lock_payload, at).key


def _refusal(call, *args, **kwargs) -> Rejected:
    with pytest.raises(Rejected) as caught:
        call(*args, **kwargs)
    return caught.value


def test_pass_key_carries_its_pass_its_use_limit_and_its_end(verifier, issue) -> None:
    issued = issue(pass_id=PASS_ID, max_uses=2, not_after=int(NOW) + 60)
    key = verifier.accept_delivery(issued.lock_payload, NOW).key
    assert (key.header.pass_id, key.header.max_uses) == (PASS_ID, 2)
    assert key.header.expires_at == int(NOW) + 60
    assert _reason(verifier.check_advertisement, _timely_ad(key, NOW + 60), NOW + 60) is (
        Reason.EXPIRED
    )


# Openings far enough apart to count as separate uses of a pass (see USE_MERGE_S).
FIRST, SECOND, THIRD = NOW, NOW + USE_MERGE_S + 1, NOW + 2 * (USE_MERGE_S + 1)


def _unlock(verifier: LockVerifier, key: SessionKey, at: float) -> AccessGranted | None:
    return verifier.check_advertisement(_timely_ad(key, at), at)


def test_unlocks_beyond_the_pass_limit_are_refused(verifier, issue) -> None:
    key = _pass_key(verifier, issue, max_uses=2)
    assert _unlock(verifier, key, FIRST) is not None
    assert _unlock(verifier, key, SECOND) is not None
    refusal = _refusal(_unlock, verifier, key, THIRD)
    assert (refusal.reason, refusal.who, refusal.pass_id) == (
        Reason.USES_EXHAUSTED,
        "guest1",
        PASS_ID,
    )


def test_lock_actions_do_not_count_against_the_pass(verifier, issue) -> None:
    key = _pass_key(verifier, issue, max_uses=1)
    for counter in (1, 2, 3):
        assert verifier.check_advertisement(_ad(key, counter, Action.LOCK), NOW) is not None
    assert verifier.check_advertisement(_ad(key, 4), NOW) is not None
    assert _reason(verifier.check_advertisement, _ad(key, 8), SECOND) is Reason.USES_EXHAUSTED
    # a used-up pass still lets its guest lock the door
    grant = verifier.check_advertisement(_ad(key, 9, Action.LOCK), SECOND)
    assert grant == AccessGranted(key, 9, Action.LOCK)


def test_refused_unlock_of_a_used_up_pass_does_not_consume_its_counter(verifier, issue) -> None:
    key = _pass_key(verifier, issue, max_uses=1)
    verifier.check_advertisement(_ad(key, 1), NOW)
    assert _reason(verifier.check_advertisement, _ad(key, 4), SECOND) is Reason.USES_EXHAUSTED
    assert verifier.check_advertisement(_ad(key, 4, Action.LOCK), SECOND) is not None


def test_uses_are_counted_per_pass_across_its_keys(verifier, issue) -> None:
    first = _pass_key(verifier, issue, max_uses=2, at=NOW)
    second = _pass_key(verifier, issue, max_uses=2, at=NOW + 1)
    other_pass = _pass_key(verifier, issue, pass_id=8, max_uses=1, guest_id="guest2")
    # two keys of one pass: two uses, even at the same moment (an opening is one key's)
    assert verifier.check_advertisement(_ad(first, 1), NOW + 1) is not None
    assert verifier.check_advertisement(_ad(second, 1), NOW + 1) is not None
    later = NOW + 1 + USE_MERGE_S + 1
    assert _reason(_unlock, verifier, first, later) is Reason.USES_EXHAUSTED
    assert _reason(_unlock, verifier, second, later) is Reason.USES_EXHAUSTED
    assert _unlock(verifier, other_pass, later) is not None


@pytest.mark.parametrize(
    ("pass_id", "max_uses"),
    [(PASS_ID, UNLIMITED_USES), (NO_PASS, UNLIMITED_USES)],
    ids=["unlimited-pass", "no-pass"],
)
def test_keys_without_a_use_limit_are_never_used_up(
    verifier, issue, pass_id: int, max_uses: int
) -> None:
    key = _pass_key(verifier, issue, pass_id=pass_id, max_uses=max_uses)
    for counter in range(1, 16):
        assert verifier.check_advertisement(_ad(key, counter), NOW) is not None


def test_pass_uses_survive_a_restart(verifier, issue, make_verifier) -> None:
    key = _pass_key(verifier, issue, max_uses=1)
    verifier.check_advertisement(_ad(key, 1), NOW)
    restarted = make_verifier()
    restarted.restore(verifier.snapshot())
    assert _reason(_unlock, restarted, key, SECOND) is Reason.USES_EXHAUSTED


def _pass_uses(verifier: LockVerifier) -> dict[str, int]:
    return json.loads(verifier.snapshot())["pass_uses"]


def test_tokens_of_one_opening_use_the_pass_once(verifier, issue) -> None:
    """The guest shows a fresh token every 2 s until the lock's confirmation reaches it."""
    key = _pass_key(verifier, issue, max_uses=1)
    assert _unlock(verifier, key, NOW) is not None
    assert _unlock(verifier, key, NOW + 2) is not None  # the same opening: allowed, not counted
    assert _pass_uses(verifier) == {str(PASS_ID): 1}
    assert _reason(_unlock, verifier, key, NOW + 6) is Reason.USES_EXHAUSTED


def test_two_close_tokens_count_once_and_a_later_one_again(verifier, issue) -> None:
    key = _pass_key(verifier, issue, max_uses=2)
    assert _unlock(verifier, key, NOW) is not None
    assert _unlock(verifier, key, NOW + 2) is not None
    assert _pass_uses(verifier) == {str(PASS_ID): 1}
    assert _unlock(verifier, key, NOW + 6) is not None  # a new opening: the second use
    assert _pass_uses(verifier) == {str(PASS_ID): 2}
    assert _reason(_unlock, verifier, key, NOW + 12) is Reason.USES_EXHAUSTED


@pytest.mark.parametrize(
    ("later_s", "opens"),
    [(USE_MERGE_S, True), (USE_MERGE_S + 0.5, False)],
    ids=["at-the-edge", "after"],
)
def test_the_same_opening_lasts_use_merge_s(verifier, issue, later_s: float, opens: bool) -> None:
    key = _pass_key(verifier, issue, max_uses=1)
    assert _unlock(verifier, key, NOW) is not None
    if opens:
        assert _unlock(verifier, key, NOW + later_s) is not None
    else:
        assert _reason(_unlock, verifier, key, NOW + later_s) is Reason.USES_EXHAUSTED


def test_the_same_opening_is_measured_from_its_counted_unlock(verifier, issue) -> None:
    """Tokens every 4 s cannot stretch one use for ever: each is measured from the counted one."""
    key = _pass_key(verifier, issue, max_uses=1)
    assert _unlock(verifier, key, NOW) is not None
    assert _unlock(verifier, key, NOW + 4) is not None
    assert _reason(_unlock, verifier, key, NOW + 8) is Reason.USES_EXHAUSTED


def test_lock_actions_do_not_start_an_opening(verifier, issue) -> None:
    key = _pass_key(verifier, issue, max_uses=1)
    assert verifier.check_advertisement(_ad(key, 1, Action.LOCK), NOW) is not None
    assert _unlock(verifier, key, NOW + 2) is not None  # counted: the pass's one use
    assert _pass_uses(verifier) == {str(PASS_ID): 1}


def test_pass_uses_outlive_the_keys_of_the_pass(verifier, issue) -> None:
    """A later key of the same pass does not start the count again."""
    first = _pass_key(verifier, issue, max_uses=2)
    assert _unlock(verifier, first, FIRST) is not None
    assert _unlock(verifier, first, SECOND) is not None
    later = NOW + TTL_S + KEEP_EXPIRED_KEYS_S + 60
    verifier.prune(later)
    assert verifier.active_keys(later) == []
    second = _pass_key(verifier, issue, max_uses=2, at=later)
    assert _reason(verifier.check_advertisement, _ad(second, 1), later) is Reason.USES_EXHAUSTED


# --- revocation --------------------------------------------------------------------------------


# When the users named by the lists below were removed: their keys issued at or before it (every
# key these tests issue them, at NOW, NOW + 1 and NOW + 2) are revoked.
REMOVED_AT = int(NOW) + 10


def _revocations(version: int, *, pass_ids=(), users=()) -> RevocationList:
    return RevocationList(version, int(NOW), LOCK, tuple(pass_ids), tuple(users))


@pytest.fixture
def pass_keys(verifier, issue) -> dict[str, SessionKey]:
    """guest1 under pass 7 and without a pass, guest2 under pass 8 and without a pass."""
    return {
        "guest1-pass": _pass_key(verifier, issue, at=NOW),
        "guest1-free": _pass_key(verifier, issue, pass_id=NO_PASS, at=NOW + 1),
        "guest2-pass": _pass_key(verifier, issue, pass_id=8, guest_id="guest2"),
        "guest2-free": _pass_key(verifier, issue, pass_id=NO_PASS, guest_id="guest2", at=NOW + 1),
    }


def _held(verifier: LockVerifier, keys: dict[str, SessionKey]) -> set[str]:
    held = {k.key_id for k in verifier.active_keys(NOW + 1)}
    return {name for name, key in keys.items() if key.key_id in held}


def test_newer_list_drops_the_keys_of_a_revoked_pass_and_returns_them(verifier, pass_keys) -> None:
    dropped = verifier.apply_revocations(_revocations(1, pass_ids=[PASS_ID]))
    assert dropped == [pass_keys["guest1-pass"]]
    assert verifier.revocation_version == 1
    assert _held(verifier, pass_keys) == {"guest1-free", "guest2-pass", "guest2-free"}


def test_newer_list_drops_every_key_of_a_removed_user(verifier, pass_keys) -> None:
    dropped = verifier.apply_revocations(_revocations(1, users=[("guest2", REMOVED_AT)]))
    assert dropped is not None
    assert {k.key_id for k in dropped} == {
        pass_keys["guest2-pass"].key_id,
        pass_keys["guest2-free"].key_id,
    }
    assert _held(verifier, pass_keys) == {"guest1-pass", "guest1-free"}


def test_a_list_naming_pass_zero_drops_no_key_given_without_a_pass(verifier, pass_keys) -> None:
    assert verifier.apply_revocations(_revocations(1, pass_ids=[NO_PASS])) == []
    assert _held(verifier, pass_keys) == set(pass_keys)


def test_token_under_a_dropped_key_opens_nothing(verifier, pass_keys) -> None:
    verifier.apply_revocations(_revocations(1, pass_ids=[PASS_ID]))
    key = pass_keys["guest1-pass"]
    refusal = _refusal(verifier.check_advertisement, _ad(key, 1), NOW + 1)
    assert (refusal.reason, refusal.who, refusal.pass_id) == (
        Reason.PASS_REVOKED,
        "guest1",
        PASS_ID,
    )


def test_the_list_held_already_changes_nothing(verifier, pass_keys) -> None:
    assert verifier.apply_revocations(_revocations(1, pass_ids=[PASS_ID])) is not None
    assert verifier.apply_revocations(_revocations(1, users=[("guest2", REMOVED_AT)])) is None
    assert _held(verifier, pass_keys) == {"guest1-free", "guest2-pass", "guest2-free"}


def test_an_older_list_is_a_replay_and_brings_no_pass_back(verifier, issue, pass_keys) -> None:
    verifier.apply_revocations(_revocations(2, pass_ids=[PASS_ID]))
    assert _reason(verifier.apply_revocations, _revocations(1)) is Reason.REPLAY
    assert verifier.revocation_version == 2
    assert _refusal(_pass_key, verifier, issue, at=NOW + 2).reason is Reason.PASS_REVOKED


@pytest.mark.parametrize(
    ("revocations", "pass_id", "guest_id"),
    [
        (_revocations(1, pass_ids=[PASS_ID]), PASS_ID, "guest1"),
        (_revocations(1, users=[("guest1", REMOVED_AT)]), NO_PASS, "guest1"),
        (_revocations(1, users=[("guest1", REMOVED_AT)]), 9, "guest1"),
    ],
    ids=["revoked-pass", "removed-user", "removed-user-new-pass"],
)
def test_delivery_of_a_revoked_key_is_refused(
    verifier, issue, revocations, pass_id: int, guest_id: str
) -> None:
    verifier.apply_revocations(revocations)
    refusal = _refusal(_pass_key, verifier, issue, pass_id=pass_id, guest_id=guest_id)
    assert (refusal.reason, refusal.who) == (Reason.PASS_REVOKED, guest_id)
    assert verifier.active_keys(NOW) == []


@pytest.mark.parametrize(
    ("issued_at", "revoked"),
    [(REMOVED_AT - 1, True), (REMOVED_AT, True), (REMOVED_AT + 1, False)],
    ids=["before", "at-removal", "a-second-after"],
)
def test_a_removed_users_keys_up_to_the_removal_time_are_dropped(
    verifier, issue, issued_at: int, revoked: bool
) -> None:
    key = _pass_key(verifier, issue, pass_id=NO_PASS, at=issued_at)
    dropped = verifier.apply_revocations(_revocations(1, users=[("guest1", REMOVED_AT)]))
    assert dropped == ([key] if revoked else [])
    at = REMOVED_AT + 2
    if revoked:
        assert _reason(_unlock, verifier, key, at) is Reason.PASS_REVOKED
    else:
        assert _unlock(verifier, key, at) == AccessGranted(
            key, token_slot(issued_at, at), Action.UNLOCK
        )


def test_a_removed_users_deliveries_up_to_the_removal_time_are_refused(verifier, issue) -> None:
    verifier.apply_revocations(_revocations(1, users=[("guest1", REMOVED_AT)]))
    at_removal = issue(now=REMOVED_AT, pass_id=NO_PASS).lock_payload
    refusal = _refusal(verifier.accept_delivery, at_removal, REMOVED_AT)
    assert (refusal.reason, refusal.who) == (Reason.PASS_REVOKED, "guest1")
    after = issue(now=REMOVED_AT + 1, pass_id=NO_PASS)  # a second after the removal
    installed = verifier.accept_delivery(after.lock_payload, REMOVED_AT + 1)
    assert installed == KeyInstalled(after.issuance.key)


@pytest.mark.parametrize("online", [True, False], ids=["online", "offline-during-removal"])
def test_a_resident_removed_and_added_back_gets_new_keys_not_the_old_ones(
    verifier, issue, make_verifier, online: bool
) -> None:
    old_issued = issue(now=NOW, ttl_s=LONG_TTL_S)  # a resident's key: no pass
    old = verifier.accept_delivery(old_issued.lock_payload, NOW).key
    removed = [("guest1", REMOVED_AT)]
    if online:  # the list published on removal
        assert verifier.apply_revocations(_revocations(1, users=removed)) == [old]
    # added back: the next list still names the resident, with the time of the removal
    dropped = verifier.apply_revocations(_revocations(2, users=removed))
    assert dropped == ([] if online else [old])
    back = REMOVED_AT + 20
    new_issued = issue(now=back, ttl_s=LONG_TTL_S)
    new = verifier.accept_delivery(new_issued.lock_payload, back).key
    assert _unlock(verifier, new, back) is not None
    assert _reason(_unlock, verifier, old, back + 1) is Reason.PASS_REVOKED
    assert _reason(verifier.accept_delivery, old_issued.lock_payload, back) is Reason.PASS_REVOKED
    # so too after a restart
    restarted = make_verifier()
    restarted.restore(verifier.snapshot())
    assert [k.key_id for k in restarted.active_keys(back)] == [new.key_id]
    assert _reason(restarted.accept_delivery, old_issued.lock_payload, back) is (
        Reason.PASS_REVOKED
    )
    assert _unlock(restarted, new, back + 10) is not None


def test_a_replayed_delivery_of_a_dropped_key_is_refused_even_when_its_user_is_no_longer_listed(
    verifier, issue
) -> None:
    """A later list may stop naming the user (e.g. a day later): the key itself stays refused."""
    old_issued = issue(now=NOW, ttl_s=LONG_TTL_S)
    old = verifier.accept_delivery(old_issued.lock_payload, NOW).key
    assert verifier.apply_revocations(_revocations(1, users=[("guest1", REMOVED_AT)])) == [old]
    assert verifier.apply_revocations(_revocations(2)) == []  # nobody listed any more
    assert _reason(verifier.accept_delivery, old_issued.lock_payload, NOW + 30) is (
        Reason.PASS_REVOKED
    )


def test_removed_users_are_kept_with_their_removal_time_across_a_restart(
    verifier, issue, make_verifier
) -> None:
    verifier.apply_revocations(_revocations(1, users=[("guest2", REMOVED_AT)]))
    assert json.loads(verifier.snapshot())["revoked_users"] == [["guest2", REMOVED_AT]]
    restarted = make_verifier()
    restarted.restore(verifier.snapshot())
    refused = issue(guest_id="guest2", now=REMOVED_AT).lock_payload
    assert _reason(restarted.accept_delivery, refused, REMOVED_AT) is Reason.PASS_REVOKED
    kept = issue(guest_id="guest2", now=REMOVED_AT + 1).lock_payload
    assert restarted.accept_delivery(kept, REMOVED_AT + 1) is not None


def test_revocations_survive_a_restart(verifier, issue, pass_keys, make_verifier) -> None:
    verifier.apply_revocations(_revocations(2, pass_ids=[PASS_ID], users=[("guest2", REMOVED_AT)]))
    restarted = make_verifier()
    restarted.restore(verifier.snapshot())
    assert restarted.revocation_version == 2
    assert _held(restarted, pass_keys) == {"guest1-free"}
    assert restarted.apply_revocations(_revocations(2)) is None
    assert _reason(restarted.apply_revocations, _revocations(1)) is Reason.REPLAY
    assert _refusal(_pass_key, restarted, issue, at=NOW + 2).reason is Reason.PASS_REVOKED
    refusal = _refusal(_pass_key, restarted, issue, pass_id=NO_PASS, guest_id="guest2", at=NOW + 2)
    assert refusal.reason is Reason.PASS_REVOKED


# --- intrusion: failed attempts and lockouts ----------------------------------------------------

THRESHOLD, WINDOW_S, LOCKOUT_S = 3, 300.0, 300.0


@pytest.fixture
def guarded(make_verifier) -> LockVerifier:
    """A verifier whose 4th counted failure within 5 minutes locks it out for 5 minutes."""
    return make_verifier(
        intrusion=IntrusionDetector(threshold=THRESHOLD, window_s=WINDOW_S, lockout_s=LOCKOUT_S)
    )


@pytest.fixture
def long_key(guarded, issue) -> SessionKey:
    """A key without a pass (an owner's or resident's), valid for an hour."""
    issued = issue(ttl_s=LONG_TTL_S)
    return guarded.accept_delivery(issued.lock_payload, NOW).key


@pytest.fixture
def guest_pass_key(guarded, issue) -> SessionKey:
    """A guest's key under a pass without a use limit, valid for an hour."""
    return _pass_key(guarded, issue, ttl_s=LONG_TTL_S)


def _lock_out(verifier: LockVerifier, key: SessionKey, at: float = NOW) -> float:
    """Fail THRESHOLD + 1 times at ``at``; return when the lockout ends."""
    for counter in range(1, THRESHOLD + 1):
        _fail(verifier, key, counter, at)
    refusal = _fail(verifier, key, THRESHOLD + 1, at)
    assert refusal.lockout_until == at + LOCKOUT_S
    return refusal.lockout_until


def _forged_ad(key: SessionKey, counter: int) -> bytes:
    return _ad(SessionKey(key.header, b"\x00" * 32), counter)


def _fail(verifier: LockVerifier, key: SessionKey, counter: int, at: float = NOW) -> Rejected:
    refusal = _refusal(verifier.check_advertisement, _forged_ad(key, counter), at)
    assert refusal.reason is Reason.BAD_MAC
    return refusal


def _frame_with(key: SessionKey, index: int, value: int) -> bytes:
    """An advertisement of token 1 under ``key`` with byte ``index`` of its frame replaced."""
    ad = bytearray(_ad(key, 1))
    ad[len(ad) - 24 + index] = value
    return bytes(ad)


def test_counted_failures_carry_their_attempt_number(guarded, long_key) -> None:
    for attempt in (1, 2, 3):
        refusal = _fail(guarded, long_key, attempt)
        assert (refusal.attempt, refusal.lockout_until) == (attempt, None)


def test_the_fourth_counted_failure_in_the_window_starts_a_lockout(guarded, long_key) -> None:
    for counter in (1, 2, 3):
        _fail(guarded, long_key, counter, NOW + counter)
    refusal = _fail(guarded, long_key, 4, NOW + 4)
    assert (refusal.attempt, refusal.lockout_until) == (4, NOW + 4 + LOCKOUT_S)


def test_a_locked_out_lock_refuses_guests_valid_tokens_until_the_lockout_ends(
    guarded, long_key, guest_pass_key
) -> None:
    ends = _lock_out(guarded, long_key)
    for at in (NOW, NOW + 10, ends - 1):
        refusal = _refusal(guarded.check_advertisement, _timely_ad(guest_pass_key, at), at)
        assert (refusal.reason, refusal.attempt, refusal.lockout_until) == (
            Reason.LOCKED_OUT,
            0,
            None,
        )
        assert (refusal.who, refusal.pass_id) == ("guest1", PASS_ID)
    # refusals while locked out neither count nor extend the lockout
    assert guarded.intrusion.locked_until(LOCK_SUBJECT, ends - 1) == ends
    grant = guarded.check_advertisement(_timely_ad(guest_pass_key, ends), ends)
    assert grant is not None
    assert grant.key == guest_pass_key


def test_an_owners_valid_token_opens_during_a_lockout(guarded, long_key, guest_pass_key) -> None:
    """Who has sniffed a key handle can lock the door out at will: not against its owner."""
    ends = _lock_out(guarded, guest_pass_key)
    for at in (NOW, NOW + 10, ends - 1):
        slot = token_slot(long_key.header.issued_at, at)
        grant = guarded.check_advertisement(_timely_ad(long_key, at), at)
        assert grant == AccessGranted(long_key, slot, Action.UNLOCK)
    # the owner's success lifts nothing: guests stay locked out
    assert guarded.intrusion.locked_until(LOCK_SUBJECT, ends - 1) == ends
    assert _reason(_unlock, guarded, guest_pass_key, ends - 1) is Reason.LOCKED_OUT


def test_a_guests_token_refused_during_a_lockout_is_not_spent(make_verifier, issue) -> None:
    """The same token opens once the lockout is over: its counter was not consumed."""
    lockout_s = 10.0  # short enough for a token to still be of now when it ends
    verifier = make_verifier(
        intrusion=IntrusionDetector(threshold=THRESHOLD, window_s=WINDOW_S, lockout_s=lockout_s)
    )
    key = _pass_key(verifier, issue, max_uses=1)
    for counter in range(1, THRESHOLD + 2):
        _fail(verifier, key, counter)
    ad = _timely_ad(key, NOW + 1)
    refusal = _refusal(verifier.check_advertisement, ad, NOW + 1)
    assert (refusal.reason, refusal.attempt) == (Reason.LOCKED_OUT, 0)
    ends = NOW + lockout_s
    grant = verifier.check_advertisement(ad, ends)
    assert grant == AccessGranted(key, token_slot(key.header.issued_at, NOW + 1), Action.UNLOCK)
    # and the refused unlock did not use up the pass's single use either: this was the first
    assert json.loads(verifier.snapshot())["pass_uses"] == {str(PASS_ID): 1}


@pytest.mark.parametrize("owner", [False, True], ids=["guest", "owner"])
def test_an_invalid_token_during_a_lockout_is_refused_for_its_reason_and_counted(
    guarded, long_key, guest_pass_key, owner: bool
) -> None:
    ends = _lock_out(guarded, long_key)
    key = long_key if owner else guest_pass_key
    refusal = _refusal(guarded.check_advertisement, _forged_ad(key, 50), NOW + 10)
    # its own reason, counted (the 5th failure), but the lockout keeps its one end
    assert (refusal.reason, refusal.attempt, refusal.lockout_until) == (
        Reason.BAD_MAC,
        THRESHOLD + 2,
        None,
    )
    assert guarded.intrusion.locked_until(LOCK_SUBJECT, NOW + 10) == ends
    if owner:  # the failure did not stop the owner's next valid token
        assert _unlock(guarded, key, NOW + 11) is not None
    else:
        assert _reason(_unlock, guarded, key, NOW + 11) is Reason.LOCKED_OUT


@pytest.mark.parametrize(
    "reason",
    [
        Reason.BAD_MAC,
        Reason.REPLAY,
        Reason.STALE,
        Reason.EXPIRED,
        Reason.USES_EXHAUSTED,
        Reason.PASS_REVOKED,
    ],
)
def test_each_counted_failure_counts(guarded, issue, reason: Reason) -> None:
    assert reason in COUNTED_FAILURES
    key = _pass_key(guarded, issue, max_uses=1)
    at = NOW
    if reason is Reason.BAD_MAC:
        ad = _forged_ad(key, 1)
    elif reason is Reason.MALFORMED:
        ad = _frame_with(key, 1, 3)  # no such action
    elif reason is Reason.REPLAY:
        guarded.check_advertisement(_ad(key, 5, Action.LOCK), NOW)
        ad = _ad(key, 4, Action.LOCK)
    elif reason is Reason.STALE:
        ad = _ad(key, 17)  # 32 s ahead of the lock's slot
    elif reason is Reason.EXPIRED:
        at = NOW + TTL_S
        ad = _timely_ad(key, at)
    elif reason is Reason.USES_EXHAUSTED:
        guarded.check_advertisement(_ad(key, 1), NOW)
        at = NOW + USE_MERGE_S + 1  # a new opening, not the same one again
        ad = _timely_ad(key, at)
    else:
        guarded.apply_revocations(_revocations(1, pass_ids=[PASS_ID]))
        ad = _ad(key, 1)
    refusal = _refusal(guarded.check_advertisement, ad, at)
    assert (refusal.reason, refusal.attempt) == (reason, 1)


def test_unknown_keys_and_wrong_versions_do_not_count(guarded, long_key, issue) -> None:
    stranger = issue().issuance.key  # never delivered to this lock
    for counter in range(1, 11):
        refusal = _refusal(guarded.check_advertisement, _ad(stranger, counter), NOW)
        assert (refusal.reason, refusal.attempt) == (Reason.UNKNOWN_KEY, 0)
    for version in range(2, 12):
        refusal = _refusal(guarded.check_advertisement, _frame_with(long_key, 0, version), NOW)
        assert (refusal.reason, refusal.attempt) == (Reason.WRONG_VERSION, 0)
    assert guarded.check_advertisement(_ad(long_key, 1), NOW) is not None


def test_malformed_frames_do_not_count_so_radio_noise_cannot_lock_the_door_out(
    guarded, long_key
) -> None:
    for repeat in range(8):  # twice the threshold of frames naming no such action
        at = NOW + 4 * repeat  # each one after the duplicate window, so each is evaluated
        refusal = _refusal(guarded.check_advertisement, _frame_with(long_key, 1, 3), at)
        assert (refusal.reason, refusal.attempt) == (Reason.MALFORMED, 0)
    assert guarded.check_advertisement(_timely_ad(long_key, NOW + 40), NOW + 40) is not None


def test_a_success_does_not_clear_the_failure_history(guarded, long_key, guest_pass_key) -> None:
    """An attacker holding a valid key cannot wipe the count of their guesses with it."""
    for counter in (1, 2, 3):
        _fail(guarded, long_key, counter, NOW + counter)
    assert _unlock(guarded, guest_pass_key, NOW + 4) is not None
    refusal = _fail(guarded, long_key, 5, NOW + 5)
    assert (refusal.attempt, refusal.lockout_until) == (4, NOW + 5 + LOCKOUT_S)


def test_failures_older_than_the_window_no_longer_count(guarded, long_key) -> None:
    for counter in (1, 2, 3):
        _fail(guarded, long_key, counter)
    later = NOW + WINDOW_S + 1
    slot = token_slot(long_key.header.issued_at, later)
    refusal = _fail(guarded, long_key, slot, later)
    assert (refusal.attempt, refusal.lockout_until) == (1, None)


def test_a_lockout_survives_a_restart(guarded, long_key, guest_pass_key, make_verifier) -> None:
    ends = _lock_out(guarded, long_key)
    restarted = make_verifier(intrusion=IntrusionDetector())
    restarted.restore(guarded.snapshot())
    assert _reason(_unlock, restarted, guest_pass_key, NOW + 1) is Reason.LOCKED_OUT
    assert _unlock(restarted, guest_pass_key, ends) is not None


def test_failures_counted_before_a_restart_still_count(guarded, long_key, make_verifier) -> None:
    for counter in (1, 2, 3):
        _fail(guarded, long_key, counter)
    restarted = make_verifier(intrusion=IntrusionDetector())
    restarted.restore(guarded.snapshot())
    refusal = _fail(restarted, long_key, 4)
    assert (refusal.attempt, refusal.lockout_until) == (4, NOW + LOCKOUT_S)


# --- a rotation of the lock's key: the overlap --------------------------------------------------


@pytest.fixture(scope="module")
def rotated_key():
    """The lock's new key after ``smartlock rotate lock-key``; ``lock_key`` is the previous one."""
    from smartlock import crypto

    return crypto.generate_private_key()


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The lock keys the verifier tried a delivery with, in order."""
    from smartlock.core import lock_verifier

    tried: list[object] = []
    real = lock_verifier.open_lock_delivery

    def _open(payload: bytes, **kwargs):
        tried.append(kwargs["lock_key"])
        return real(payload, **kwargs)

    monkeypatch.setattr(lock_verifier, "open_lock_delivery", _open)
    return tried


def test_delivery_sealed_for_the_previous_key_is_accepted_during_the_overlap(
    verifier, issue, rotated_key, lock_key
) -> None:
    verifier.set_lock_keys(rotated_key, previous=(lock_key,))
    issued = issue()  # sealed for lock_key: made, or retained on the broker, before the rotation
    assert verifier.accept_delivery(issued.lock_payload, NOW) == KeyInstalled(issued.issuance.key)


def test_delivery_sealed_for_the_previous_key_is_undecryptable_once_the_overlap_is_over(
    verifier, issue, rotated_key, lock_key
) -> None:
    verifier.set_lock_keys(rotated_key, previous=(lock_key,))
    verifier.set_lock_keys(rotated_key)  # finished: the previous key is gone
    assert _reason(verifier.accept_delivery, issue().lock_payload, NOW) is Reason.UNDECRYPTABLE
    assert verifier.active_keys(NOW) == []


def test_delivery_sealed_for_the_new_key_opens_with_the_new_key_alone(
    verifier, issue, rotated_key, attempts
) -> None:
    verifier.set_lock_keys(rotated_key)
    issued = issue(lock_public=rotated_key.public_key())
    assert verifier.accept_delivery(issued.lock_payload, NOW) == KeyInstalled(issued.issuance.key)
    assert attempts == [rotated_key]


def test_delivery_sealed_for_the_new_key_opens_during_the_overlap_at_the_first_try(
    verifier, issue, rotated_key, lock_key, attempts
) -> None:
    verifier.set_lock_keys(rotated_key, previous=(lock_key,))
    issued = issue(lock_public=rotated_key.public_key())
    assert verifier.accept_delivery(issued.lock_payload, NOW) == KeyInstalled(issued.issuance.key)
    assert attempts == [rotated_key]


def test_delivery_sealed_for_the_new_key_is_undecryptable_before_the_rotation(
    verifier, issue, rotated_key
) -> None:
    issued = issue(lock_public=rotated_key.public_key())
    assert _reason(verifier.accept_delivery, issued.lock_payload, NOW) is Reason.UNDECRYPTABLE


def test_delivery_sealed_for_no_key_of_the_lock_is_undecryptable_during_the_overlap(
    verifier, issue, rotated_key, lock_key, other_lock_key, attempts
) -> None:
    verifier.set_lock_keys(rotated_key, previous=(lock_key,))
    stranger = issue(lock_public=other_lock_key.public_key()).lock_payload
    assert _reason(verifier.accept_delivery, stranger, NOW) is Reason.UNDECRYPTABLE
    assert attempts == [rotated_key, lock_key]
    assert verifier.active_keys(NOW) == []


def test_delivery_with_a_bad_signature_is_refused_without_trying_the_previous_key(
    verifier, issue, rotated_key, lock_key, other_lock_key, attempts
) -> None:
    verifier.set_lock_keys(rotated_key, previous=(lock_key,))
    forged = issue(signer=other_lock_key).lock_payload  # sealed for the previous key, too
    assert _reason(verifier.accept_delivery, forged, NOW) is Reason.BAD_SIGNATURE
    assert attempts == [rotated_key]


def test_delivery_for_another_lock_is_refused_without_trying_the_previous_key(
    verifier, issue, rotated_key, lock_key, attempts
) -> None:
    verifier.set_lock_keys(rotated_key, previous=(lock_key,))
    for_other = issue(lock_id=OTHER_LOCK).lock_payload
    assert _reason(verifier.accept_delivery, for_other, NOW) is Reason.WRONG_LOCK
    assert attempts == [rotated_key]


def test_previous_keys_given_at_construction_open_deliveries_too(
    backend_key, rotated_key, lock_key, issue
) -> None:
    verifier = LockVerifier(
        lock_id=LOCK,
        backend_public=backend_key.public_key(),
        lock_key=rotated_key,
        previous_lock_keys=(lock_key,),
        intrusion=IntrusionDetector(threshold=1_000_000),
    )
    old, new = issue(), issue(guest_id="guest2", lock_public=rotated_key.public_key())
    assert verifier.accept_delivery(old.lock_payload, NOW) == KeyInstalled(old.issuance.key)
    assert verifier.accept_delivery(new.lock_payload, NOW) == KeyInstalled(new.issuance.key)


def test_a_delivery_opened_under_the_previous_key_is_still_refused_when_replayed(
    verifier, issue, rotated_key, lock_key
) -> None:
    issued = issue()
    verifier.accept_delivery(issued.lock_payload, NOW)
    verifier.set_lock_keys(rotated_key, previous=(lock_key,))
    assert _reason(verifier.accept_delivery, issued.lock_payload, NOW + 1) is Reason.REPLAY
