"""The dashboard's server-rendered pages (Jinja2, autoescaped) and their live feed (/events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi import Path as FastApiPath
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates

from smartlock.adapters.web import views
from smartlock.adapters.web.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_TTL_S,
    LoginRefused,
    Viewer,
    csrf_matches,
)
from smartlock.adapters.web.deps import (
    AuditQuery,
    Backend,
    FormPost,
    PageController,
    PageOwner,
    PageViewer,
    require_controller,
    require_owner,
    sessions_of,
)
from smartlock.adapters.web.session_cookie import clear_session_cookie, set_session_cookie
from smartlock.core.messages import Action
from smartlock.core.records import PASS_ID_MAX
from smartlock.core.roles import Role
from smartlock.core.second_factor import MAX_CODE_TEXT

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.globals["iso"] = views.iso
PassId = Annotated[int, FastApiPath(ge=1, le=PASS_ID_MAX)]
LIVE_POLL_S = 1.0  # the locks page's state is read from the store this often
LOGIN_CSRF_MAX_AGE_S = 3600


def render(
    request: Request,
    name: str,
    viewer: Viewer | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    backend = request.app.state.backend
    message = request.query_params.get("message", "")
    return templates.TemplateResponse(
        request,
        name,
        {
            "viewer": viewer,
            "site_name": backend.site.name,
            "message": context.pop("message", message[:300]),
            "message_kind": context.pop(
                "message_kind", request.query_params.get("kind", "") if message else ""
            ),
            **context,
        },
        status_code=status,
    )


def _back(path: str, message: str, kind: str = "") -> RedirectResponse:
    query = {"message": message, **({"kind": kind} if kind else {})}
    return RedirectResponse(f"{path}?{urlencode(query)}", status_code=303)


def _home(viewer: Viewer) -> str:
    return "/locks" if viewer.controls_locks else "/mine"


@router.get("/")
def index(viewer: PageViewer) -> RedirectResponse:
    return RedirectResponse(_home(viewer), status_code=303)


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return _login_form(request)


@router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=100)],
    code: Annotated[str, Form(max_length=MAX_CODE_TEXT)] = "",
) -> Response:
    if not csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf_token):
        raise HTTPException(403, "the sign-in form expired: reload the page and try again")
    address = request.client.host if request.client else "?"
    try:
        token, viewer = sessions_of(request).sign_in(name, password, address, code or None)
    except LoginRefused as refused:
        text = (
            "Too many attempts: wait a minute."
            if refused.reason == "rate_limited"
            else "Wrong name or password."
        )
        return _login_form(request, text, 429 if refused.reason == "rate_limited" else 401)
    response = RedirectResponse(_home(viewer), status_code=303)
    set_session_cookie(response, token, SESSION_TTL_S)
    response.delete_cookie(LOGIN_CSRF_COOKIE, secure=True, httponly=True, samesite="strict")
    return response


def _login_form(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    """The sign-in form with a fresh double-submit token (hidden field and cookie)."""
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        status=status,
        title="Sign in",
        login_csrf=token,
        **_message(message, "error"),
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=LOGIN_CSRF_MAX_AGE_S,
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
def logout(request: Request, viewer: FormPost) -> RedirectResponse:
    sessions_of(request).sign_out(viewer)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response)
    return response


@router.get("/locks")
def locks_page(request: Request, viewer: PageController, backend: Backend) -> HTMLResponse:
    return render(
        request, "locks.html", viewer, title="Locks", active="locks", locks=views.locks(backend)
    )


@router.post("/locks/{lock_id}/{action}")
async def lock_command(
    lock_id: str, action: str, viewer: FormPost, backend: Backend
) -> RedirectResponse:
    require_controller(viewer)
    if action not in ("lock", "unlock") or backend.store.get_lock(lock_id) is None:
        raise HTTPException(404, "no such lock or action")
    outcome = await backend.remote_command(
        viewer.name, lock_id, Action[action.upper()], channel="web"
    )
    if outcome.result == "done":
        return _back("/locks", f"{lock_id}: {action} done (bolt {outcome.bolt}).")
    return _back("/locks", f"{lock_id}: {action} {outcome.result} ({outcome.reason}).", "error")


@router.get("/passes")
def passes_page(request: Request, viewer: PageOwner, backend: Backend) -> HTMLResponse:
    return render(
        request,
        "passes.html",
        viewer,
        title="Passes",
        active="passes",
        passes=views.passes(backend, viewer),
        guests=[u.name for u in backend.store.list_users() if u.role is Role.GUEST],
        lock_ids=[lock.lock_id for lock in backend.store.list_locks()],
    )


@router.post("/passes")
def grant_pass(
    viewer: FormPost,
    backend: Backend,
    guest: Annotated[str, Form(max_length=32)],
    lock_id: Annotated[str, Form(max_length=32)],
    valid_from: Annotated[str, Form(max_length=64)] = "now",
    valid_until: Annotated[str, Form(max_length=64)] = "+7d",
    uses: Annotated[str, Form(max_length=8)] = "",
    hours: Annotated[str, Form(max_length=200)] = "",
) -> RedirectResponse:
    require_owner(viewer)
    try:
        if uses and not uses.isascii():
            raise views.ActionRefused("uses must be a whole number")
        view = views.grant(
            backend,
            viewer,
            guest=guest,
            lock_id=lock_id,
            valid_from=valid_from,
            valid_until=valid_until,
            uses=int(uses) if uses.strip() else None,
            hours=hours.strip() or None,
        )
    except ValueError:
        return _back("/passes", "Uses must be a whole number.", "error")
    except views.ActionRefused as exc:
        return _back("/passes", f"Not granted: {exc}", "error")
    return _back("/passes", f"Pass {view.pass_id} granted to {view.guest} on {view.lock_id}.")


@router.post("/passes/{pass_id}/revoke")
def revoke_pass(pass_id: PassId, viewer: FormPost, backend: Backend) -> RedirectResponse:
    require_owner(viewer)
    try:
        view = views.revoke(backend, viewer, pass_id)
    except views.ActionRefused as exc:
        return _back("/passes", f"Not revoked: {exc}", "error")
    return _back("/passes", f"Pass {view.pass_id} of {view.guest} revoked.")


@router.post("/passes/{pass_id}/invite", response_model=None)
def invite(
    request: Request, pass_id: PassId, viewer: FormPost, backend: Backend
) -> HTMLResponse | RedirectResponse:
    require_owner(viewer)
    try:
        invitation = views.invite(backend, viewer, pass_id, request.app.state.public_url)
    except views.ActionRefused as exc:
        return _back("/passes", f"No invitation: {exc}", "error")
    response = render(
        request,
        "invitation.html",
        viewer,
        title="Invitation",
        active="passes",
        invitation=invitation,
    )
    response.headers["Cache-Control"] = "no-store"  # the one-time code is on this page
    return response


@router.get("/audit")
def audit_page(
    request: Request, viewer: PageOwner, backend: Backend, query: AuditQuery
) -> HTMLResponse:
    message, kind = "", ""
    try:
        entries = views.audit(backend, query, limit=views.AUDIT_PAGE_LIMIT)
    except views.ActionRefused as exc:
        entries, message, kind = [], str(exc), "error"
    intact, broken = views.integrity(backend)
    return render(
        request,
        "audit.html",
        viewer,
        title="Audit log",
        active="audit",
        entries=entries,
        total=len(entries),
        intact=intact,
        broken=broken,
        query=query,
        lock_ids=[lock.lock_id for lock in backend.store.list_locks()],
        export_query=urlencode({k: v for k, v in asdict(query).items() if v}),
        **_message(message, kind),
    )


def _message(message: str, kind: str) -> dict[str, Any]:
    return {"message": message, "message_kind": kind} if message else {}


@router.get("/audit.csv")
def audit_export(viewer: PageOwner, backend: Backend, query: AuditQuery) -> Response:
    try:
        rows = views.audit(backend, query, limit=views.AUDIT_EXPORT_LIMIT)
    except views.ActionRefused as exc:
        raise HTTPException(400, str(exc)) from None
    return views.audit_download(rows)


@router.get("/alerts")
def alerts_page(request: Request, viewer: PageController, backend: Backend) -> HTMLResponse:
    return render(
        request,
        "alerts.html",
        viewer,
        title="Alerts",
        active="alerts",
        alerts=backend.recent_alerts(),
    )


@router.get("/mine")
def mine_page(request: Request, viewer: PageViewer, backend: Backend) -> HTMLResponse:
    return render(
        request,
        "mine.html",
        viewer,
        title="My passes",
        active="mine",
        passes=views.passes(backend, viewer) if viewer.role is Role.GUEST else [],
    )


@router.get("/events")
async def events(request: Request, viewer: PageController, backend: Backend) -> StreamingResponse:
    """Server-sent events: ``locks`` (the whole table, whenever it changes) and ``alert``."""

    async def stream() -> AsyncIterator[str]:
        feed = backend.alert_feed()
        next_alert: asyncio.Task[Any] | None = None
        last = ""
        try:
            while not await request.is_disconnected():
                if sessions_of(request).viewer(request) is None:
                    return  # signed out meanwhile
                table = [
                    {
                        **asdict(lock),
                        "last_heartbeat_iso": views.iso(lock.last_heartbeat)
                        if lock.last_heartbeat
                        else "",
                    }
                    for lock in await asyncio.to_thread(views.locks, backend)
                ]
                encoded = json.dumps(table)
                if encoded != last:
                    last = encoded
                    yield f"event: locks\ndata: {encoded}\n\n"
                if next_alert is None:
                    next_alert = asyncio.ensure_future(anext(feed))
                done, _ = await asyncio.wait({next_alert}, timeout=LIVE_POLL_S)
                if done:
                    alert = next_alert.result()
                    next_alert = None
                    yield (
                        "event: alert\ndata: "
                        + json.dumps({**asdict(alert), "at_iso": views.iso(alert.at)})
                        + "\n\n"
                    )
        finally:
            if next_alert is not None:
                next_alert.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await next_alert  # the feed must be idle before it can be closed
            await feed.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
