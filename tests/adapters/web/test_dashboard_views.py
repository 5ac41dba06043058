"""What the dashboard shows and does for an owner: passes, invitations and enrollment, the audit
log (filters, CSV export, escaping, integrity), metrics, and the live feed."""

from __future__ import annotations

import csv
import hashlib
import io
import time
from dataclasses import fields
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from web_support import (
    BACK,
    BASE_URL,
    FRONT,
    GUEST,
    GUEST_PASS,
    OTHER_GUEST,
    OWNER,
    RESIDENT,
    MemoryBackend,
    TestClient,
    csrf_header,
    open_event_stream,
    open_session,
    sign_in,
)

from smartlock.adapters.web.auth import SESSION_COOKIE
from smartlock.adapters.web.views import AuditView
from smartlock.core.invitation import InvitationCode
from smartlock.core.records import AuditRecord
from smartlock.site import Site


@pytest.fixture
def owner(client: TestClient) -> dict[str, str]:
    """The owner is signed in; the headers a mutating API call needs."""
    return csrf_header(sign_in(client, OWNER))


def _detail(response: Any) -> str:
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else " ".join(e["msg"] for e in detail)


# --- passes ----------------------------------------------------------------------------------


def test_granted_pass_is_created_and_listed(client: TestClient, owner: dict[str, str]) -> None:
    response = client.post(
        "/api/passes",
        json={"guest": GUEST, "lock_id": BACK, "valid_until": "+2d", "uses": 3},
        headers=owner,
    )

    assert response.status_code == 201
    granted = response.json()
    assert (granted["guest"], granted["lock_id"], granted["max_uses"]) == (GUEST, BACK, 3)
    assert granted["valid_until"] - granted["valid_from"] == 2 * 86400
    listed = client.get("/api/passes").json()
    assert granted in listed


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"guest": "nobody"}, "unknown user nobody"),
        ({"guest": RESIDENT}, "need no pass"),
        ({"lock_id": "garage"}, "unknown lock garage"),
        ({"valid_from": "2000-01-01T00:00", "valid_until": "2001-01-01T00:00"}, "already expired"),
        ({"valid_from": "+2d", "valid_until": "+1d"}, "before it starts"),
        ({"valid_until": "next tuesday"}, "cannot read the time"),
        ({"valid_until": "+99999999999d"}, "out of range"),
        ({"hours": "someday 08:00-09:00"}, "unknown day"),
        ({"uses": 0}, "greater than or equal to 1"),
        ({"uses": 70000}, "less than or equal to 65535"),
        ({"guest": "Not A Name"}, "pattern"),
        ({"lock_id": FRONT}, "overlaps"),  # the guest's pass 1 is on the front door
    ],
)
def test_bad_grant_is_refused_with_a_readable_message(
    client: TestClient,
    owner: dict[str, str],
    backend: MemoryBackend,
    body: dict[str, Any],
    says: str,
) -> None:
    before = backend.store.list_passes(include_inactive=True, now=int(time.time()))

    response = client.post(
        "/api/passes", json={"guest": GUEST, "lock_id": BACK, **body}, headers=owner
    )

    # the schema's own checks answer 422 (FastAPI's validation error); the pass rules 400
    schema_check = any(word in says for word in ("greater than", "less than", "pattern"))
    assert response.status_code == (422 if schema_check else 400)
    assert says in _detail(response)
    assert backend.store.list_passes(include_inactive=True, now=int(time.time())) == before


@pytest.mark.parametrize(
    ("uses", "says"),
    [("0", "uses must be 1..65535"), ("many", "whole number"), ("²", "whole number")],
)
def test_bad_grant_by_form_comes_back_as_a_message(
    client: TestClient, owner: dict[str, str], uses: str, says: str
) -> None:
    csrf = owner["X-CSRF-Token"]

    response = client.post(
        "/passes", data={"csrf_token": csrf, "guest": GUEST, "lock_id": BACK, "uses": uses}
    )

    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert says in page.text.replace("&#39;", "'")


