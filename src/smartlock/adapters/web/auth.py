"""Signing in to the dashboard: sessions, CSRF tokens, rate-limited and audited sign-ins.

* A password is checked against its scrypt hash (:func:`smartlock.crypto.password_matches`); an
  unknown name costs the same scrypt work, so timing does not tell which names exist.
* Sign-ins are rate-limited per name and per client address (token buckets), and every one,
  granted or refused, goes to the audit log (channel ``web``, action ``login``).
* The session cookie is 256 random bits, ``Secure; HttpOnly; SameSite=Strict``; the store keeps
  only its SHA-256.  Each session has its own CSRF token: every form carries it in a hidden
  field, every API call that changes something in the ``X-CSRF-Token`` header, and it is
  compared in constant time.  The sign-in form itself is protected by a double-submit cookie.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request

from smartlock import crypto
from smartlock.adapters.web.backend_port import BackendPort
from smartlock.core.policy import RateLimit
from smartlock.core.roles import Role
from smartlock.core.wire import check_identifier

SESSION_COOKIE = "smartlock_session"
LOGIN_CSRF_COOKIE = "smartlock_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_TTL_S = 12 * 3600
LOGIN_BURST = 5  # sign-in attempts at once, per name and per address...
LOGIN_PER_MINUTE = 5.0  # ...then one every 12 s
# scrypt work for unknown names: a hash of a random password, made once per process
_DECOY_HASH = crypto.hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Viewer:
    """The signed-in person behind a request."""

    name: str
    role: Role
    csrf_token: str
    session_digest: str

    @property
    def is_owner(self) -> bool:
        return self.role is Role.OWNER

    @property
    def controls_locks(self) -> bool:
        return self.role.has_free_access


class LoginRefused(Exception):
    """A refused sign-in; ``reason`` is logged and audited, the user sees one generic message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sessions:
    def __init__(self, backend: BackendPort) -> None:
        self._backend = backend
        self._by_name = RateLimit(burst=LOGIN_BURST, per_minute=LOGIN_PER_MINUTE)
        self._by_address = RateLimit(burst=2 * LOGIN_BURST, per_minute=2 * LOGIN_PER_MINUTE)

    def viewer(self, request: Request) -> Viewer | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 100:
            return None
        digest = crypto.token_digest(token)
        session = self._backend.store.web_session(digest, now=int(self._backend.now()))
        if session is None:
            return None
        user = self._backend.store.get_user(session.user)
        if user is None or not user.active:
            return None
        return Viewer(user.name, user.role, session.csrf_token, digest)

    def sign_in(self, name: str, password: str, address: str) -> tuple[str, Viewer]:
        """A new session's cookie value and viewer, or :class:`LoginRefused`."""
        now = self._backend.now()
        known = _valid_name(name)
        if not self._by_address.allow(f"address:{address}", now) or not self._by_name.allow(
            f"name:{name if known else '?'}", now
        ):
            self._refuse(name if known else "", "rate_limited")
        stored = self._backend.store.web_password_hash(name) if known else None
        matches = crypto.password_matches(password, stored or _DECOY_HASH)
        user = self._backend.store.get_user(name) if known else None
        if stored is None or user is None or not user.active:
            self._refuse(name if user is not None else "", "unknown_user")
        if not matches:
            self._refuse(name, "bad_password")
        assert user is not None
        token = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        digest = crypto.token_digest(token)
        self._backend.store.open_web_session(
            digest, name, csrf_token, now=int(now), expires_at=int(now) + SESSION_TTL_S
        )
        self._backend.audit_web(who=name, action="login", result="granted")
        self._backend.metrics.web_logins.labels("granted").inc()
        return token, Viewer(name, user.role, csrf_token, digest)

    def sign_out(self, viewer: Viewer) -> None:
        self._backend.store.close_web_session(viewer.session_digest)
        self._backend.audit_web(who=viewer.name, action="logout", result="info")

    def _refuse(self, who: str, reason: str) -> None:
        self._backend.audit_web(who=who, action="login", result="denied", reason=reason)
        self._backend.metrics.web_logins.labels("denied").inc()
        raise LoginRefused(reason)


def csrf_matches(expected: str, presented: str | None) -> bool:
    """Constant-time; an empty token (a missing cookie) never matches, not even an empty one."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def _valid_name(name: str) -> bool:
    try:
        check_identifier(name, "user name")
    except ValueError:
        return False
    return True
