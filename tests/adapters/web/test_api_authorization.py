"""Who may call what: every route of the dashboard x {anonymous, guest, resident, owner}.

``ROUTES`` has one entry per route of the app; ``test_every_route_has_an_entry`` enumerates
``app.routes``, so a route added without deciding who may call it fails here.  Mutating calls
carry the caller's right CSRF token, so only the role decides the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from web_support import (
    BACK,
    FRONT,
    GUEST,
    GUEST_PASS,
    OTHER_GUEST,
    OTHER_GUEST_PASS,
    OWNER,
    PASSWORDS,
    PUBLIC_URL,
    RESIDENT,
    MemoryBackend,
    TestClient,
    csrf_header,
    login_form_token,
    open_event_stream,
    open_session,
    session_cookie,
    sign_in,
)

from smartlock import admin
from smartlock.adapters.web.auth import CSRF_HEADER, SESSION_COOKIE
from smartlock.core.records import PassRecord

Role = Literal["anonymous", "guest", "resident", "owner"]
ROLES: tuple[Role, ...] = ("anonymous", "guest", "resident", "owner")
USER_OF: dict[Role, str] = {"guest": GUEST, "resident": RESIDENT, "owner": OWNER}
Access = Literal["public", "signed_in", "controller", "owner"]
MAY: dict[Access, frozenset[Role]] = {
    "public": frozenset(ROLES),
    "signed_in": frozenset({"guest", "resident", "owner"}),
    "controller": frozenset({"resident", "owner"}),
    "owner": frozenset({"owner"}),
}


@dataclass
class Caller:
    """One browser (or script) calling the app, signed in as ``role`` or not at all."""

    client: TestClient
    backend: MemoryBackend
    role: Role
    csrf: str
    device_pem: str

    @property
    def name(self) -> str:
        """Whose credentials a sign-in uses: the caller's own, the owner's for anonymous."""
        return USER_OF.get(self.role, OWNER)

    def form(self, **fields: str) -> dict[str, str]:
        return {"csrf_token": self.csrf, **fields} if self.csrf else fields

    def headers(self) -> dict[str, str]:
        return csrf_header(self.csrf) if self.csrf else {}

    def events(self) -> httpx.Response:
        cookie = self.client.cookies.get(SESSION_COOKIE)
        start = open_event_stream(self.client.app, cookie)
        return httpx.Response(start.status, headers=start.headers, content=start.first_chunk)


@dataclass(frozen=True)
class Endpoint:
    kind: Literal["api", "page"]  # decides what an anonymous caller gets: 401 or a redirect
    access: Access
    allowed: int  # the status for a caller who may
    call: Callable[[Caller], httpx.Response]
    mutating: bool = False  # needs the session's CSRF token
    lands: str = "elsewhere"  # where an allowed 303 leads: anywhere but /login, or "/login"


def _sign_in_api(c: Caller) -> httpx.Response:
    return c.client.post("/api/session", json={"name": c.name, "password": PASSWORDS[c.name]})


def _sign_in_form(c: Caller) -> httpx.Response:
    token = login_form_token(c.client)
    return c.client.post(
        "/login", data={"name": c.name, "password": PASSWORDS[c.name], "csrf_token": token}
    )


def _enroll(c: Caller) -> httpx.Response:
    code, _ = admin.invite_in(c.backend.store, c.backend.site, GUEST_PASS, url=PUBLIC_URL)
    return c.client.post("/api/enroll", json={"code": code.code, "public_key_pem": c.device_pem})


ROUTES: dict[tuple[str, str], Endpoint] = {
    # --- public: the API's description, static files, metrics, the sign-in and enrollment
    ("GET", "/api/openapi.json"): Endpoint(
        "api", "public", 200, lambda c: c.client.get("/api/openapi.json")
    ),
    ("GET", "/static"): Endpoint(
        "page", "public", 200, lambda c: c.client.get("/static/dashboard.css")
    ),
    ("GET", "/metrics"): Endpoint("api", "public", 200, lambda c: c.client.get("/metrics")),
    ("GET", "/api/ca"): Endpoint("api", "public", 200, lambda c: c.client.get("/api/ca")),
    ("POST", "/api/session"): Endpoint("api", "public", 200, _sign_in_api),
    ("POST", "/api/enroll"): Endpoint("api", "public", 200, _enroll),
    ("GET", "/login"): Endpoint("page", "public", 200, lambda c: c.client.get("/login")),
    ("POST", "/login"): Endpoint("page", "public", 303, _sign_in_form),
    # --- the JSON API
    ("DELETE", "/api/session"): Endpoint(
        "api",
        "signed_in",
        204,
        lambda c: c.client.delete("/api/session", headers=c.headers()),
        mutating=True,
    ),
    ("GET", "/api/me"): Endpoint("api", "signed_in", 200, lambda c: c.client.get("/api/me")),
    ("GET", "/api/locks"): Endpoint("api", "controller", 200, lambda c: c.client.get("/api/locks")),
    ("POST", "/api/locks/{lock_id}/{action}"): Endpoint(
        "api",
        "controller",
        200,
        lambda c: c.client.post(f"/api/locks/{FRONT}/unlock", headers=c.headers()),
        mutating=True,
    ),
    ("GET", "/api/passes"): Endpoint(
        "api", "signed_in", 200, lambda c: c.client.get("/api/passes")
    ),
    ("POST", "/api/passes"): Endpoint(
        "api",
        "owner",
        201,
        lambda c: c.client.post(
            "/api/passes", json={"guest": GUEST, "lock_id": BACK}, headers=c.headers()
        ),
        mutating=True,
    ),
    ("POST", "/api/passes/{pass_id}/revoke"): Endpoint(
        "api",
        "owner",
        200,
        lambda c: c.client.post(f"/api/passes/{GUEST_PASS}/revoke", headers=c.headers()),
        mutating=True,
    ),
    ("POST", "/api/passes/{pass_id}/invitations"): Endpoint(
        "api",
        "owner",
        201,
        lambda c: c.client.post(f"/api/passes/{GUEST_PASS}/invitations", headers=c.headers()),
        mutating=True,
    ),
    ("GET", "/api/audit"): Endpoint("api", "owner", 200, lambda c: c.client.get("/api/audit")),
    ("GET", "/api/audit.csv"): Endpoint(
        "api", "owner", 200, lambda c: c.client.get("/api/audit.csv")
    ),
    ("GET", "/api/audit/integrity"): Endpoint(
        "api", "owner", 200, lambda c: c.client.get("/api/audit/integrity")
    ),
    ("GET", "/api/alerts"): Endpoint(
        "api", "controller", 200, lambda c: c.client.get("/api/alerts")
    ),
    # --- the pages
    ("GET", "/"): Endpoint("page", "signed_in", 303, lambda c: c.client.get("/")),
    ("POST", "/logout"): Endpoint(
        "page",
        "signed_in",
        303,
        lambda c: c.client.post("/logout", data=c.form()),
        mutating=True,
        lands="/login",
    ),
    ("GET", "/locks"): Endpoint("page", "controller", 200, lambda c: c.client.get("/locks")),
    ("POST", "/locks/{lock_id}/{action}"): Endpoint(
        "page",
        "controller",
        303,
        lambda c: c.client.post(f"/locks/{FRONT}/unlock", data=c.form()),
        mutating=True,
    ),
    ("GET", "/passes"): Endpoint("page", "owner", 200, lambda c: c.client.get("/passes")),
    ("POST", "/passes"): Endpoint(
        "page",
        "owner",
        303,
        lambda c: c.client.post("/passes", data=c.form(guest=GUEST, lock_id=BACK)),
        mutating=True,
    ),
    ("POST", "/passes/{pass_id}/revoke"): Endpoint(
        "page",
        "owner",
        303,
        lambda c: c.client.post(f"/passes/{GUEST_PASS}/revoke", data=c.form()),
        mutating=True,
    ),
    ("POST", "/passes/{pass_id}/invite"): Endpoint(
        "page",
        "owner",
        200,
        lambda c: c.client.post(f"/passes/{GUEST_PASS}/invite", data=c.form()),
        mutating=True,
    ),
    ("GET", "/audit"): Endpoint("page", "owner", 200, lambda c: c.client.get("/audit")),
    ("GET", "/audit.csv"): Endpoint("page", "owner", 200, lambda c: c.client.get("/audit.csv")),
    ("GET", "/alerts"): Endpoint("page", "controller", 200, lambda c: c.client.get("/alerts")),
    ("GET", "/mine"): Endpoint("page", "signed_in", 200, lambda c: c.client.get("/mine")),
    ("GET", "/events"): Endpoint("page", "controller", 200, lambda c: c.events()),
}
MUTATING_API = sorted(k for k, e in ROUTES.items() if e.mutating and e.kind == "api")
MUTATING_PAGES = sorted(k for k, e in ROUTES.items() if e.mutating and e.kind == "page")


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route, included routers and mounts too (HEAD goes with GET)."""
    found = set()
    for route in iter_route_contexts(app.routes):
        assert route.path is not None, route
        for method in route.methods or {"GET"}:  # a mount answers GET
            if method != "HEAD":
                found.add((method, route.path))
    return found


