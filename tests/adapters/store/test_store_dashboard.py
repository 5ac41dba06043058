"""The dashboard's part of the store: passwords (a new one signs out every session), signed-in
sessions (expired or of a removed user: gone), and one-time guest invitations (used once, never
after they expire or their pass is revoked, never past their pass; concurrent redeemers: one wins).

Like every store test, each runs on SQLite and on PostgreSQL (see conftest.py).
"""

from __future__ import annotations

import threading

import pytest

from smartlock import crypto
from smartlock.adapters.store import Store
from smartlock.core.errors import StoreError
from smartlock.core.records import Invitation, WebSession
from smartlock.core.roles import Role

NOW = 1_800_000_000
HOUR = 3600
DAY = 24 * HOUR
HASH_1 = "scrypt$1024$8$1$c2FsdDE$aGFzaDE"  # stand-ins: the store keeps whatever hash it is given
HASH_2 = "scrypt$1024$8$1$c2FsdDI$aGFzaDI"
CSRF = crypto.token_digest("csrf")


def digest(name: str) -> str:
    return crypto.token_digest(name)


@pytest.fixture
def site(store: Store) -> Store:
    store.add_user("owner1", Role.OWNER, now=NOW)
    store.add_user("resident1", Role.RESIDENT, now=NOW)
    store.add_user("guest1", Role.GUEST, now=NOW)
    store.add_lock("front", now=NOW)
    return store


def _grant(store: Store, *, end: int = NOW + DAY, guest: str = "guest1") -> int:
    return store.grant_pass(
        guest,
        "front",
        valid_from=NOW,
        valid_until=end,
        max_uses=None,
        weekly_hours=None,
        now=NOW,
    ).pass_id


def _open(store: Store, cookie: str, user: str = "owner1", *, expires_at: int = NOW + HOUR) -> None:
    store.open_web_session(digest(cookie), user, CSRF, now=NOW, expires_at=expires_at)


# --- passwords ---------------------------------------------------------------------------------


def test_a_password_hash_is_stored_and_replaced(site: Store) -> None:
    assert site.web_password_hash("owner1") is None
    site.set_web_password("owner1", HASH_1, now=NOW)
    assert site.web_password_hash("owner1") == HASH_1
    site.set_web_password("owner1", HASH_2, now=NOW + 1)
    assert site.web_password_hash("owner1") == HASH_2
    assert site.web_password_hash("resident1") is None  # each user has its own


def test_a_real_password_hash_fits_and_still_verifies(site: Store) -> None:
    hashed = crypto.hash_password("a long dashboard password")  # the default cost's length
    site.set_web_password("resident1", hashed, now=NOW)
    stored = site.web_password_hash("resident1")
    assert stored is not None
    assert crypto.password_matches("a long dashboard password", stored)


@pytest.mark.parametrize("name", ["nobody", "guest2"])
def test_a_password_for_an_unknown_or_removed_user_is_refused(site: Store, name: str) -> None:
    site.add_user("guest2", Role.GUEST, now=NOW)
    site.remove_user("guest2", now=NOW)
    with pytest.raises(StoreError, match=f"unknown user {name}"):
        site.set_web_password(name, HASH_1, now=NOW)
    assert site.web_password_hash(name) is None


def test_a_removed_user_has_no_password_any_more(site: Store) -> None:
    site.set_web_password("guest1", HASH_1, now=NOW)
    site.remove_user("guest1", now=NOW + 1)
    assert site.web_password_hash("guest1") is None


def test_a_user_brought_back_can_set_a_new_password(site: Store) -> None:
    site.set_web_password("guest1", HASH_1, now=NOW)
    site.remove_user("guest1", now=NOW + 1)
    site.add_user("guest1", Role.GUEST, now=NOW + 2)
    site.set_web_password("guest1", HASH_2, now=NOW + 3)
    assert site.web_password_hash("guest1") == HASH_2


def test_a_removed_user_brought_back_does_not_get_its_old_password_back(site: Store) -> None:
    """The name may come back for someone else: the old password must not sign them in."""
    site.set_web_password("guest1", HASH_1, now=NOW)
    site.remove_user("guest1", now=NOW + 1)
    site.add_user("guest1", Role.GUEST, now=NOW + 2)
    assert site.web_password_hash("guest1") is None


# --- sessions ----------------------------------------------------------------------------------


def test_an_open_session_is_found_under_its_cookie_digest(site: Store) -> None:
    _open(site, "cookie-1", expires_at=NOW + HOUR)
    assert site.web_session(digest("cookie-1"), now=NOW) == WebSession("owner1", CSRF, NOW + HOUR)
    assert site.web_session(digest("cookie-2"), now=NOW) is None
    assert site.web_session("cookie-1", now=NOW) is None  # the cookie itself is no key


