"""Signing in with a second factor: an owner with TOTP also gives the app's code or a recovery
code; a missing, wrong or replayed code is refused exactly like a wrong password (same answer,
same rate limit, audited with its reason), a recovery code works once, users without TOTP are
unaffected, and the secret is never in the database in clear.

Time is the in-memory backend's clock, set per test: codes are made for that moment with pyotp.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pyotp
import pytest
from web_support import (
    OWNER,
    PASSWORDS,
    RESIDENT,
    MemoryBackend,
    TestClient,
    login_form_token,
    sign_in,
)

from smartlock import admin
from smartlock.adapters.web.auth import LOGIN_BURST, SESSION_COOKIE
from smartlock.core.records import AuditRecord
from smartlock.site import Site

NOW = 1_800_000_015.0  # 15 s into a 30-second step
STEP_S = 30


@pytest.fixture
def enrollment(site: Site, backend: MemoryBackend) -> admin.TotpEnrollment:
    """The owner turned TOTP on (as ``smartlock user totp`` does); the clock stands at NOW."""
    backend.clock = lambda: NOW
    return admin.set_web_totp(site, OWNER)


def totp(enrollment: admin.TotpEnrollment) -> pyotp.TOTP:
    return pyotp.TOTP(enrollment.secret)


def attempt(
    client: TestClient, name: str, password: str, code: str | None = None
) -> httpx.Response:
    body = {"name": name, "password": password}
    if code is not None:
        body["code"] = code
    return client.post("/api/session", json=body)


def logins(backend: MemoryBackend) -> list[AuditRecord]:
    return [
        e.record
        for e in backend.store.audit_entries()
        if e.record.channel == "web" and e.record.action == "login"
    ]


def last_login(backend: MemoryBackend) -> tuple[str, str, str]:
    entry = logins(backend)[-1]
    return entry.who, entry.result, entry.reason


def test_without_a_code_the_right_password_is_refused_as_missing_code(
    client: TestClient, backend: MemoryBackend, enrollment: admin.TotpEnrollment
) -> None:
    response = attempt(client, OWNER, PASSWORDS[OWNER])

    assert response.status_code == 401
    assert SESSION_COOKIE not in response.cookies
    assert last_login(backend) == (OWNER, "denied", "missing_code")
    assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize("code", ["000000", "12345", "not a code", "abcde-fghjk"])
def test_a_wrong_code_is_refused_as_bad_code(
    client: TestClient, backend: MemoryBackend, enrollment: admin.TotpEnrollment, code: str
) -> None:
    if code == totp(enrollment).at(NOW):  # one chance in a million
        pytest.skip("the app's code happens to be 000000 now")

    response = attempt(client, OWNER, PASSWORDS[OWNER], code)

    assert response.status_code == 401
    assert last_login(backend) == (OWNER, "denied", "bad_code")


def test_the_right_code_signs_in_and_is_audited_as_totp(
    client: TestClient, backend: MemoryBackend, enrollment: admin.TotpEnrollment
) -> None:
    response = attempt(client, OWNER, PASSWORDS[OWNER], totp(enrollment).at(NOW))

    assert response.status_code == 200
    assert response.json()["name"] == OWNER
    assert last_login(backend) == (OWNER, "granted", "totp")
    assert client.get("/api/me").json() == {"name": OWNER, "role": "owner"}


def test_a_code_of_the_previous_step_still_signs_in(
    client: TestClient, enrollment: admin.TotpEnrollment
) -> None:
    code = totp(enrollment).at(NOW - STEP_S)

    assert attempt(client, OWNER, PASSWORDS[OWNER], code).status_code == 200


def test_a_code_two_steps_old_is_refused(
    client: TestClient, backend: MemoryBackend, enrollment: admin.TotpEnrollment
) -> None:
    old = totp(enrollment).at(NOW - 2 * STEP_S)
    if old in {totp(enrollment).at(NOW + k * STEP_S) for k in (-1, 0, 1)}:
        pytest.skip("two steps share a code (one chance in a million)")

    assert attempt(client, OWNER, PASSWORDS[OWNER], old).status_code == 401
    assert last_login(backend) == (OWNER, "denied", "bad_code")


def test_the_same_code_again_is_refused_as_a_replay(
    client: TestClient,
    backend: MemoryBackend,
    enrollment: admin.TotpEnrollment,
) -> None:
    code = totp(enrollment).at(NOW)
    assert attempt(client, OWNER, PASSWORDS[OWNER], code).status_code == 200
    backend.clock = lambda: NOW + 10  # still within the code's step

    response = attempt(client, OWNER, PASSWORDS[OWNER], code)

    assert response.status_code == 401
    assert last_login(backend) == (OWNER, "denied", "replayed_code")


def test_after_a_code_an_earlier_steps_code_is_refused_and_a_later_one_accepted(
    client: TestClient, backend: MemoryBackend, enrollment: admin.TotpEnrollment
) -> None:
    assert attempt(client, OWNER, PASSWORDS[OWNER], totp(enrollment).at(NOW)).status_code == 200

    earlier = attempt(client, OWNER, PASSWORDS[OWNER], totp(enrollment).at(NOW - STEP_S))
    backend.clock = lambda: NOW + STEP_S
    later = attempt(client, OWNER, PASSWORDS[OWNER], totp(enrollment).at(NOW + STEP_S))

    assert earlier.status_code == 401
    assert later.status_code == 200


def test_a_wrong_password_with_the_right_code_is_a_wrong_password_and_spends_nothing(
    client: TestClient, backend: MemoryBackend, enrollment: admin.TotpEnrollment
) -> None:
    code = totp(enrollment).at(NOW)
    recovery = enrollment.recovery_codes[0]

    assert attempt(client, OWNER, "wrong-password", code).status_code == 401
    assert last_login(backend) == (OWNER, "denied", "bad_password")
    assert attempt(client, OWNER, "wrong-password", recovery).status_code == 401

    assert attempt(client, OWNER, PASSWORDS[OWNER], code).status_code == 200
    assert attempt(client, OWNER, PASSWORDS[OWNER], recovery).status_code == 200


def test_refusals_for_password_and_code_look_alike(
    client: TestClient, enrollment: admin.TotpEnrollment
) -> None:
    wrong_password = attempt(client, OWNER, "wrong-password", totp(enrollment).at(NOW))
    missing = attempt(client, OWNER, PASSWORDS[OWNER])
    wrong_code = attempt(client, OWNER, PASSWORDS[OWNER], "abcde-fghjk")

    answers = {(r.status_code, r.text) for r in (wrong_password, missing, wrong_code)}
    assert len(answers) == 1


def test_a_recovery_code_signs_in_once(
    client: TestClient, backend: MemoryBackend, enrollment: admin.TotpEnrollment
) -> None:
    code = enrollment.recovery_codes[3]

    first = attempt(client, OWNER, PASSWORDS[OWNER], code)
    assert last_login(backend) == (OWNER, "granted", "recovery_code")
    second = attempt(client, OWNER, PASSWORDS[OWNER], code)

    assert (first.status_code, second.status_code) == (200, 401)
    assert last_login(backend) == (OWNER, "denied", "bad_code")
    assert backend.store.recovery_codes_left(OWNER) == 9


def test_a_recovery_code_may_be_typed_without_its_hyphen_in_capitals(
    client: TestClient, enrollment: admin.TotpEnrollment
) -> None:
    typed = enrollment.recovery_codes[0].replace("-", " ").upper()

    assert attempt(client, OWNER, PASSWORDS[OWNER], typed).status_code == 200


def test_code_attempts_count_against_the_sign_in_rate_limit(
    client: TestClient, backend: MemoryBackend, enrollment: admin.TotpEnrollment
) -> None:
    for _ in range(LOGIN_BURST):
        assert attempt(client, OWNER, PASSWORDS[OWNER], "abcde-fghjk").status_code == 401

    response = attempt(client, OWNER, PASSWORDS[OWNER], totp(enrollment).at(NOW))

    assert response.status_code == 429
    assert last_login(backend) == (OWNER, "denied", "rate_limited")


def test_a_user_without_totp_signs_in_with_the_password_alone_and_any_code_is_ignored(
    client: TestClient, backend: MemoryBackend, enrollment: admin.TotpEnrollment
) -> None:
    assert attempt(client, RESIDENT, PASSWORDS[RESIDENT]).status_code == 200
    assert last_login(backend) == (RESIDENT, "granted", "")
    assert attempt(client, RESIDENT, PASSWORDS[RESIDENT], "123456").status_code == 200
    sign_in(client, RESIDENT)  # the shared helper, which sends no code


def test_turning_totp_on_signs_the_owner_out(
    client: TestClient, site: Site, backend: MemoryBackend
) -> None:
    sign_in(client, OWNER)
    assert client.get("/api/me").status_code == 200

    admin.set_web_totp(site, OWNER)

    assert client.get("/api/me").status_code == 401


def test_turning_totp_off_brings_back_the_password_alone(
    client: TestClient, site: Site, enrollment: admin.TotpEnrollment
) -> None:
    admin.remove_web_totp(site, OWNER)

    assert attempt(client, OWNER, PASSWORDS[OWNER]).status_code == 200


def test_an_altered_secret_refuses_the_sign_in(
    client: TestClient, site: Site, backend: MemoryBackend, enrollment: admin.TotpEnrollment
) -> None:
    with sqlite3.connect(_database_file(site)) as connection:
        connection.execute(
            "UPDATE web_totp SET secret_sealed = zeroblob(length(secret_sealed)) "
            "WHERE user_name = ?",
            (OWNER,),
        )

    response = attempt(client, OWNER, PASSWORDS[OWNER], totp(enrollment).at(NOW))

    assert response.status_code == 401
    assert last_login(backend) == (OWNER, "denied", "unreadable_totp")


def test_the_secret_and_recovery_codes_are_not_in_the_database_in_clear(
    site: Site, enrollment: admin.TotpEnrollment
) -> None:
    with sqlite3.connect(_database_file(site)) as connection:
        sealed, nonce = connection.execute(
            "SELECT secret_sealed, nonce FROM web_totp WHERE user_name = ?", (OWNER,)
        ).fetchone()
        digests = [
            row[0] for row in connection.execute("SELECT code_digest FROM web_recovery_codes")
        ]
    assert enrollment.secret.encode() not in sealed
    assert len(nonce) == 12
    assert len(digests) == 10
    database = b"".join(path.read_bytes() for path in _database_file(site).parent.glob("store.db*"))
    assert enrollment.secret.encode() not in database
    for code in enrollment.recovery_codes:
        assert code.replace("-", "").encode() not in database


def test_no_code_reaches_the_audit_log(
    client: TestClient, backend: MemoryBackend, enrollment: admin.TotpEnrollment
) -> None:
    code, recovery = totp(enrollment).at(NOW), enrollment.recovery_codes[1]
    attempt(client, OWNER, PASSWORDS[OWNER], code)
    attempt(client, OWNER, PASSWORDS[OWNER], code)
    attempt(client, OWNER, PASSWORDS[OWNER], recovery)

    audit_text = "\n".join(repr(e.record) for e in backend.store.audit_entries())
    for secret in (code, recovery, recovery.replace("-", ""), enrollment.secret):
        assert secret not in audit_text
    assert "web_totp" in audit_text  # the admin action was audited


# --- the sign-in form ------------------------------------------------------------------------


def test_the_login_form_has_an_optional_code_field(client: TestClient) -> None:
    page = client.get("/login").text

    assert "Code (if you use an authenticator app)" in page
    field = page[page.index('name="code"') :].split(">", 1)[0]
    assert "required" not in field


def test_the_login_form_takes_the_code(
    client: TestClient, enrollment: admin.TotpEnrollment
) -> None:
    token = login_form_token(client)
    data = {"name": OWNER, "password": PASSWORDS[OWNER], "csrf_token": token}

    refused = client.post("/login", data=data)
    token = login_form_token(client)
    code = totp(enrollment).at(NOW)
    granted = client.post("/login", data={**data, "csrf_token": token, "code": code})

    assert refused.status_code == 401
    assert "Wrong name or password." in refused.text
    assert granted.status_code == 303
    assert client.get("/api/me").json()["name"] == OWNER


def _database_file(site: Site) -> Path:
    url = site.database_url()
    assert url.startswith("sqlite:///")
    return Path(url.removeprefix("sqlite:///"))