def test_revoked_pass_leaves_the_list_and_cannot_be_revoked_again(
    client: TestClient, owner: dict[str, str]
) -> None:
    response = client.post(f"/api/passes/{GUEST_PASS}/revoke", headers=owner)

    assert response.status_code == 200
    assert response.json()["revoked"] is True
    assert GUEST_PASS not in [p["pass_id"] for p in client.get("/api/passes").json()]
    again = client.post(f"/api/passes/{GUEST_PASS}/revoke", headers=owner)
    assert again.status_code == 400
    assert _detail(again) == f"pass {GUEST_PASS} is already revoked"


def test_revoking_an_unknown_pass_is_refused(client: TestClient, owner: dict[str, str]) -> None:
    response = client.post("/api/passes/999/revoke", headers=owner)

    assert (response.status_code, _detail(response)) == (400, "unknown pass 999")


@pytest.mark.parametrize("action", ["revoke", "invite"])
def test_page_form_with_a_huge_pass_number_is_refused_not_a_server_error(
    app: Any, backend: MemoryBackend, action: str
) -> None:
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as browser:
        csrf = open_session(browser, backend, OWNER)
        response = browser.post(f"/passes/{2**64}/{action}", data={"csrf_token": csrf})

    assert response.status_code == 422  # no such pass can exist: refused before the store


# --- invitations and enrollment --------------------------------------------------------------


@pytest.fixture
def invitation(client: TestClient, owner: dict[str, str]) -> InvitationCode:
    response = client.post(f"/api/passes/{GUEST_PASS}/invitations", headers=owner)
    assert response.status_code == 201
    body = response.json()
    assert (body["guest"], body["lock_id"], body["pass_id"]) == (GUEST, FRONT, GUEST_PASS)
    assert body["text"].startswith("SLI1.")
    return InvitationCode.parse(body["text"])


def test_invitation_names_the_guest_and_pins_the_site_ca(
    invitation: InvitationCode, site: Site
) -> None:
    assert invitation.guest == GUEST
    assert invitation.site == site.name
    assert invitation.url == "https://dashboard.example"
    assert invitation.ca_sha256 == hashlib.sha256(site.ca_cert.read_bytes()).hexdigest()


def test_invitation_redeems_for_a_broker_account_and_the_ca(
    client: TestClient, invitation: InvitationCode, site: Site, device_public_pem: str
) -> None:
    response = client.post(
        "/api/enroll", json={"code": invitation.code, "public_key_pem": device_public_pem}
    )

    assert response.status_code == 200
    enrollment = response.json()
    assert enrollment["guest"] == GUEST
    assert enrollment["locks"] == [FRONT]
    assert len(enrollment["password"]) >= 32
    assert enrollment["ca_pem"] == site.ca_cert.read_text()
    assert hashlib.sha256(enrollment["ca_pem"].encode()).hexdigest() == invitation.ca_sha256
    assert site.public_key_path(GUEST).read_text() == device_public_pem


def test_invitation_code_works_once(
    client: TestClient, invitation: InvitationCode, device_public_pem: str
) -> None:
    body = {"code": invitation.code, "public_key_pem": device_public_pem}
    assert client.post("/api/enroll", json=body).status_code == 200

    again = client.post("/api/enroll", json=body)

    assert again.status_code == 403
    assert "already used" in _detail(again)


def test_unusable_public_key_is_refused_and_leaves_the_code_unused(
    client: TestClient, invitation: InvitationCode, device_public_pem: str
) -> None:
    bad_pem = "-----BEGIN PUBLIC KEY-----\n" + "A" * 120 + "\n-----END PUBLIC KEY-----\n"

    refused = client.post("/api/enroll", json={"code": invitation.code, "public_key_pem": bad_pem})

    assert refused.status_code == 400
    assert "public key is unusable" in _detail(refused)
    redeemed = client.post(
        "/api/enroll", json={"code": invitation.code, "public_key_pem": device_public_pem}
    )
    assert redeemed.status_code == 200


def test_unknown_invitation_code_is_refused_and_audited(
    client: TestClient, backend: MemoryBackend, device_public_pem: str
) -> None:
    response = client.post(
        "/api/enroll", json={"code": "x" * 22, "public_key_pem": device_public_pem}
    )

    assert response.status_code == 403
    last = backend.store.audit_entries()[-1].record
    assert (last.channel, last.action, last.result) == ("web", "enroll", "denied")


