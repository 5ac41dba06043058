"""Signed update bundles for the lock agent: what ``smartlock release sign`` makes and what a
lock accepts (issue "Updates that cannot be forged or rolled back"; ETSI EN 303 645 §5.3).

A bundle is one file::

    b"SLU1" | u16 manifest length | manifest | u16 signature length | signature | payload

* the manifest is canonical JSON: ``v`` (1), ``name``, ``version`` ("X.Y.Z"), ``min_version``
  (the oldest agent that may install it), ``models`` (lock models it is for), ``sha256`` and
  ``size`` of the payload (the agent's wheel);
* the signature is RSA-PSS-SHA-256 (:mod:`smartlock.crypto`) by the *release* key -- not the
  backend's: it can be kept offline -- over ``b"smartlock release v1" 0x00 || manifest``;
* the payload is checked against the manifest's hash and size, so the signature covers it.

A lock accepts a bundle only when the signature verifies against the release key it pins, the
payload matches, its model is listed, its running version is at least ``min_version``, and the
version is *higher than the highest it has ever installed* (kept by the lock across resets: see
:mod:`smartlock.core.update_slots`).  Nothing in the manifest is used before the signature is
checked.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from smartlock import crypto
from smartlock.core.errors import Rejected
from smartlock.core.wire import Reader, Writer

MAGIC = b"SLU1"
MANIFEST_VERSION = 1
SIGNATURE_LABEL = b"smartlock release v1\x00"
MAX_MANIFEST = 4096
MAX_PAYLOAD = 64 * 1024 * 1024
DEFAULT_MODEL = "smartlock-agent"
_VERSION = re.compile(r"(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})")
_MODEL = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

Version = tuple[int, int, int]


class UpdateRefused(Exception):
    """A bundle a lock must not install; ``reason`` is one word for logs and the audit."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_version(text: str) -> Version:
    """``X.Y.Z``, each 0..99999 without leading zeros; ValueError otherwise."""
    match = _VERSION.fullmatch(text)
    if match is None:
        raise ValueError(f"a version is X.Y.Z (e.g. 1.4.0), not {text!r}")
    return (int(match[1]), int(match[2]), int(match[3]))


def version_text(version: Version) -> str:
    return ".".join(str(part) for part in version)


