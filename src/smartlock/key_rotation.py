"""Rotating a lock's or the backend's RSA key pair with an overlap (``smartlock rotate lock-key
LOCK`` and ``smartlock rotate backend-key``; the backend's is described further down).

Start: the current pair is copied to ``*.previous`` files, then the new private key replaces the
lock's (the lock agent reads it again before its next use), then the new public key replaces
the site's copy (the backend reads it again, seals new session keys and the lock's command key
for it).  Until the rotation is finished, the lock still opens deliveries sealed for the
previous key (in flight, or retained on the broker) and the backend still accepts events the
lock signed with it (kept on the lock while it was offline).  Finish: the previous pair is
deleted, so a copy of the old private key is worth nothing from then on.

Each step writes the new file before anything refers to it and is safe to run again after a
crash: a start interrupted before the new key was written leaves a "previous" equal to the
current key, which finishing removes; one interrupted between the new private key and its public
half is completed (the public half made from the private key) by the next start or finish.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from smartlock import crypto
from smartlock.core.errors import ConfigError
from smartlock.site import BACKEND_USER, Site, write_private, write_public


@contextlib.contextmanager
def _key_errors(what: str) -> Iterator[None]:
    """A key file that cannot be read or is not a key, as a one-line ConfigError."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(f"cannot read {what} ({exc.strerror})") from None
    except crypto.CryptoError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _check_lock(site: Site, lock_id: str) -> None:
    if lock_id not in site.locks:
        raise ConfigError(
            f"no lock {lock_id!r} in site {site.root} (locks: {', '.join(site.locks)})"
        )


def rotation_under_way(site: Site, lock_id: str) -> bool:
    return site.previous_private_key_path(lock_id).exists()


def _complete_interrupted_start(site: Site, lock_id: str) -> None:
    """A start cut between the new private key and its public half: publish the public half
    the private key has (the backend then seals for the key the lock holds)."""
    private_path, public_path = site.private_key_path(lock_id), site.public_key_path(lock_id)
    with _key_errors(f"{lock_id}'s key"):
        held = crypto.load_private_key(private_path.read_bytes())
        published = public_path.read_bytes()
    expected = crypto.public_key_to_pem(held.public_key())
    if published != expected:
        write_public(public_path, expected)


def start_lock_key_rotation(site: Site, lock_id: str) -> tuple[str, str]:
    """A new key pair for ``lock_id``, the previous one kept for the overlap; returns the
    (previous, new) public key fingerprints."""
    _check_lock(site, lock_id)
    if rotation_under_way(site, lock_id):
        _complete_interrupted_start(site, lock_id)
        raise ConfigError(
            f"a rotation of {lock_id}'s key is under way: finish it first "
            f"(smartlock rotate lock-key {lock_id} --finish)"
        )
    private_path, public_path = site.private_key_path(lock_id), site.public_key_path(lock_id)
    with _key_errors(f"{lock_id}'s key"):
        old_private = private_path.read_bytes()
        old_public = public_path.read_bytes()
        old = crypto.load_private_key(old_private)
    new = crypto.generate_private_key()
    write_public(site.previous_public_key_path(lock_id), old_public)
    write_private(site.previous_private_key_path(lock_id), old_private)
    write_private(private_path, crypto.private_key_to_pem(new))  # the lock's side first
    write_public(public_path, crypto.public_key_to_pem(new.public_key()))
    return (
        crypto.public_key_fingerprint(old.public_key()),
        crypto.public_key_fingerprint(new.public_key()),
    )


def finish_lock_key_rotation(site: Site, lock_id: str) -> None:
    """End the overlap: the previous key pair is deleted."""
    _check_lock(site, lock_id)
    if not rotation_under_way(site, lock_id):
        raise ConfigError(f"no rotation of {lock_id}'s key is under way")
    _complete_interrupted_start(site, lock_id)
    site.previous_public_key_path(lock_id).unlink(missing_ok=True)
    site.previous_private_key_path(lock_id).unlink(missing_ok=True)


# --- the backend's key ---------------------------------------------------------------------------
#
# Start: the new private key is staged (backend.key.next), the site's public copy of the current
# key becomes public/backend.pub.previous, the new public key public/backend.pub (devices that
# read the site now trust both), the current private key backend.key.previous, and the staged
# key backend.key: the backend signs with it from its next tick and, while the previous private
# key exists, tells every device -- signed with the previous key -- to trust the new one
# (:mod:`smartlock.core.backend_key`).  Finish: the previous public key becomes
# public/backend.pub.retired (the backend tells devices to drop it, signed with the new key),
# and the previous pair is deleted.  A start cut anywhere resumes from the staged key.


def _backend_paths(site: Site) -> tuple[Path, Path, Path, Path, Path]:
    private = site.private_key_path(BACKEND_USER)
    return (
        private,
        private.with_name(private.name + ".next"),
        site.previous_private_key_path(BACKEND_USER),
        site.public_key_path(BACKEND_USER),
        site.previous_public_key_path(BACKEND_USER),
    )


def backend_rotation_under_way(site: Site) -> bool:
    return site.previous_private_key_path(BACKEND_USER).exists()


def start_backend_key_rotation(site: Site) -> tuple[str, str]:
    """A new signing key for the backend, the previous one still trusted; returns the
    (previous, new) fingerprints."""
    private, staged, previous_private, public, previous_public = _backend_paths(site)
    if backend_rotation_under_way(site) and not staged.exists():
        raise ConfigError(
            "a rotation of the backend's key is under way: finish it first "
            "(smartlock rotate backend-key --finish)"
        )
    with _key_errors("the backend's key"):
        if not staged.exists():
            write_private(staged, crypto.private_key_to_pem(crypto.generate_private_key()))
        new = crypto.load_private_key(staged.read_bytes())
        if not previous_private.exists():
            old_private = private.read_bytes()
        else:  # resumed: the current key was already set aside
            old_private = previous_private.read_bytes()
        old = crypto.load_private_key(old_private)
    write_public(previous_public, crypto.public_key_to_pem(old.public_key()))
    write_public(public, crypto.public_key_to_pem(new.public_key()))
    write_private(previous_private, old_private)
    os.replace(staged, private)
    site.retired_backend_key_path.unlink(missing_ok=True)
    return (
        crypto.public_key_fingerprint(old.public_key()),
        crypto.public_key_fingerprint(new.public_key()),
    )


def finish_backend_key_rotation(site: Site) -> str:
    """End the overlap: devices are told to drop the previous key, which is deleted; returns
    its fingerprint."""
    _, staged, previous_private, _, previous_public = _backend_paths(site)
    if staged.exists():
        raise ConfigError(
            "a start of the backend key's rotation was cut short: run 'smartlock rotate "
            "backend-key' again to complete it"
        )
    if not backend_rotation_under_way(site):
        raise ConfigError("no rotation of the backend's key is under way")
    with _key_errors("the previous backend key"):
        old = crypto.load_private_key(previous_private.read_bytes())
    write_public(site.retired_backend_key_path, crypto.public_key_to_pem(old.public_key()))
    previous_public.unlink(missing_ok=True)  # first: the private key marks the rotation
    previous_private.unlink()
    return crypto.public_key_fingerprint(old.public_key())