def test_invitation_for_a_revoked_pass_is_refused(
    client: TestClient, owner: dict[str, str]
) -> None:
    client.post(f"/api/passes/{GUEST_PASS}/revoke", headers=owner)

    response = client.post(f"/api/passes/{GUEST_PASS}/invitations", headers=owner)

    assert (response.status_code, _detail(response)) == (400, f"pass {GUEST_PASS} is revoked")


def test_invitation_page_shows_the_code_and_is_not_cached(
    client: TestClient, owner: dict[str, str]
) -> None:
    response = client.post(
        f"/passes/{GUEST_PASS}/invite", data={"csrf_token": owner["X-CSRF-Token"]}
    )

    assert response.status_code == 200
    assert "SLI1." in response.text
    assert "<svg" in response.text
    assert response.headers["cache-control"] == "no-store"


# --- the audit log ---------------------------------------------------------------------------


def _seed(backend: MemoryBackend, **record: Any) -> None:
    defaults: dict[str, Any] = {
        "at_ms": int(time.time() * 1000),
        "who": "",
        "role": "",
        "lock_id": "",
        "channel": "remote",
        "action": "unlock",
        "result": "granted",
        "reason": "",
    }
    backend.store.append_audit(AuditRecord(**{**defaults, **record}))


@pytest.fixture
def seeded(backend: MemoryBackend) -> MemoryBackend:
    """Entries on both locks, by two people, granted and denied, in 2030 and 2031."""
    jan_2030, jan_2031 = 1893456000_000, 1924992000_000
    _seed(backend, at_ms=jan_2030, who=GUEST, lock_id=FRONT, result="granted")
    _seed(backend, at_ms=jan_2030 + 1000, who=GUEST, lock_id=BACK, result="denied", reason="x")
    _seed(backend, at_ms=jan_2031, who=OTHER_GUEST, lock_id=BACK, result="granted")
    return backend


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"lock_id": BACK}, {(GUEST, BACK), (OTHER_GUEST, BACK)}),
        ({"who": GUEST}, {(GUEST, FRONT), (GUEST, BACK)}),
        ({"result": "denied"}, {(GUEST, BACK)}),
        ({"since": "2030-06-01T00:00"}, {(OTHER_GUEST, BACK)}),
        ({"until": "2030-06-01T00:00"}, {(GUEST, FRONT), (GUEST, BACK)}),
        ({"lock_id": BACK, "result": "granted"}, {(OTHER_GUEST, BACK)}),
    ],
)
def test_audit_filters_select_the_matching_entries(
    client: TestClient,
    owner: dict[str, str],
    seeded: MemoryBackend,
    query: dict[str, str],
    expected: set[tuple[str, str]],
) -> None:
    response = client.get("/api/audit", params=query)

    assert response.status_code == 200
    remote = {(e["who"], e["lock_id"]) for e in response.json() if e["channel"] == "remote"}
    assert remote == expected


def test_audit_list_is_newest_first(
    client: TestClient, owner: dict[str, str], seeded: MemoryBackend
) -> None:
    seqs = [e["seq"] for e in client.get("/api/audit").json()]

    assert seqs == sorted(seqs, reverse=True)


@pytest.mark.parametrize("param", ["since", "until"])
@pytest.mark.parametrize("path", ["/api/audit", "/api/audit.csv", "/audit.csv"])
def test_audit_filter_with_an_unreadable_time_is_refused(
    client: TestClient, owner: dict[str, str], path: str, param: str
) -> None:
    response = client.get(path, params={param: "yesterday-ish"})

    assert response.status_code == 400
    said = _detail(response) if path.startswith("/api") else response.text.replace("&#39;", "'")
    assert "cannot read the time 'yesterday-ish'" in said


def test_audit_page_with_an_unreadable_time_says_so(
    client: TestClient, owner: dict[str, str]
) -> None:
    response = client.get("/audit", params={"since": "yesterday-ish"})

    assert response.status_code == 200
    assert "cannot read the time" in response.text