def test_a_session_ends_at_its_expiry(site: Store) -> None:
    _open(site, "cookie-1", expires_at=NOW + HOUR)
    assert site.web_session(digest("cookie-1"), now=NOW + HOUR - 1) is not None
    assert site.web_session(digest("cookie-1"), now=NOW + HOUR) is None
    assert site.web_session(digest("cookie-1"), now=NOW + 2 * HOUR) is None


def test_opening_a_session_sweeps_out_expired_ones(site: Store) -> None:
    site.open_web_session(digest("old"), "owner1", CSRF, now=NOW, expires_at=NOW + 10)
    site.open_web_session(digest("new"), "resident1", CSRF, now=NOW + 20, expires_at=NOW + HOUR)
    # even asked about a time before it expired, the swept session is gone
    assert site.web_session(digest("old"), now=NOW) is None
    assert site.web_session(digest("new"), now=NOW + 20) is not None


def test_a_closed_session_is_gone_and_closing_it_again_is_harmless(site: Store) -> None:
    _open(site, "cookie-1")
    _open(site, "cookie-2")
    site.close_web_session(digest("cookie-1"))
    site.close_web_session(digest("cookie-1"))
    site.close_web_session(digest("never-opened"))
    assert site.web_session(digest("cookie-1"), now=NOW) is None
    assert site.web_session(digest("cookie-2"), now=NOW) is not None


def test_the_session_of_a_removed_user_is_not_returned(site: Store) -> None:
    _open(site, "guest-cookie", "guest1")
    _open(site, "owner-cookie", "owner1")
    site.remove_user("guest1", now=NOW + 1)
    assert site.web_session(digest("guest-cookie"), now=NOW + 2) is None
    assert site.web_session(digest("owner-cookie"), now=NOW + 2) is not None


def test_a_removed_user_brought_back_does_not_get_its_old_session_back(site: Store) -> None:
    _open(site, "guest-cookie", "guest1")
    site.remove_user("guest1", now=NOW + 1)
    site.add_user("guest1", Role.GUEST, now=NOW + 2)
    assert site.web_session(digest("guest-cookie"), now=NOW + 3) is None


def test_setting_a_new_password_signs_out_every_session_of_that_user_only(site: Store) -> None:
    site.set_web_password("owner1", HASH_1, now=NOW)
    _open(site, "laptop", "owner1")
    _open(site, "phone", "owner1")
    _open(site, "resident", "resident1")
    site.set_web_password("owner1", HASH_2, now=NOW + 1)
    assert site.web_session(digest("laptop"), now=NOW + 1) is None
    assert site.web_session(digest("phone"), now=NOW + 1) is None
    assert site.web_session(digest("resident"), now=NOW + 1) is not None


def test_a_first_password_also_signs_out_existing_sessions(site: Store) -> None:
    _open(site, "laptop", "owner1")
    site.set_web_password("owner1", HASH_1, now=NOW + 1)
    assert site.web_session(digest("laptop"), now=NOW + 1) is None


# --- invitations -------------------------------------------------------------------------------


def _invite(
    store: Store, pass_id: int, code: str = "code-1", *, expires_at: int = NOW + HOUR
) -> Invitation:
    return store.create_invitation(
        digest(code), pass_id, created_by="owner1", now=NOW, expires_at=expires_at
    )


def test_an_invitation_names_the_guest_and_lock_of_its_pass(site: Store) -> None:
    pass_id = _grant(site)
    created = _invite(site, pass_id, expires_at=NOW + HOUR)
    assert created == Invitation(pass_id, "guest1", "front", "owner1", NOW + HOUR)


def test_a_redeemed_invitation_records_when_it_was_used(site: Store) -> None:
    pass_id = _grant(site)
    _invite(site, pass_id)
    redeemed = site.redeem_invitation(digest("code-1"), now=NOW + 60)
    assert redeemed == Invitation(pass_id, "guest1", "front", "owner1", NOW + HOUR, NOW + 60)


def test_a_used_invitation_is_refused_the_second_time(site: Store) -> None:
    _invite(site, _grant(site))
    site.redeem_invitation(digest("code-1"), now=NOW + 60)
    with pytest.raises(StoreError, match="this invitation code was already used"):
        site.redeem_invitation(digest("code-1"), now=NOW + 61)


def test_an_invitation_is_redeemed_by_its_digest_only(site: Store) -> None:
    _invite(site, _grant(site), "code-1")
    with pytest.raises(StoreError, match="unknown invitation code"):
        site.redeem_invitation("code-1", now=NOW)  # the plain code is not what is stored
    with pytest.raises(StoreError, match="unknown invitation code"):
        site.redeem_invitation(digest("code-2"), now=NOW)
    site.redeem_invitation(digest("code-1"), now=NOW)  # the refusals did not use it up


