"""Owners' second factor in the store: the TOTP secret is kept sealed (never in clear, bound to
its user and the audit key), a time step is accepted once, a recovery code works once, a new
factor replaces the old and signs the user out, and removing the user removes it.

Like every store test, each runs on SQLite and on PostgreSQL (see conftest.py).
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, text

from smartlock import crypto
from smartlock.adapters.store import Store
from smartlock.core.errors import StoreError
from smartlock.core.roles import Role
from smartlock.core.second_factor import TotpState

NOW = 1_800_000_000
HOUR = 3600
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
OTHER_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
CODES = [f"code{n:06d}" for n in range(10)]
DIGESTS = [crypto.token_digest(code) for code in CODES]


@pytest.fixture
def site(store: Store) -> Store:
    store.add_user("owner1", Role.OWNER, now=NOW)
    store.add_user("owner2", Role.OWNER, now=NOW)
    return store


def _sign_in(store: Store, cookie: str, user: str = "owner1") -> None:
    store.open_web_session(
        crypto.token_digest(cookie), user, "csrf", now=NOW, expires_at=NOW + HOUR
    )


def test_a_user_without_a_second_factor_has_none(site: Store) -> None:
    assert site.web_totp("owner1") is None
    assert site.web_totp("nobody") is None


def test_the_secret_reads_back_with_no_step_used_yet(site: Store) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS, now=NOW)

    assert site.web_totp("owner1") == TotpState(SECRET, 0)
    assert site.web_totp("owner2") is None
    assert site.recovery_codes_left("owner1") == 10


def test_the_secret_is_not_in_the_database_in_clear(site: Store, raw_engine: Engine) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS, now=NOW)

    with raw_engine.connect() as connection:
        row = connection.execute(
            text("SELECT user_name, secret_sealed, nonce, enabled_at, last_step FROM web_totp")
        ).one()
        recovery = connection.scalars(text("SELECT code_digest FROM web_recovery_codes")).all()
    name, sealed, nonce, enabled_at, last_step = row
    assert (name, enabled_at, last_step) == ("owner1", NOW, 0)
    assert SECRET.encode() not in bytes(sealed)
    assert len(bytes(nonce)) == crypto.NONCE_BYTES
    assert sorted(recovery) == sorted(DIGESTS)
    assert not set(CODES) & set(recovery)


def test_a_sealed_secret_moved_to_another_user_does_not_open(
    site: Store, raw_engine: Engine
) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS[:1], now=NOW)
    site.set_web_totp("owner2", OTHER_SECRET, DIGESTS[1:2], now=NOW)
    with raw_engine.begin() as connection:  # an attacker copies owner1's row over owner2's
        connection.execute(
            text(
                "UPDATE web_totp SET "
                "secret_sealed = (SELECT secret_sealed FROM web_totp WHERE user_name = 'owner1'), "
                "nonce = (SELECT nonce FROM web_totp WHERE user_name = 'owner1') "
                "WHERE user_name = 'owner2'"
            )
        )

    with pytest.raises(StoreError, match="second factor of owner2 does not open"):
        site.web_totp("owner2")


def test_a_secret_sealed_under_another_audit_key_does_not_open(site: Store, store_url: str) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS, now=NOW)

    with Store.open(store_url, audit_key=bytes(32)) as other, pytest.raises(StoreError):
        other.web_totp("owner1")


def test_setting_a_second_factor_signs_the_user_out(site: Store) -> None:
    _sign_in(site, "owner1-cookie")
    _sign_in(site, "owner2-cookie", "owner2")

    site.set_web_totp("owner1", SECRET, DIGESTS, now=NOW)

    assert site.web_session(crypto.token_digest("owner1-cookie"), now=NOW) is None
    assert site.web_session(crypto.token_digest("owner2-cookie"), now=NOW) is not None


def test_a_new_second_factor_replaces_the_secret_codes_and_used_step(site: Store) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS[:5], now=NOW)
    assert site.accept_totp_step("owner1", 100)

    site.set_web_totp("owner1", OTHER_SECRET, DIGESTS[5:], now=NOW + 1)

    assert site.web_totp("owner1") == TotpState(OTHER_SECRET, 0)
    assert not site.use_recovery_code("owner1", DIGESTS[0], now=NOW)
    assert site.use_recovery_code("owner1", DIGESTS[5], now=NOW)


@pytest.mark.parametrize("name", ["nobody", "owner2"])
def test_a_second_factor_for_an_unknown_or_removed_user_is_refused(site: Store, name: str) -> None:
    site.remove_user("owner2", now=NOW)

    with pytest.raises(StoreError, match=f"unknown user {name}"):
        site.set_web_totp(name, SECRET, DIGESTS, now=NOW)


def test_a_time_step_is_accepted_once_and_never_an_earlier_one(site: Store) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS, now=NOW)

    assert site.accept_totp_step("owner1", 100)
    assert not site.accept_totp_step("owner1", 100)
    assert not site.accept_totp_step("owner1", 99)
    assert site.accept_totp_step("owner1", 101)
    assert site.web_totp("owner1") == TotpState(SECRET, 101)


def test_no_step_is_accepted_for_a_user_without_a_second_factor(site: Store) -> None:
    assert not site.accept_totp_step("owner1", 100)


def test_concurrent_sign_ins_with_one_code_accept_it_once(site: Store) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS, now=NOW)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def accept() -> None:
        barrier.wait()
        results.append(site.accept_totp_step("owner1", 500))

    threads = [threading.Thread(target=accept) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 7 + [True]


def test_a_recovery_code_works_once_and_only_for_its_user(site: Store) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS[:5], now=NOW)
    site.set_web_totp("owner2", OTHER_SECRET, DIGESTS[5:], now=NOW)

    assert not site.use_recovery_code("owner1", DIGESTS[5], now=NOW)  # owner2's
    assert not site.use_recovery_code("owner1", crypto.token_digest("unknown"), now=NOW)
    assert site.use_recovery_code("owner1", DIGESTS[0], now=NOW)
    assert not site.use_recovery_code("owner1", DIGESTS[0], now=NOW + 1)
    assert site.recovery_codes_left("owner1") == 4
    assert site.recovery_codes_left("owner2") == 5


def test_concurrent_uses_of_one_recovery_code_succeed_once(site: Store) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS, now=NOW)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        results.append(site.use_recovery_code("owner1", DIGESTS[3], now=NOW))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 7 + [True]


def test_removing_the_second_factor_removes_secret_and_codes(site: Store) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS, now=NOW)

    assert site.remove_web_totp("owner1")

    assert site.web_totp("owner1") is None
    assert site.recovery_codes_left("owner1") == 0
    assert not site.use_recovery_code("owner1", DIGESTS[0], now=NOW)
    assert not site.remove_web_totp("owner1")  # nothing left to remove


def test_a_removed_user_added_back_has_no_second_factor(site: Store, raw_engine: Engine) -> None:
    site.set_web_totp("owner1", SECRET, DIGESTS, now=NOW)

    site.remove_user("owner1", now=NOW + 1)

    with raw_engine.connect() as connection:
        for table in ("web_totp", "web_recovery_codes"):
            count = connection.scalar(
                text(f"SELECT count(*) FROM {table} WHERE user_name = 'owner1'")
            )
            assert count == 0, table
    site.add_user("owner1", Role.OWNER, now=NOW + 2)
    assert site.web_totp("owner1") is None
    assert not site.use_recovery_code("owner1", DIGESTS[0], now=NOW + 2)
