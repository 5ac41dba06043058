"""The JSON API under ``/api`` (OpenAPI schema at ``/api/openapi.json``).

Same sessions and roles as the pages: sign in with ``POST /api/session`` (the cookie comes back
``HttpOnly``; the CSRF token in the body), then send the token in ``X-CSRF-Token`` with every call
that changes something.  ``POST /api/enroll`` is the one call without a session: the one-time
invitation code is its credential.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from smartlock import crypto
from smartlock.adapters.web import views
from smartlock.adapters.web.auth import SESSION_TTL_S, LoginRefused
from smartlock.adapters.web.backend_port import AlertNotice
from smartlock.adapters.web.deps import (
    ApiChange,
    ApiController,
    ApiOwner,
    ApiViewer,
    AuditQuery,
    Backend,
    require_controller,
    require_owner,
    sessions_of,
)
from smartlock.adapters.web.session_cookie import clear_session_cookie, set_session_cookie
from smartlock.core.errors import ConfigError, StoreError
from smartlock.core.messages import Action
from smartlock.core.records import PASS_ID_MAX
from smartlock.core.second_factor import MAX_CODE_TEXT


class Refusal(BaseModel):
    """Why a call was refused, in words for the person who made it."""

    detail: str


REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": Refusal, "description": "Bad input: the detail says what to change"},
    401: {"model": Refusal, "description": "Not signed in"},
    403: {"model": Refusal, "description": "Wrong role, or a missing or wrong CSRF token"},
    404: {"model": Refusal, "description": "No such lock"},
    429: {"model": Refusal, "description": "Too many attempts"},
}

router = APIRouter(prefix="/api", tags=["api"], responses=REFUSALS)


def _download(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of a 200 that is a file, not JSON (refusals stay JSON)."""
    return {
        200: {
            "description": description,
            "content": {media_type: {"schema": {"type": "string"}}},
        }
    }


NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
Name = Annotated[str, Field(min_length=1, max_length=32, pattern=NAME_PATTERN)]
LockId = Annotated[str, Path(min_length=1, max_length=32, pattern=NAME_PATTERN)]
PassId = Annotated[int, Path(ge=1, le=PASS_ID_MAX)]


class SignIn(BaseModel):
    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    code: str | None = Field(
        None,
        max_length=MAX_CODE_TEXT,
        description="for users with a second factor: the authenticator app's 6 digits, "
        "or one of their recovery codes",
    )


class SessionOut(BaseModel):
    name: str
    role: str
    csrf_token: str


class Me(BaseModel):
    name: str
    role: str


class CommandOut(BaseModel):
    result: Literal["done", "denied", "failed"]
    reason: str
    bolt: str


class PassIn(BaseModel):
    guest: Name
    lock_id: Name
    valid_from: str = Field("now", max_length=64, description="now, +2h, +7d or an ISO time")
    valid_until: str = Field("+30d", max_length=64)
    uses: int | None = Field(None, ge=1, le=0xFFFF)
    hours: str | None = Field(None, max_length=200, description='e.g. "mon-fri 08:00-18:00"')


class InvitationOut(BaseModel):
    text: str = Field(description="the invitation to paste, also the QR code's content")
    guest: str
    lock_id: str
    pass_id: int
    expires_at: int


class IntegrityOut(BaseModel):
    intact: bool
    first_broken_entry: int | None


class EnrollIn(BaseModel):
    code: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    public_key_pem: str = Field(min_length=100, max_length=4096)


class EnrollOut(BaseModel):
    site_name: str
    guest: str
    broker_host: str
    broker_port: int
    password: str
    ca_pem: str
    backend_public_pem: str
    locks: list[str]


def _refused(exc: Exception) -> HTTPException:
    return HTTPException(400, str(exc))


@router.post("/session", response_model=SessionOut)
def sign_in(body: SignIn, request: Request, response: Response) -> Any:
    address = request.client.host if request.client else "?"
    try:
        token, viewer = sessions_of(request).sign_in(body.name, body.password, address, body.code)
    except LoginRefused as refused:
        status = 429 if refused.reason == "rate_limited" else 401
        raise HTTPException(status, "wrong name or password, or too many attempts") from None
    set_session_cookie(response, token, SESSION_TTL_S)
    return SessionOut(name=viewer.name, role=viewer.role.value, csrf_token=viewer.csrf_token)


@router.delete("/session", status_code=204)
def sign_out(viewer: ApiChange, request: Request, response: Response) -> None:
    sessions_of(request).sign_out(viewer)
    clear_session_cookie(response)


@router.get("/me", response_model=Me)
def me(viewer: ApiViewer) -> Any:
    return Me(name=viewer.name, role=viewer.role.value)


@router.get("/locks", response_model=list[views.LockView])
def list_locks(viewer: ApiController, backend: Backend) -> Any:
    return [asdict(view) for view in views.locks(backend)]