def test_an_expired_invitation_is_refused(site: Store) -> None:
    _invite(site, _grant(site), expires_at=NOW + HOUR)
    with pytest.raises(StoreError, match="this invitation code has expired"):
        site.redeem_invitation(digest("code-1"), now=NOW + HOUR)
    with pytest.raises(StoreError, match="has expired"):
        site.redeem_invitation(digest("code-1"), now=NOW + DAY)


def test_an_invitation_works_until_the_second_before_it_expires(site: Store) -> None:
    _invite(site, _grant(site), expires_at=NOW + HOUR)
    assert site.redeem_invitation(digest("code-1"), now=NOW + HOUR - 1).used_at == NOW + HOUR - 1


def test_an_invitation_never_outlives_its_pass(site: Store) -> None:
    pass_id = _grant(site, end=NOW + HOUR)
    created = _invite(site, pass_id, expires_at=NOW + 30 * DAY)
    assert created.expires_at == NOW + HOUR
    with pytest.raises(StoreError, match="has expired"):
        site.redeem_invitation(digest("code-1"), now=NOW + HOUR)


def test_an_invitation_shorter_than_its_pass_keeps_its_own_expiry(site: Store) -> None:
    created = _invite(site, _grant(site, end=NOW + DAY), expires_at=NOW + HOUR)
    assert created.expires_at == NOW + HOUR


def test_no_invitation_for_a_revoked_pass(site: Store) -> None:
    pass_id = _grant(site)
    site.revoke_pass(pass_id, now=NOW)
    with pytest.raises(StoreError, match=f"pass {pass_id} is revoked"):
        _invite(site, pass_id)
    with pytest.raises(StoreError, match="unknown invitation code"):
        site.redeem_invitation(digest("code-1"), now=NOW)  # nothing was stored


def test_no_invitation_for_an_unknown_pass(site: Store) -> None:
    with pytest.raises(StoreError, match="unknown pass 999"):
        _invite(site, 999)


def test_no_invitation_for_a_pass_that_is_over(site: Store) -> None:
    pass_id = _grant(site, end=NOW + HOUR)
    for now in (NOW + HOUR, NOW + DAY):
        with pytest.raises(StoreError, match=f"pass {pass_id} is over"):
            site.create_invitation(
                digest("code-1"), pass_id, created_by="owner1", now=now, expires_at=now + HOUR
            )


def test_an_invitation_whose_pass_was_revoked_since_is_refused(site: Store) -> None:
    pass_id = _grant(site)
    _invite(site, pass_id)
    site.revoke_pass(pass_id, now=NOW + 1)
    with pytest.raises(StoreError, match="the pass of this invitation was revoked"):
        site.redeem_invitation(digest("code-1"), now=NOW + 2)


def test_removing_the_guest_makes_its_invitation_useless(site: Store) -> None:
    _invite(site, _grant(site))
    site.remove_user("guest1", now=NOW + 1)  # revokes the guest's passes
    with pytest.raises(StoreError, match="was revoked"):
        site.redeem_invitation(digest("code-1"), now=NOW + 2)


def test_several_invitations_for_one_pass_are_each_used_once(site: Store) -> None:
    pass_id = _grant(site)
    _invite(site, pass_id, "code-1")
    _invite(site, pass_id, "code-2")
    site.redeem_invitation(digest("code-1"), now=NOW)
    assert site.redeem_invitation(digest("code-2"), now=NOW).pass_id == pass_id
    with pytest.raises(StoreError, match="already used"):
        site.redeem_invitation(digest("code-2"), now=NOW)


ROUNDS = 10


def test_concurrent_redeems_from_two_stores_let_exactly_one_win(
    site: Store, store_url: str, audit_key: bytes
) -> None:
    """Two backends (two Store objects, two connection pools) race for each of ten codes."""
    pass_id = _grant(site)
    for round_ in range(ROUNDS):
        _invite(site, pass_id, f"code-{round_}")
    stores = [Store.open(store_url, audit_key=audit_key) for _ in range(2)]
    barrier = threading.Barrier(2)
    wins: list[tuple[int, int]] = []
    losses: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def redeem_each(store: Store, who: int) -> None:
        for round_ in range(ROUNDS):
            barrier.wait()
            try:
                store.redeem_invitation(digest(f"code-{round_}"), now=NOW + round_)
                wins.append((round_, who))
            except StoreError as exc:
                losses.append((round_, str(exc)))
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

    try:
        threads = [
            threading.Thread(target=redeem_each, args=(store, index))
            for index, store in enumerate(stores)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert sorted(round_ for round_, _ in wins) == list(range(ROUNDS))
        assert sorted(round_ for round_, _ in losses) == list(range(ROUNDS))
        assert {message for _, message in losses} == {"this invitation code was already used"}
    finally:
        for store in stores:
            store.close()
