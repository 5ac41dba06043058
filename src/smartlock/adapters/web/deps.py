"""FastAPI dependencies shared by the pages and the API: who is signed in, may they, CSRF."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request

from smartlock.adapters.web.auth import CSRF_FIELD, CSRF_HEADER, Sessions, Viewer, csrf_matches
from smartlock.adapters.web.backend_port import BackendPort
from smartlock.adapters.web.views import AuditFilter


class SignInNeeded(Exception):
    """A page asked for without a session: the app redirects to the sign-in page."""


def backend_of(request: Request) -> BackendPort:
    backend: BackendPort = request.app.state.backend
    return backend


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def page_viewer(request: Request) -> Viewer:
    viewer = sessions_of(request).viewer(request)
    if viewer is None:
        raise SignInNeeded
    return viewer


def api_viewer(request: Request) -> Viewer:
    viewer = sessions_of(request).viewer(request)
    if viewer is None:
        raise HTTPException(401, "sign in first (POST /api/session)")
    return viewer


def require_owner(viewer: Viewer) -> Viewer:
    if not viewer.is_owner:
        raise HTTPException(403, "owners only")
    return viewer


def require_controller(viewer: Viewer) -> Viewer:
    if not viewer.controls_locks:
        raise HTTPException(403, "owners and residents only")
    return viewer


def page_owner(viewer: Annotated[Viewer, Depends(page_viewer)]) -> Viewer:
    return require_owner(viewer)


def page_controller(viewer: Annotated[Viewer, Depends(page_viewer)]) -> Viewer:
    return require_controller(viewer)


def api_owner(viewer: Annotated[Viewer, Depends(api_viewer)]) -> Viewer:
    return require_owner(viewer)


def api_controller(viewer: Annotated[Viewer, Depends(api_viewer)]) -> Viewer:
    return require_controller(viewer)


async def form_csrf(request: Request, viewer: Annotated[Viewer, Depends(page_viewer)]) -> Viewer:
    """A form post must carry the session's CSRF token in its hidden field."""
    form = await request.form()
    presented = form.get(CSRF_FIELD)
    if not isinstance(presented, str) or not csrf_matches(viewer.csrf_token, presented):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return viewer


def api_csrf(request: Request, viewer: Annotated[Viewer, Depends(api_viewer)]) -> Viewer:
    """An API call that changes something must carry the session's CSRF token in a header."""
    if not csrf_matches(viewer.csrf_token, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
    return viewer


def audit_filter(
    lock_id: Annotated[str | None, Query(max_length=32)] = None,
    who: Annotated[str | None, Query(max_length=32)] = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
    result: Annotated[str | None, Query(max_length=16)] = None,
) -> AuditFilter:
    """The audit log's filters, from the query string (an empty field filters nothing)."""
    return AuditFilter(lock_id or None, who or None, since or None, until or None, result or None)


Backend = Annotated[BackendPort, Depends(backend_of)]
AuditQuery = Annotated[AuditFilter, Depends(audit_filter)]
PageViewer = Annotated[Viewer, Depends(page_viewer)]
PageOwner = Annotated[Viewer, Depends(page_owner)]
PageController = Annotated[Viewer, Depends(page_controller)]
FormPost = Annotated[Viewer, Depends(form_csrf)]
ApiViewer = Annotated[Viewer, Depends(api_viewer)]
ApiOwner = Annotated[Viewer, Depends(api_owner)]
ApiController = Annotated[Viewer, Depends(api_controller)]
ApiChange = Annotated[Viewer, Depends(api_csrf)]
