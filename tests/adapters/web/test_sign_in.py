"""Signing in: refused and granted sign-ins are audited, rate-limited per name, the sign-in form
is protected by its double-submit cookie, and no secret reaches the audit log or a log record."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from web_support import (
    FRONT,
    GUEST,
    GUEST_PASS,
    OWNER,
    PASSWORDS,
    RESIDENT,
    MemoryBackend,
    TestClient,
    csrf_header,
    login_form_token,
    sign_in,
)

from smartlock.adapters.web.auth import LOGIN_BURST, LOGIN_CSRF_COOKIE, SESSION_COOKIE
from smartlock.core.invitation import InvitationCode
from smartlock.core.records import AuditRecord


def sign_in_attempt(client: TestClient, name: str, password: str) -> httpx.Response:
    return client.post("/api/session", json={"name": name, "password": password})


def logins(backend: MemoryBackend) -> list[AuditRecord]:
    return [
        e.record
        for e in backend.store.audit_entries()
        if e.record.channel == "web" and e.record.action == "login"
    ]


def test_wrong_password_is_refused_and_audited_as_bad_password(
    client: TestClient, backend: MemoryBackend
) -> None:
    response = sign_in_attempt(client, OWNER, "not-the-password")

    assert response.status_code == 401
    assert SESSION_COOKIE not in response.cookies
    [entry] = logins(backend)
    assert (entry.who, entry.role, entry.result, entry.reason) == (
        OWNER,
        "owner",
        "denied",
        "bad_password",
    )


@pytest.mark.parametrize("name", ["nobody", "NOT A NAME", ""])
def test_unknown_name_is_refused_and_audited_as_unknown_user(
    client: TestClient, backend: MemoryBackend, name: str
) -> None:
    response = sign_in_attempt(client, name, "whatever-password")

    assert response.status_code == 401
    [entry] = logins(backend)
    assert (entry.who, entry.result, entry.reason) == ("", "denied", "unknown_user")


def test_refusals_for_unknown_name_and_wrong_password_look_alike(client: TestClient) -> None:
    unknown = sign_in_attempt(client, "nobody", "whatever-password")
    wrong = sign_in_attempt(client, OWNER, "whatever-password")

    assert (unknown.status_code, unknown.json()) == (wrong.status_code, wrong.json())


def test_right_password_signs_in_and_is_audited_as_granted(
    client: TestClient, backend: MemoryBackend
) -> None:
    response = sign_in_attempt(client, RESIDENT, PASSWORDS[RESIDENT])

    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["role"]) == (RESIDENT, "resident")
    assert len(body["csrf_token"]) >= 32
    [entry] = logins(backend)
    assert (entry.who, entry.role, entry.channel, entry.result, entry.reason) == (
        RESIDENT,
        "resident",
        "web",
        "granted",
        "",
    )
    assert client.get("/api/me").json() == {"name": RESIDENT, "role": "resident"}


def test_after_a_burst_of_failures_even_the_right_password_is_rate_limited(
    client: TestClient, backend: MemoryBackend
) -> None:
    frozen = backend.now()
    backend.clock = lambda: frozen  # "quick": no token comes back meanwhile
    for _ in range(LOGIN_BURST):
        assert sign_in_attempt(client, GUEST, "wrong-password").status_code == 401

    response = sign_in_attempt(client, GUEST, PASSWORDS[GUEST])

    assert response.status_code == 429
    assert SESSION_COOKIE not in response.cookies
    last = logins(backend)[-1]
    assert (last.who, last.result, last.reason) == (GUEST, "denied", "rate_limited")


def test_rate_limit_of_one_name_leaves_other_names_alone(
    client: TestClient, backend: MemoryBackend
) -> None:
    frozen = backend.now()
    backend.clock = lambda: frozen
    for _ in range(LOGIN_BURST + 1):
        sign_in_attempt(client, GUEST, "wrong-password")

    assert sign_in_attempt(client, OWNER, PASSWORDS[OWNER]).status_code == 200


def test_rate_limited_name_may_sign_in_again_later(
    client: TestClient, backend: MemoryBackend
) -> None:
    now = backend.now()
    backend.clock = lambda: now
    for _ in range(LOGIN_BURST + 1):
        sign_in_attempt(client, GUEST, "wrong-password")

    backend.clock = lambda: now + 60

    assert sign_in_attempt(client, GUEST, PASSWORDS[GUEST]).status_code == 200


# --- the sign-in form ------------------------------------------------------------------------


def test_login_form_signs_in_and_redirects_by_role(client: TestClient) -> None:
    token = login_form_token(client)

    response = client.post(
        "/login", data={"name": GUEST, "password": PASSWORDS[GUEST], "csrf_token": token}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/mine"
    assert client.get("/api/me").json()["name"] == GUEST


def test_login_form_without_its_double_submit_cookie_is_refused(
    client: TestClient, backend: MemoryBackend
) -> None:
    token = login_form_token(client)
    client.cookies.delete(LOGIN_CSRF_COOKIE)

    response = client.post(
        "/login", data={"name": OWNER, "password": PASSWORDS[OWNER], "csrf_token": token}
    )

    assert response.status_code == 403
    assert SESSION_COOKIE not in response.cookies
    assert logins(backend) == []  # refused before any password was looked at


def test_login_form_with_a_field_not_matching_the_cookie_is_refused(client: TestClient) -> None:
    login_form_token(client)

    response = client.post(
        "/login", data={"name": OWNER, "password": PASSWORDS[OWNER], "csrf_token": "forged"}
    )

    assert response.status_code == 403
    assert SESSION_COOKIE not in response.cookies


def test_login_form_with_a_wrong_password_shows_the_form_again(client: TestClient) -> None:
    token = login_form_token(client)

    response = client.post(
        "/login", data={"name": OWNER, "password": "wrong-password", "csrf_token": token}
    )

    assert response.status_code == 401
    assert "Wrong name or password." in response.text
    assert 'name="csrf_token"' in response.text  # a fresh form to try again
    assert LOGIN_CSRF_COOKIE in response.cookies


# --- no secret in the audit log or the logs --------------------------------------------------


def test_no_password_or_token_reaches_the_audit_log_or_a_log_record(
    client: TestClient,
    backend: MemoryBackend,
    new_client: Callable[[], TestClient],
    device_public_pem: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_password = "wrong-password-Zq9"
    secrets = [wrong_password, *PASSWORDS.values()]

    sign_in_attempt(client, OWNER, wrong_password)
    sign_in_attempt(client, "nobody", wrong_password)
    csrf = sign_in(client, OWNER)
    secrets += [csrf, client.cookies[SESSION_COOKIE]]
    form = new_client()
    form_token = login_form_token(form)
    form.post(
        "/login", data={"name": GUEST, "password": PASSWORDS[GUEST], "csrf_token": form_token}
    )
    secrets += [form_token, form.cookies[SESSION_COOKIE]]
    invitation = client.post(
        f"/api/passes/{GUEST_PASS}/invitations", headers=csrf_header(csrf)
    ).json()
    code = invitation["text"]
    enrolled = form.post(
        "/api/enroll",
        json={"code": _code_of(code), "public_key_pem": device_public_pem},
    ).json()
    secrets += [code, _code_of(code), enrolled["password"]]
    client.post(f"/api/locks/{FRONT}/unlock", headers=csrf_header(csrf))
    client.delete("/api/session", headers=csrf_header(csrf))

    audit_text = "\n".join(repr(e.record) for e in backend.store.audit_entries())
    log_text = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    for secret in secrets:
        assert secret not in audit_text
        assert secret not in log_text
    assert "login" in audit_text  # the scans read something
    assert caplog.records


def _code_of(invitation_text: str) -> str:
    return InvitationCode.parse(invitation_text).code