def test_every_route_has_an_entry(app: FastAPI) -> None:
    assert routes_of(app) == set(ROUTES)


def _expected(endpoint: Endpoint, role: Role) -> tuple[int, str]:
    """(status, where a redirect leads: "/login", "elsewhere" or "")."""
    if role in MAY[endpoint.access]:
        return endpoint.allowed, endpoint.lands if endpoint.allowed == 303 else ""
    if role == "anonymous":
        return (401, "") if endpoint.kind == "api" else (303, "/login")
    return 403, ""


def _outcome(response: httpx.Response) -> tuple[int, str]:
    location = response.headers.get("location", "")
    if response.status_code != 303:
        return response.status_code, ""
    return 303, "/login" if location.startswith("/login") else "elsewhere"


@pytest.mark.parametrize("route", sorted(ROUTES), ids=" ".join)
def test_each_role_gets_what_its_role_allows(
    route: tuple[str, str],
    backend: MemoryBackend,
    new_client: Callable[[], TestClient],
    device_public_pem: str,
) -> None:
    """All four callers on one app, owner last: a refused call must change nothing, so the
    callers before the owner cannot spoil what the owner finds."""
    endpoint = ROUTES[route]
    expected: dict[Role, tuple[int, str]] = {}
    outcomes: dict[Role, tuple[int, str]] = {}
    for role in ROLES:
        client = new_client()
        csrf = open_session(client, backend, USER_OF[role]) if role != "anonymous" else ""
        response = endpoint.call(Caller(client, backend, role, csrf, device_public_pem))
        expected[role] = _expected(endpoint, role)
        outcomes[role] = _outcome(response)

    assert outcomes == expected


