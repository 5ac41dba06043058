"""The backend keys a device trusts (a lock agent, a guest or owner app), kept in its site's
``public/`` directory: ``backend.pub`` (pinned) and, during a rotation's overlap,
``backend.pub.previous``.  Read again whenever either file changes (the site's own
``smartlock rotate backend-key`` writes them); changed by the backend's signed notices for a
device that keeps its own copy of the site (:mod:`smartlock.core.backend_key`); and the site
CA certificates it trusts (``ca.crt``), from the backend's signed CA notice
(:mod:`smartlock.core.ca_notice`)."""

from __future__ import annotations

import logging
from pathlib import Path

from smartlock import crypto
from smartlock.adapters.key_files import MISSING, file_version
from smartlock.core.backend_key import ENDORSE, open_backend_key_notice
from smartlock.core.ca_notice import open_ca_notice
from smartlock.core.errors import Reason, Rejected
from smartlock.site import BACKEND_USER, Site, write_public

logger = logging.getLogger("smartlock.trust")


def _load(path: Path) -> crypto.PublicKey | None:
    try:
        return crypto.load_public_key(path.read_bytes())
    except (OSError, crypto.CryptoError) as exc:
        logger.error("Backend key %s unreadable (%s); not trusted", path, exc)
        return None


class BackendTrust:
    def __init__(self, site: Site) -> None:
        self._pinned_path = site.public_key_path(BACKEND_USER)
        self._previous_path = site.previous_public_key_path(BACKEND_USER)
        self._pinned = site.public_key(BACKEND_USER)  # a clear ConfigError if it is missing
        self._previous: crypto.PublicKey | None = None
        self._seen: tuple[tuple[int, int], ...] = ()
        self.refresh()

    def refresh(self) -> bool:
        """Read the files again if either changed; True when the trusted keys changed."""
        seen = (file_version(self._pinned_path), file_version(self._previous_path))
        if seen == self._seen:
            return False
        self._seen = seen
        pinned = _load(self._pinned_path) if seen[0] != MISSING else None
        if pinned is not None:
            self._pinned = pinned
        self._previous = _load(self._previous_path) if seen[1] != MISSING else None
        return True

    def keys(self) -> tuple[crypto.PublicKey, ...]:
        """The pinned key first, then the previous one while a rotation's overlap lasts."""
        self.refresh()
        if self._previous is None:
            return (self._pinned,)
        return (self._pinned, self._previous)

    def on_notice(self, payload: bytes) -> str:
        """Apply a backend key notice (raises ``Rejected`` for one no trusted key signed);
        returns what changed, "" for nothing."""
        if not payload:
            return ""
        notice = open_backend_key_notice(payload, trusted=self.keys())
        der = crypto.public_key_to_der(notice.key)
        if notice.kind == ENDORSE:
            if der == crypto.public_key_to_der(self._pinned):
                return ""
            write_public(self._previous_path, crypto.public_key_to_pem(self._pinned))
            write_public(self._pinned_path, crypto.public_key_to_pem(notice.key))
            self.refresh()
            return f"now trusts backend key {crypto.public_key_fingerprint(notice.key)}"
        previous = self._previous
        if previous is None or crypto.public_key_to_der(previous) != der:
            return ""
        self._previous_path.unlink(missing_ok=True)
        self.refresh()
        return f"retired backend key {crypto.public_key_fingerprint(previous)}"


CA_NOTICE_SKEW_S = 300  # clock difference allowed between the backend and a device


def apply_ca_notice(ca_path: Path, payload: bytes, trusted: crypto.TrustedKeys) -> str:
    """Make ``ca_path`` (a device's ``ca.crt``) hold the certificates the backend's signed
    notice lists (raises ``Rejected`` for one no trusted key signed, or ``CryptoError`` for
    certificates that are not CA certificates); returns what changed, "" for nothing."""
    if not payload:
        return ""
    notice = open_ca_notice(payload, trusted=trusted)
    held: tuple[bytes, ...] = ()
    written = 0.0  # no ca.crt yet: any notice is newer
    try:
        written = ca_path.stat().st_mtime
        held = crypto.certificates_to_der(ca_path.read_bytes())
    except (OSError, crypto.CryptoError):
        pass  # unreadable or damaged: replaced by the notice (if it is not older)
    if held == notice.certificates:
        return ""
    if notice.at + CA_NOTICE_SKEW_S < written:
        # ca.crt changed after this notice was made: an older notice (a replay, say, of the
        # overlap's two-CA bundle after the rotation finished) must not bring a CA back
        raise Rejected(Reason.STALE, "a CA notice older than this device's ca.crt")
    write_public(ca_path, crypto.certificates_to_pem(notice.certificates))
    return f"now trusts {len(notice.certificates)} site CA certificate(s)"
