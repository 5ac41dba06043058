"""Shared fixtures of the core tests: RSA keys (once per session), a fixed clock, deterministic
randomness, and factories for issuances and lock verifiers.

Nothing here touches the network, the file system, an event loop or the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pure_fixtures import (
    DeterministicRandom,
    backend_key,
    guest_key,
    lock_key,
    other_guest_key,
    other_lock_key,
)
from smartlock import crypto
from smartlock.core.intrusion import IntrusionDetector
from smartlock.core.issuance import Issuance, issue_session_key
from smartlock.core.lock_verifier import LockVerifier
from smartlock.core.messages import NO_PASS, UNLIMITED_USES, SessionRequest

# fixtures, registered by being imported here; DeterministicRandom for the test modules
__all__ = [
    "DeterministicRandom",
    "backend_key",
    "guest_key",
    "lock_key",
    "other_guest_key",
    "other_lock_key",
]

NOW = 1_800_000_000.0
LOCK_ID = "lock1"
OTHER_LOCK_ID = "lock2"
GUEST_ID = "guest1"
OTHER_GUEST_ID = "guest2"


# --- clock and randomness ----------------------------------------------------------------------


@pytest.fixture
def now() -> float:
    return NOW


@pytest.fixture
def random_bytes() -> DeterministicRandom:
    return DeterministicRandom()


# --- factories ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    request: SessionRequest
    issuance: Issuance

    @property
    def lock_payload(self) -> bytes:
        return bytes(self.issuance.lock_delivery)

    @property
    def guest_payload(self) -> bytes:
        return bytes(self.issuance.guest_delivery)


IssueFactory = Callable[..., Issued]


@pytest.fixture
def issue(
    backend_key: crypto.PrivateKey,
    lock_key: crypto.PrivateKey,
    other_lock_key: crypto.PrivateKey,
    guest_key: crypto.PrivateKey,
    other_guest_key: crypto.PrivateKey,
    random_bytes: DeterministicRandom,
) -> IssueFactory:
    """``issue(lock_id=..., guest_id=..., now=..., ttl_s=...)``: a real, backend-signed issuance.

    Each lock id / guest id is encrypted to the matching session key pair unless
    ``lock_public`` / ``guest_public`` say otherwise.  ``pass_id``, ``max_uses`` and
    ``not_after`` issue the key under a guest pass, as the backend's policy grants it.
    """
    lock_keys = {LOCK_ID: lock_key, OTHER_LOCK_ID: other_lock_key}
    guest_keys = {GUEST_ID: guest_key, OTHER_GUEST_ID: other_guest_key}

    def _issue(
        *,
        lock_id: str = LOCK_ID,
        guest_id: str = GUEST_ID,
        now: float = NOW,
        ttl_s: int = 300,
        request_id: bytes | None = None,
        signer: crypto.PrivateKey | None = None,
        lock_public: crypto.PublicKey | None = None,
        guest_public: crypto.PublicKey | None = None,
        pass_id: int = NO_PASS,
        max_uses: int = UNLIMITED_USES,
        not_after: int | None = None,
    ) -> Issued:
        request = SessionRequest(
            request_id=request_id if request_id is not None else random_bytes(16),
            sent_at=int(now),
            lock_id=lock_id,
        )
        issuance = issue_session_key(
            request=request,
            guest_id=guest_id,
            now=now,
            ttl_s=ttl_s,
            backend_key=signer if signer is not None else backend_key,
            lock_public=lock_public or lock_keys[lock_id].public_key(),
            guest_public=guest_public or guest_keys[guest_id].public_key(),
            random_bytes=random_bytes,
            pass_id=pass_id,
            max_uses=max_uses,
            not_after=not_after,
        )
        return Issued(request, issuance)

    return _issue


VerifierFactory = Callable[..., LockVerifier]


@pytest.fixture
def make_verifier(
    backend_key: crypto.PrivateKey,
    lock_key: crypto.PrivateKey,
    other_lock_key: crypto.PrivateKey,
) -> VerifierFactory:
    """``make_verifier(lock_id=..., duplicate_window_s=...)``: a fresh verifier for that lock."""
    lock_keys = {LOCK_ID: lock_key, OTHER_LOCK_ID: other_lock_key}

    def _make(
        *,
        lock_id: str = LOCK_ID,
        duplicate_window_s: float = 3.0,
        intrusion: IntrusionDetector | None = None,
    ) -> LockVerifier:
        return LockVerifier(
            lock_id=lock_id,
            backend_public=backend_key.public_key(),
            lock_key=lock_keys[lock_id],
            duplicate_window_s=duplicate_window_s,
            # Unit tests of the verifier's rules are not about lockouts: a detector that never
            # locks out, unless a test passes its own.
            intrusion=IntrusionDetector(threshold=1_000_000) if intrusion is None else intrusion,
        )

    return _make
