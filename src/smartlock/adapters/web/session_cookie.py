"""The session cookie's attributes, in one place."""

from __future__ import annotations

from fastapi import Response

from smartlock.adapters.web.auth import SESSION_COOKIE


def set_session_cookie(response: Response, token: str, max_age_s: int) -> None:
    """``Secure`` always: browsers accept it over https and on localhost (a secure context)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age_s,
        secure=True,
        httponly=True,
        samesite="strict",
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, secure=True, httponly=True, samesite="strict", path="/")
