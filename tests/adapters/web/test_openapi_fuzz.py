"""The JSON API against its own OpenAPI description (``/api/openapi.json``), fuzzed by Schemathesis.

Signed in as the owner (the session cookie and ``X-CSRF-Token`` on every call), so calls get past
authorisation and into the code behind it.  Checked: no 5xx, and every answer's content type and
body match the schema.  A small fixed budget, derandomized: the same examples on every run.

Left out: ``DELETE /api/session`` (it would sign the fuzzer's owner out).  ``POST /api/enroll``
is fuzzed, with its per-address rate limit raised for this app: otherwise every call after the
fifth would be a 429 and test nothing.  The sign-in's own rate limit stays: a fuzzed sign-in is
refused anyway, and a 429 is a correct answer.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from web_support import (
    BASE_URL,
    OWNER,
    PUBLIC_URL,
    MemoryBackend,
    TestClient,
    open_session,
    scratch_directory,
)

from smartlock import admin
from smartlock.adapters.web.app import create_app
from smartlock.adapters.web.auth import CSRF_HEADER, SESSION_COOKIE
from smartlock.adapters.web.backend_port import BackendPort
from smartlock.core.policy import RateLimit
from smartlock.site import Site

EXAMPLES_PER_OPERATION = 20
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@dataclass(frozen=True)
class FuzzTarget:
    app: object
    backend: MemoryBackend
    headers: dict[str, str]  # the owner's session cookie and CSRF token


@pytest.fixture(scope="module")
def fuzz_target(site_template: Path) -> Iterator[FuzzTarget]:
    """One site and app for the whole fuzz run (a fresh one per example would cost seconds)."""
    with scratch_directory() as directory:
        shutil.copytree(site_template, directory / "site")
        site = Site.load(directory / "site")
        with admin.open_store(site) as store:
            yield _target(MemoryBackend(site, store))


def _target(backend: MemoryBackend) -> FuzzTarget:
    """The app over ``backend``, and the owner's session on it."""
    app = create_app(backend, public_url=PUBLIC_URL)
    app.state.enroll_limit = RateLimit(burst=10_000, per_minute=10_000.0)
    with TestClient(app, base_url=BASE_URL) as client:
        csrf = open_session(client, backend, OWNER)
        cookie = client.cookies[SESSION_COOKIE]
    return FuzzTarget(app, backend, {"Cookie": f"{SESSION_COOKIE}={cookie}", CSRF_HEADER: csrf})


def _described_api() -> schemathesis.BaseSchema:
    """The API's OpenAPI document, read at import (``@schema.parametrize`` needs it then) from an
    app whose backend is never called: the document does not depend on it.  The calls go to the
    fuzz target's app (``app=`` below).  ``schemathesis.pytest.from_fixture`` would avoid this
    but fails on pytest 9 (it sets ``request.node._nodeid``, which pytest 9 no longer has)."""
    app = create_app(cast("BackendPort", object()), public_url=PUBLIC_URL)
    described = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    return described.exclude(method="DELETE", path="/api/session")


schema = _described_api()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_answers_every_generated_call_without_a_server_error_and_as_described(
    case: schemathesis.Case, fuzz_target: FuzzTarget
) -> None:
    case.call_and_validate(headers=fuzz_target.headers, checks=CHECKS, app=fuzz_target.app)


def test_owner_session_survived_the_fuzz(fuzz_target: FuzzTarget) -> None:
    """The fuzz ran signed in (not against 401s) all along: its session is still alive."""
    with TestClient(fuzz_target.app, base_url=BASE_URL) as client:  # type: ignore[arg-type]
        response = client.get("/api/me", headers=fuzz_target.headers)

    assert response.json() == {"name": OWNER, "role": "owner"}


# --- found by hand: what the fuzzer's text strategy never generates -------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/session", '{"name": "olivia", "password": "\\ud800"}'),
        ("/api/passes", '{"guest": "gina", "lock_id": "back", "hours": "\\udfff"}'),
        (
            "/api/enroll",
            '{"code": "' + "a" * 22 + '", "public_key_pem": "' + "\\ud800" * 100 + '"}',
        ),
    ],
    ids=["sign-in", "grant", "enroll"],
)
def test_json_body_with_a_lone_surrogate_is_refused_not_a_server_error(
    app: object, backend: MemoryBackend, path: str, body: str
) -> None:
    json.loads(body)  # valid JSON: a \\u escape of a lone surrogate is allowed
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:  # type: ignore[arg-type]
        csrf = open_session(client, backend, OWNER)
        response = client.post(
            path,
            content=body,
            headers={"content-type": "application/json", CSRF_HEADER: csrf},
        )

    assert response.status_code == 422


@pytest.mark.parametrize(
    ("method", "path", "case_fields"),
    [
        pytest.param(method, path, fields, id=f"{method} {path}")
        for method, path, fields in [
            ("POST", "/api/passes", {"body": {"guest": "nobody", "lock_id": "front"}}),
            ("POST", "/api/passes/{pass_id}/revoke", {"path_parameters": {"pass_id": 999}}),
            ("POST", "/api/passes/{pass_id}/invitations", {"path_parameters": {"pass_id": 999}}),
            ("GET", "/api/audit", {"query": {"since": "yesterday-ish"}}),
            ("GET", "/api/audit.csv", {"query": {"since": "yesterday-ish"}}),
            ("POST", "/api/enroll", {"body": {"code": "x" * 22, "public_key_pem": "P" * 120}}),
        ]
    ],
)
def test_refusal_of_bad_input_has_the_described_body(
    fuzz_target: FuzzTarget, method: str, path: str, case_fields: dict[str, Any]
) -> None:
    case = schema[path][method].Case(**case_fields)

    response = case.call(headers=fuzz_target.headers, app=fuzz_target.app)

    assert response.status_code in (400, 403)  # the rules' refusal (a code: 403), described
    case.validate_response(response, checks=[response_schema_conformance])


@pytest.mark.parametrize("path", ["/api/ca", "/api/audit.csv"])
def test_download_has_the_described_content_type(fuzz_target: FuzzTarget, path: str) -> None:
    case = schema[path]["GET"].Case()

    response = case.call(headers=fuzz_target.headers, app=fuzz_target.app)

    assert response.status_code == 200
    case.validate_response(response, checks=[content_type_conformance])