@router.post("/locks/{lock_id}/{action}", response_model=CommandOut)
async def command(
    lock_id: LockId, action: Literal["lock", "unlock"], viewer: ApiChange, backend: Backend
) -> Any:
    require_controller(viewer)
    if backend.store.get_lock(lock_id) is None:
        raise HTTPException(404, f"no lock {lock_id}")
    outcome = await backend.remote_command(
        viewer.name, lock_id, Action[action.upper()], channel="web"
    )
    return asdict(outcome)


@router.get("/passes", response_model=list[views.PassView])
def list_passes(viewer: ApiViewer, backend: Backend) -> Any:
    return [asdict(view) for view in views.passes(backend, viewer)]


@router.post("/passes", response_model=views.PassView, status_code=201)
def grant_pass(body: PassIn, viewer: ApiChange, backend: Backend) -> Any:
    require_owner(viewer)
    try:
        view = views.grant(
            backend,
            viewer,
            guest=body.guest,
            lock_id=body.lock_id,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            uses=body.uses,
            hours=body.hours,
        )
    except views.ActionRefused as exc:
        raise _refused(exc) from None
    return asdict(view)


@router.post("/passes/{pass_id}/revoke", response_model=views.PassView)
def revoke_pass(pass_id: PassId, viewer: ApiChange, backend: Backend) -> Any:
    require_owner(viewer)
    try:
        return asdict(views.revoke(backend, viewer, pass_id))
    except views.ActionRefused as exc:
        raise _refused(exc) from None


@router.post("/passes/{pass_id}/invitations", response_model=InvitationOut, status_code=201)
def invite(pass_id: PassId, viewer: ApiChange, backend: Backend, request: Request) -> Any:
    require_owner(viewer)
    try:
        view = views.invite(backend, viewer, pass_id, request.app.state.public_url)
    except views.ActionRefused as exc:
        raise _refused(exc) from None
    return InvitationOut(
        text=view.text,
        guest=view.guest,
        lock_id=view.lock_id,
        pass_id=view.pass_id,
        expires_at=view.expires_at,
    )


@router.get("/audit", response_model=list[views.AuditView])
def audit(
    viewer: ApiOwner,
    backend: Backend,
    query: AuditQuery,
    limit: Annotated[int, Query(ge=1, le=views.AUDIT_EXPORT_LIMIT)] = views.AUDIT_PAGE_LIMIT,
) -> Any:
    try:
        return [asdict(view) for view in views.audit(backend, query, limit=limit)]
    except views.ActionRefused as exc:
        raise _refused(exc) from None


@router.get(
    "/audit.csv",
    response_class=Response,
    responses=_download("text/csv", "The matching entries, newest first, as CSV"),
)
def audit_csv(viewer: ApiOwner, backend: Backend, query: AuditQuery) -> Response:
    try:
        rows = views.audit(backend, query, limit=views.AUDIT_EXPORT_LIMIT)
    except views.ActionRefused as exc:
        raise _refused(exc) from None
    return views.audit_download(rows)


@router.get("/audit/integrity", response_model=IntegrityOut)
def audit_integrity(viewer: ApiOwner, backend: Backend) -> Any:
    intact, broken = views.integrity(backend)
    return IntegrityOut(intact=intact, first_broken_entry=broken)


@router.get("/alerts", response_model=list[AlertNotice])
def alerts(viewer: ApiController, backend: Backend) -> Any:
    return [asdict(alert) for alert in backend.recent_alerts()]


@router.get(
    "/ca",
    response_class=Response,
    responses=_download("application/x-pem-file", "The site CA certificate (PEM)"),
)
def site_ca(backend: Backend) -> Response:
    """The site CA (public).  An enrolling device accepts it only if its SHA-256 is the one in
    its invitation."""
    return Response(backend.site.ca_cert.read_bytes(), media_type="application/x-pem-file")


@router.post("/enroll", response_model=EnrollOut)
async def enroll(body: EnrollIn, request: Request, backend: Backend) -> Any:
    """Redeem a one-time invitation: the guest's device sends the code and its own public key,
    and gets its broker account and the site's CA.  No private key travels."""
    limiter = request.app.state.enroll_limit
    address = request.client.host if request.client else "?"
    if not limiter.allow(address, backend.now()):
        raise HTTPException(429, "too many enrollment attempts; wait a minute")
    try:
        crypto.load_public_key(body.public_key_pem.encode())
    except crypto.CryptoError as exc:
        raise HTTPException(400, f"the device's public key is unusable: {exc}") from None
    try:
        invitation = backend.store.redeem_invitation(
            crypto.token_digest(body.code), now=int(backend.now())
        )
    except StoreError as exc:
        backend.audit_web(who="", action="enroll", result="denied", reason=str(exc)[:80])
        raise HTTPException(403, str(exc)) from None
    try:
        enrollment = await asyncio.to_thread(
            backend.enroll_guest, invitation, body.public_key_pem.encode()
        )
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None
    backend.audit_web(
        who=invitation.guest, action="enroll", result="granted", reason=f"pass {invitation.pass_id}"
    )
    out = asdict(enrollment)
    out["locks"] = list(enrollment.locks)
    return out