# --- CSRF ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """What a mutating call could change."""

    passes: list[PassRecord]
    audit_entries: int
    commands: int
    session_alive: bool


def _state(client: TestClient, backend: MemoryBackend) -> State:
    return State(
        backend.store.list_passes(include_inactive=True, now=int(backend.now())),
        len(backend.store.audit_entries()),
        len(backend.commands),
        client.get("/api/me").status_code == 200,
    )


@pytest.mark.parametrize("route", MUTATING_API, ids=" ".join)
def test_mutating_api_call_without_the_right_csrf_header_is_refused_and_changes_nothing(
    client: TestClient, backend: MemoryBackend, device_public_pem: str, route: tuple[str, str]
) -> None:
    open_session(client, backend, OWNER)
    before = _state(client, backend)

    for token in ("", "wrong-token"):  # "": no header at all
        response = ROUTES[route].call(Caller(client, backend, "owner", token, device_public_pem))

        assert response.status_code == 403
        assert CSRF_HEADER in response.json()["detail"]
        assert _state(client, backend) == before


@pytest.mark.parametrize("route", MUTATING_PAGES, ids=" ".join)
def test_page_form_post_without_the_right_csrf_field_is_refused_and_changes_nothing(
    client: TestClient, backend: MemoryBackend, device_public_pem: str, route: tuple[str, str]
) -> None:
    open_session(client, backend, OWNER)
    before = _state(client, backend)

    for token in ("", "wrong-token"):  # "": no field at all
        response = ROUTES[route].call(Caller(client, backend, "owner", token, device_public_pem))

        assert response.status_code == 403
        assert "CSRF" in response.text
        assert _state(client, backend) == before


def test_every_mutating_route_is_in_a_csrf_test() -> None:
    """A route that changes something either needs the session's CSRF token or presents its
    own credential (a password, an invitation code)."""
    own_credential = {("POST", "/api/session"), ("POST", "/login"), ("POST", "/api/enroll")}
    changing = {k for k in ROUTES if k[0] != "GET"}
    assert changing == set(MUTATING_API) | set(MUTATING_PAGES) | own_credential


# --- what each person sees -------------------------------------------------------------------


def test_guest_sees_only_their_own_passes(client: TestClient) -> None:
    sign_in(client, GUEST)

    passes = client.get("/api/passes").json()

    assert [(p["pass_id"], p["guest"]) for p in passes] == [(GUEST_PASS, GUEST)]