@dataclass(frozen=True)
class Manifest:
    name: str
    version: Version
    min_version: Version
    models: tuple[str, ...]
    sha256: str
    size: int

    def encode(self) -> bytes:
        return json.dumps(
            {
                "v": MANIFEST_VERSION,
                "name": self.name,
                "version": version_text(self.version),
                "min_version": version_text(self.min_version),
                "models": list(self.models),
                "sha256": self.sha256,
                "size": self.size,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Only for a manifest whose signature was checked (see :func:`open_bundle`)."""
        try:
            fields = json.loads(data)
            if not isinstance(fields, dict) or type(fields.get("v")) is not int:
                raise ValueError("not a manifest")
            if fields["v"] != MANIFEST_VERSION:
                raise ValueError(f"manifest version {fields['v']}")
            models = fields["models"]
            if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
                raise ValueError("models")
            manifest = cls(
                name=str(fields["name"]),
                version=parse_version(str(fields["version"])),
                min_version=parse_version(str(fields["min_version"])),
                models=tuple(models),
                sha256=str(fields["sha256"]),
                size=int(fields["size"]),
            )
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise UpdateRefused("malformed", f"the manifest is damaged ({exc})") from None
        if manifest.encode() != data:
            raise UpdateRefused("malformed", "the manifest is not in its canonical form")
        return manifest


@dataclass(frozen=True)
class Bundle:
    manifest: Manifest
    payload: bytes


def make_bundle(
    payload: bytes,
    *,
    release_key: crypto.PrivateKey,
    version: Version,
    min_version: Version = (0, 0, 0),
    models: tuple[str, ...] = (DEFAULT_MODEL,),
    name: str = "smartlock-lock-agent",
) -> bytes:
    """Sign ``payload`` (the agent's wheel) as release ``version``."""
    if not payload or len(payload) > MAX_PAYLOAD:
        raise ValueError(f"the payload must be 1 byte to {MAX_PAYLOAD // 2**20} MiB")
    if min_version > version:
        raise ValueError("min_version is above the version itself")
    if not models or not all(_MODEL.fullmatch(model) for model in models):
        raise ValueError("models are 1-64 characters a-z, 0-9, '.', '_' or '-'")
    manifest = Manifest(
        name=name,
        version=version,
        min_version=min_version,
        models=tuple(models),
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
    ).encode()
    signature = crypto.sign(release_key, SIGNATURE_LABEL + manifest)
    return Writer().raw(MAGIC).long_bytes(manifest).long_bytes(signature).getvalue() + payload


def read_manifest_unverified(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(manifest bytes, signature, payload) split apart, nothing checked yet."""
    if not data.startswith(MAGIC):
        raise UpdateRefused("malformed", "not a smartlock update bundle")
    try:
        reader = Reader(data[len(MAGIC) :])
        manifest = reader.long_bytes()
        signature = reader.long_bytes()
        consumed = len(MAGIC) + 2 + len(manifest) + 2 + len(signature)
    except Rejected:  # an overrun: the file ends before its fields do
        raise UpdateRefused("malformed", "the bundle is truncated") from None
    if len(manifest) > MAX_MANIFEST:
        raise UpdateRefused("malformed", "the manifest is too long")
    return manifest, signature, data[consumed:]


def _verified_manifest(data: bytes, release_public: crypto.PublicKey) -> Manifest:
    manifest_bytes, signature, _ = read_manifest_unverified(data)
    if not crypto.signature_is_valid(release_public, signature, SIGNATURE_LABEL + manifest_bytes):
        raise UpdateRefused("bad_signature", "the bundle is not signed by the pinned release key")
    return Manifest.decode(manifest_bytes)


def _checked_payload(data: bytes, manifest: Manifest) -> Bundle:
    _, _, payload = read_manifest_unverified(data)
    if len(payload) != manifest.size or hashlib.sha256(payload).hexdigest() != manifest.sha256:
        raise UpdateRefused("bad_hash", "the payload does not match its signed hash (truncated?)")
    return Bundle(manifest, payload)


def verify_bundle(data: bytes, *, release_public: crypto.PublicKey) -> Bundle:
    """Signature and payload only (what ``update push`` checks before it offers a bundle; each
    lock then decides on model and versions with :func:`open_bundle`)."""
    return _checked_payload(data, _verified_manifest(data, release_public))


def check_head(
    head: bytes,
    *,
    release_public: crypto.PublicKey,
    running: Version,
    highest_installed: Version,
    model: str = DEFAULT_MODEL,
) -> Manifest:
    """The verified manifest of a bundle's head (magic, manifest, signature; the payload may be
    missing), or :class:`UpdateRefused`: what a lock checks before it downloads anything."""
    manifest = _verified_manifest(head, release_public)
    if model not in manifest.models:
        raise UpdateRefused("wrong_model", f"the bundle is not for model {model}")
    if manifest.version <= highest_installed:
        raise UpdateRefused(
            "not_newer",
            f"version {version_text(manifest.version)} is not above "
            f"{version_text(highest_installed)}, the highest ever installed (rollback refused)",
        )
    if running < manifest.min_version:
        raise UpdateRefused(
            "too_old",
            f"version {version_text(manifest.version)} needs at least "
            f"{version_text(manifest.min_version)} installed first",
        )
    return manifest


def open_bundle(
    data: bytes,
    *,
    release_public: crypto.PublicKey,
    running: Version,
    highest_installed: Version,
    model: str = DEFAULT_MODEL,
) -> Bundle:
    """The verified bundle, or :class:`UpdateRefused` saying why it must not be installed."""
    manifest = check_head(
        data,
        release_public=release_public,
        running=running,
        highest_installed=highest_installed,
        model=model,
    )
    return _checked_payload(data, manifest)
