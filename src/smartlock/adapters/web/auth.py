"""Signing in to the dashboard: sessions, CSRF tokens, rate-limited and audited sign-ins.

* A password is checked against its scrypt hash (:func:`smartlock.crypto.password_matches`); an
  unknown name costs the same scrypt work, so timing does not tell which names exist.
* An owner with a second factor (``smartlock user totp``) also gives a code: the authenticator
  app's 6 digits, or a recovery code (:mod:`smartlock.core.second_factor`).  The password is
  checked first, and a missing or wrong code is refused exactly like a wrong password (same
  message, same rate limit; audited ``missing_code``, ``bad_code`` or ``replayed_code``), so a
  refusal never tells which of the two was wrong.  A time step signs in once; a recovery code
  works once.
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
from typing import NoReturn

from fastapi import Request

from smartlock import crypto
from smartlock.adapters.web.backend_port import BackendPort
from smartlock.core.errors import StoreError
from smartlock.core.policy import RateLimit
from smartlock.core.roles import Role
from smartlock.core.second_factor import CodeKind, TotpState, is_fresh_step, read_code
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

    def sign_in(
        self, name: str, password: str, address: str, code: str | None = None
    ) -> tuple[str, Viewer]:
        """A new session's cookie value and viewer, or :class:`LoginRefused`.

        ``code`` is the second factor's, for users who have one (ignored for the others).
        """
        now = self._backend.now()
        known = _valid_name(name)
        if not self._by_address.allow(f"address:{address}", now) or not self._by_name.allow(
            f"name:{name if known else '?'}", now
        ):
            self._refuse(name if known else "", "rate_limited")
        stored = self._backend.store.web_password_hash(name) if known else None
        matches = crypto.password_matches(password, stored or _DECOY_HASH)
        user = self._backend.store.get_user(name) if known else None
        # read before the verdict on the password: a wrong password and a wrong code take the
        # same steps until then
        factor = self._second_factor_of(name) if known else None
        if stored is None or user is None or not user.active:
            self._refuse(name if user is not None else "", "unknown_user")
        if not matches:
            self._refuse(name, "bad_password")
        assert user is not None
        used = "" if factor is None else self._check_code(name, factor, code, now)
        token = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        digest = crypto.token_digest(token)
        self._backend.store.open_web_session(
            digest, name, csrf_token, now=int(now), expires_at=int(now) + SESSION_TTL_S
        )
        self._backend.audit_web(who=name, action="login", result="granted", reason=used)
        self._backend.metrics.web_logins.labels("granted").inc()
        return token, Viewer(name, user.role, csrf_token, digest)

    def _second_factor_of(self, name: str) -> TotpState | StoreError | None:
        """The user's second factor, the error of one that does not open, or None."""
        try:
            return self._backend.store.web_totp(name)
        except StoreError as exc:
            return exc

    def _check_code(
        self, name: str, factor: TotpState | StoreError, code: str | None, now: float
    ) -> str:
        """Check the code of a user whose password matched: the factor used (``totp`` or
        ``recovery_code``, for the audit log), or :class:`LoginRefused`."""
        if isinstance(factor, StoreError):  # an altered row: refuse, never skip the factor
            self._refuse(name, "unreadable_totp")
        presented = read_code(code)
        if presented.kind is CodeKind.MISSING:
            self._refuse(name, "missing_code")
        store = self._backend.store
        if presented.kind is CodeKind.TOTP:
            step = crypto.totp_matching_step(factor.secret, presented.value, at=now)
            if step is None:
                self._refuse(name, "bad_code")
            if not is_fresh_step(step, factor.last_step) or not store.accept_totp_step(name, step):
                self._refuse(name, "replayed_code")
            return "totp"
        if presented.kind is not CodeKind.RECOVERY or not store.use_recovery_code(
            name, crypto.token_digest(presented.value), now=int(now)
        ):
            self._refuse(name, "bad_code")
        return "recovery_code"

    def sign_out(self, viewer: Viewer) -> None:
        self._backend.store.close_web_session(viewer.session_digest)
        self._backend.audit_web(who=viewer.name, action="logout", result="info")

    def _refuse(self, who: str, reason: str) -> NoReturn:
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