def test_owner_sees_every_pass(client: TestClient) -> None:
    sign_in(client, OWNER)

    passes = client.get("/api/passes").json()

    assert {(p["pass_id"], p["guest"]) for p in passes} == {
        (GUEST_PASS, GUEST),
        (OTHER_GUEST_PASS, OTHER_GUEST),
    }


def test_guest_page_of_own_passes_names_no_other_guest(client: TestClient) -> None:
    sign_in(client, GUEST)

    page = client.get("/mine")

    assert page.status_code == 200
    assert OTHER_GUEST not in page.text


# --- the session cookie and the headers ------------------------------------------------------


def _cookie_attributes(response: httpx.Response, name: str) -> set[str]:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return {part.strip().lower() for part in header.split(";")[1:]}
    raise AssertionError(f"no {name} cookie set")


@pytest.mark.parametrize("how", [_sign_in_api, _sign_in_form], ids=["api", "form"])
def test_session_cookie_is_secure_httponly_and_samesite_strict(
    client: TestClient,
    backend: MemoryBackend,
    device_public_pem: str,
    how: Callable[[Caller], httpx.Response],
) -> None:
    response = how(Caller(client, backend, "anonymous", "", device_public_pem))

    attributes = _cookie_attributes(response, SESSION_COOKIE)

    assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes


@pytest.mark.parametrize(
    ("path", "sign_in_first"),
    [
        ("/login", False),
        ("/locks", True),
        ("/api/me", True),
        ("/api/me", False),  # the 401 too
        ("/api/openapi.json", False),
        ("/nowhere", False),  # the 404 too
    ],
)
def test_security_headers_are_on_pages_and_api(
    client: TestClient, path: str, sign_in_first: bool
) -> None:
    if sign_in_first:
        sign_in(client, OWNER)

    response = client.get(path)

    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_no_api_docs_page_that_would_load_scripts_from_elsewhere(client: TestClient) -> None:
    """Swagger UI loads its script from a CDN and runs an inline one, both of which the CSP
    forbids: the schema is served (/api/openapi.json), the page is not."""
    assert client.get("/api/docs").status_code == 404
    assert client.get("/api/openapi.json").status_code == 200


def test_api_answers_are_not_cached(client: TestClient) -> None:
    sign_in(client, OWNER)

    assert client.get("/api/passes").headers["cache-control"] == "no-store"


# --- sessions end on the server --------------------------------------------------------------


def test_signed_out_session_cookie_no_longer_works(
    client: TestClient, new_client: Callable[[], TestClient]
) -> None:
    csrf = sign_in(client, OWNER)
    old_cookie = session_cookie(client)

    assert client.delete("/api/session", headers=csrf_header(csrf)).status_code == 204

    replay = new_client()
    replay.cookies.set(SESSION_COOKIE, old_cookie)
    assert replay.get("/api/me").status_code == 401
    assert replay.get("/locks").status_code == 303


def test_signed_out_by_form_session_cookie_no_longer_works(
    client: TestClient, new_client: Callable[[], TestClient]
) -> None:
    csrf = sign_in(client, RESIDENT)
    old_cookie = session_cookie(client)

    response = client.post("/logout", data={"csrf_token": csrf})

    assert response.status_code == 303
    replay = new_client()
    replay.cookies.set(SESSION_COOKIE, old_cookie)
    assert replay.get("/api/me").status_code == 401


def test_removed_users_session_stops_working(client: TestClient, backend: MemoryBackend) -> None:
    sign_in(client, RESIDENT)
    assert client.get("/api/me").status_code == 200

    backend.store.remove_user(RESIDENT, now=int(backend.now()))

    assert client.get("/api/me").status_code == 401
    assert client.get("/locks").status_code == 303


def test_removed_guest_can_no_longer_sign_in(client: TestClient, backend: MemoryBackend) -> None:
    backend.store.remove_user(GUEST, now=int(backend.now()))

    response = client.post("/api/session", json={"name": GUEST, "password": PASSWORDS[GUEST]})

    assert response.status_code == 401


def test_sessions_of_other_users_survive_a_sign_out(
    client: TestClient, new_client: Callable[[], TestClient]
) -> None:
    csrf = sign_in(client, OWNER)
    other = new_client()
    sign_in(other, RESIDENT)

    client.delete("/api/session", headers=csrf_header(csrf))

    assert other.get("/api/me").json() == {"name": RESIDENT, "role": "resident"}