@pytest.mark.parametrize("path", ["/api/audit.csv", "/audit.csv"])
def test_csv_export_has_a_header_and_defuses_formula_cells(
    client: TestClient, owner: dict[str, str], backend: MemoryBackend, path: str
) -> None:
    backend.audit_web(who=OWNER, action="note", result="info", reason="=cmd|' /C calc'!A0")
    backend.audit_web(who=OWNER, action="note", result="info", reason="+1+1")

    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [f.name for f in fields(AuditView)]
    reasons = [row[rows[0].index("reason")] for row in rows[1:]]
    assert "'=cmd|' /C calc'!A0" in reasons
    assert "'+1+1" in reasons
    assert not any(cell.startswith(("=", "+", "@")) for row in rows[1:] for cell in row)


def test_csv_export_of_nothing_is_the_header_alone(
    client: TestClient, owner: dict[str, str]
) -> None:
    response = client.get("/api/audit.csv", params={"who": "nobody"})

    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows == [[f.name for f in fields(AuditView)]]


def test_audit_page_escapes_what_it_shows(
    client: TestClient, owner: dict[str, str], backend: MemoryBackend
) -> None:
    backend.audit_web(who=OWNER, action="note", result="info", reason="<script>alert(1)</script>")

    page = client.get("/audit")

    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert(1)" not in page.text


def test_message_in_the_address_is_escaped(client: TestClient, owner: dict[str, str]) -> None:
    page = client.get("/passes", params={"message": "<img src=x onerror=alert(1)>"})

    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "<img src=x" not in page.text


def test_audit_integrity_is_intact_then_broken_at_the_tampered_entry(
    client: TestClient, owner: dict[str, str], site: Site
) -> None:
    assert client.get("/api/audit/integrity").json() == {
        "intact": True,
        "first_broken_entry": None,
    }

    engine = create_engine(site.database_url())
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE audit SET reason='x' WHERE seq=1"))
    finally:
        engine.dispose()

    assert client.get("/api/audit/integrity").json() == {
        "intact": False,
        "first_broken_entry": 1,
    }
    assert "BROKEN at entry 1" in client.get("/audit").text


# --- locks, alerts, metrics, the live feed ---------------------------------------------------


def test_remote_command_goes_to_the_backend_as_the_signed_in_user(
    client: TestClient, owner: dict[str, str], backend: MemoryBackend
) -> None:
    response = client.post(f"/api/locks/{FRONT}/unlock", headers=owner)

    assert response.json() == {"result": "done", "reason": "", "bolt": "unlocked"}
    [command] = backend.commands
    assert (command.user, command.lock_id, command.action.name, command.channel) == (
        OWNER,
        FRONT,
        "UNLOCK",
        "web",
    )


@pytest.mark.parametrize("path", ["/api/locks/garage/unlock", "/api/locks/front/open"])
def test_command_to_an_unknown_lock_or_action_is_refused(
    client: TestClient, owner: dict[str, str], backend: MemoryBackend, path: str
) -> None:
    response = client.post(path, headers=owner)

    assert response.status_code in (404, 422)
    assert backend.commands == []


def test_locks_list_shows_every_lock(client: TestClient, owner: dict[str, str]) -> None:
    locks = client.get("/api/locks").json()

    assert sorted((lock["lock_id"], lock["online"], lock["bolt"]) for lock in locks) == [
        (BACK, False, "unknown"),
        (FRONT, False, "unknown"),
    ]


def test_metrics_are_prometheus_text_with_logins_and_rejections(
    client: TestClient, backend: MemoryBackend
) -> None:
    backend.rejections["bad_signature"] = 2
    sign_in(client, OWNER)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'smartlock_web_logins_total{result="granted"} 1.0' in response.text
    assert 'smartlock_rejected_messages_total{reason="bad_signature"} 2.0' in response.text
    assert OWNER not in response.text


def test_live_feed_starts_with_the_locks_table(app: Any, client: TestClient) -> None:
    sign_in(client, RESIDENT)

    stream = open_event_stream(app, client.cookies[SESSION_COOKIE])

    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.first_chunk.startswith(b"event: locks\ndata: [")
    assert b'"lock_id": "front"' in stream.first_chunk


def test_leaving_the_live_feed_ends_it_without_an_error(app: Any, client: TestClient) -> None:
    sign_in(client, OWNER)

    stream = open_event_stream(app, client.cookies[SESSION_COOKIE])

    assert stream.status == 200
    assert stream.error is None, repr(stream.error)
