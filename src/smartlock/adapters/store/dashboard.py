"""The web dashboard's part of the store: passwords, signed-in sessions, guest invitations,
owners' second factors.

A mixin of :class:`smartlock.adapters.store.Store` (same transactions, same errors).  Secrets
arrive here already reduced: a password as its scrypt hash, a cookie, an invitation code or a
recovery code as its SHA-256 (:mod:`smartlock.crypto`), so the database never holds a usable
secret.  The one secret that must be read back, a TOTP secret, is sealed here, under a key
derived from the store's audit key, which is kept outside the database: a copy of the database
alone does not hold it either.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from smartlock import crypto
from smartlock.adapters.store.tables import (
    InvitationRow,
    PassRow,
    UserRow,
    WebLoginRow,
    WebRecoveryCodeRow,
    WebSessionRow,
    WebTotpRow,
)
from smartlock.core.errors import StoreError
from smartlock.core.records import Invitation, WebSession
from smartlock.core.second_factor import TotpState


class DashboardStore:
    """Methods :class:`Store` gets for the dashboard (see the module docstring)."""

    _audit_key: bytes  # provided by Store

    def _writing(self) -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    def _reading(self, *, snapshot: bool = False) -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    # --- passwords ---------------------------------------------------------------------------

    def set_web_password(self, name: str, password_hash: str, *, now: int) -> None:
        """Set (or replace) an active user's dashboard password; signs out its sessions."""
        with self._writing() as session:
            user = session.get(UserRow, name)
            if user is None or user.removed_at is not None:
                raise StoreError(f"unknown user {name}")
            row = session.get(WebLoginRow, name, with_for_update=True)
            if row is None:
                session.add(
                    WebLoginRow(user_name=name, password_hash=password_hash, changed_at=now)
                )
            else:
                row.password_hash, row.changed_at = password_hash, now
            session.execute(delete(WebSessionRow).where(WebSessionRow.user_name == name))

    def web_password_hash(self, name: str) -> str | None:
        """The user's password hash; None when the user has none or was removed."""
        with self._reading() as session:
            user = session.get(UserRow, name)
            row = session.get(WebLoginRow, name)
            if user is None or user.removed_at is not None or row is None:
                return None
            return row.password_hash

    # --- second factor (TOTP) ---------------------------------------------------------------

    def set_web_totp(
        self, name: str, secret: str, recovery_digests: Sequence[str], *, now: int
    ) -> None:
        """Give an active user a new TOTP secret (stored sealed) and recovery codes (their
        SHA-256), replacing any earlier ones; signs out the user's sessions."""
        nonce, sealed = crypto.seal_totp_secret(self._audit_key, name, secret)
        with self._writing() as session:
            user = session.get(UserRow, name, with_for_update=True)
            if user is None or user.removed_at is not None:
                raise StoreError(f"unknown user {name}")
            session.execute(delete(WebTotpRow).where(WebTotpRow.user_name == name))
            session.execute(delete(WebRecoveryCodeRow).where(WebRecoveryCodeRow.user_name == name))
            session.add(
                WebTotpRow(
                    user_name=name, secret_sealed=sealed, nonce=nonce, enabled_at=now, last_step=0
                )
            )
            session.add_all(
                WebRecoveryCodeRow(code_digest=digest, user_name=name, used_at=None)
                for digest in recovery_digests
            )
            session.execute(delete(WebSessionRow).where(WebSessionRow.user_name == name))

    def remove_web_totp(self, name: str) -> bool:
        """Turn the user's second factor off (secret and recovery codes); whether it was on."""
        with self._writing() as session:
            session.execute(delete(WebRecoveryCodeRow).where(WebRecoveryCodeRow.user_name == name))
            removed = session.execute(delete(WebTotpRow).where(WebTotpRow.user_name == name))
            return bool(removed.rowcount)  # type: ignore[attr-defined]

    def web_totp(self, name: str) -> TotpState | None:
        """The user's second factor, its secret opened; None when the user has none.

        A row that does not open (altered, moved to another user, another audit key) raises
        :class:`StoreError`: the caller refuses the sign-in rather than skip the factor.
        """
        with self._reading() as session:
            row = session.get(WebTotpRow, name)
            if row is None:
                return None
            nonce, sealed, last_step = row.nonce, row.secret_sealed, row.last_step
        try:
            secret = crypto.open_totp_secret(self._audit_key, name, nonce, sealed)
        except crypto.CryptoError:
            raise StoreError(f"the second factor of {name} does not open") from None
        return TotpState(secret, last_step)

    def accept_totp_step(self, name: str, step: int) -> bool:
        """Record ``step`` as the user's last accepted time step if it is later than the last
        one; ``False`` for a step already used (or an earlier one).  Concurrent sign-ins with
        the same code: exactly one wins."""
        with self._writing() as session:
            done = session.execute(
                update(WebTotpRow)
                .where(WebTotpRow.user_name == name, WebTotpRow.last_step < step)
                .values(last_step=step)
            )
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    def use_recovery_code(self, name: str, code_digest: str, *, now: int) -> bool:
        """Use one of the user's recovery codes, once; ``False`` for an unknown code, another
        user's, or one already used.  Concurrent uses: exactly one wins."""
        with self._writing() as session:
            done = session.execute(
                update(WebRecoveryCodeRow)
                .where(
                    WebRecoveryCodeRow.code_digest == code_digest,
                    WebRecoveryCodeRow.user_name == name,
                    WebRecoveryCodeRow.used_at.is_(None),
                )
                .values(used_at=now)
            )
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    def recovery_codes_left(self, name: str) -> int:
        """How many of the user's recovery codes are still unused."""
        with self._reading() as session:
            return len(
                session.scalars(
                    select(WebRecoveryCodeRow.code_digest).where(
                        WebRecoveryCodeRow.user_name == name, WebRecoveryCodeRow.used_at.is_(None)
                    )
                ).all()
            )

    # --- sessions ----------------------------------------------------------------------------

    def open_web_session(
        self, token_digest: str, name: str, csrf_token: str, *, now: int, expires_at: int
    ) -> None:
        with self._writing() as session:
            session.execute(delete(WebSessionRow).where(WebSessionRow.expires_at <= now))
            session.add(
                WebSessionRow(
                    token_digest=token_digest,
                    user_name=name,
                    csrf_token=csrf_token,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def web_session(self, token_digest: str, *, now: int) -> WebSession | None:
        """The live session under this cookie digest, if its user is still active."""
        with self._reading() as session:
            row = session.get(WebSessionRow, token_digest)
            if row is None or row.expires_at <= now:
                return None
            user = session.get(UserRow, row.user_name)
            if user is None or user.removed_at is not None:
                return None
            return WebSession(row.user_name, row.csrf_token, row.expires_at)

    def close_web_session(self, token_digest: str) -> None:
        with self._writing() as session:
            session.execute(delete(WebSessionRow).where(WebSessionRow.token_digest == token_digest))

    # --- invitations -------------------------------------------------------------------------

    def create_invitation(
        self, code_digest: str, pass_id: int, *, created_by: str, now: int, expires_at: int
    ) -> Invitation:
        """An invitation for the guest of an active pass (not revoked, not over)."""
        with self._writing() as session:
            pass_row = session.get(PassRow, pass_id)
            if pass_row is None:
                raise StoreError(f"unknown pass {pass_id}")
            if pass_row.revoked_at is not None:
                raise StoreError(f"pass {pass_id} is revoked")
            if pass_row.valid_until <= now:
                raise StoreError(f"pass {pass_id} is over")
            expires_at = min(expires_at, pass_row.valid_until)  # never outlives its pass
            session.add(
                InvitationRow(
                    code_digest=code_digest,
                    pass_id=pass_id,
                    guest=pass_row.guest,
                    created_by=created_by,
                    created_at=now,
                    expires_at=expires_at,
                    used_at=None,
                )
            )
            return Invitation(
                pass_id,
                pass_row.guest,
                pass_row.lock_id,
                created_by,
                expires_at,
            )

    def redeem_invitation(self, code_digest: str, *, now: int) -> Invitation:
        """Use an invitation, once: a second use, an expired code or a revoked pass is refused
        (:class:`StoreError` saying which).  Concurrent redeemers: exactly one wins."""
        with self._writing() as session:
            row = session.get(InvitationRow, code_digest, with_for_update=True)
            if row is None:
                raise StoreError("unknown invitation code")
            if row.used_at is not None:
                raise StoreError("this invitation code was already used")
            if row.expires_at <= now:
                raise StoreError("this invitation code has expired")
            pass_row = session.get(PassRow, row.pass_id)
            if pass_row is None or pass_row.revoked_at is not None:
                raise StoreError("the pass of this invitation was revoked")
            done = session.execute(
                update(InvitationRow)
                .where(InvitationRow.code_digest == code_digest, InvitationRow.used_at.is_(None))
                .values(used_at=now)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise StoreError("this invitation code was already used")
            return Invitation(
                row.pass_id, row.guest, pass_row.lock_id, row.created_by, row.expires_at, now
            )
