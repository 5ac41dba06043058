"""What the pure-core tests (tests/core) and the fuzz suite (tests/fuzz) share: RSA key pairs made
once per session (generation is slow), and deterministic randomness.  Each of those suites'
conftest registers the fixtures by importing them."""

from __future__ import annotations

import hashlib

import pytest

from smartlock import crypto


class DeterministicRandom:
    """A reproducible stand-in for ``crypto.random_bytes``: every call returns fresh bytes."""

    def __init__(self, seed: bytes = b"smartlock-tests") -> None:
        self._seed = seed
        self._block = 0

    def __call__(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            out += hashlib.sha256(self._seed + self._block.to_bytes(8, "big")).digest()
            self._block += 1
        return out[:size]


@pytest.fixture(scope="session")
def backend_key() -> crypto.PrivateKey:
    return crypto.generate_private_key()


@pytest.fixture(scope="session")
def lock_key() -> crypto.PrivateKey:
    return crypto.generate_private_key()


@pytest.fixture(scope="session")
def other_lock_key() -> crypto.PrivateKey:
    return crypto.generate_private_key()


@pytest.fixture(scope="session")
def guest_key() -> crypto.PrivateKey:
    return crypto.generate_private_key()


@pytest.fixture(scope="session")
def other_guest_key() -> crypto.PrivateKey:
    return crypto.generate_private_key()
