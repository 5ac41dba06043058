"""Signed update bundles: a lock accepts exactly the bundles the release key signed, for its
model, newer than anything it ever installed -- and says why it refuses any other."""

from __future__ import annotations

import hashlib

import pytest

from smartlock import crypto
from smartlock.core.release import (
    MAGIC,
    Manifest,
    UpdateRefused,
    check_head,
    make_bundle,
    open_bundle,
    parse_version,
    read_manifest_unverified,
    version_text,
)

WHEEL = b"PK\x03\x04 pretend this is the agent's wheel " * 64


@pytest.fixture(scope="module")
def release_key(backend_key: crypto.PrivateKey) -> crypto.PrivateKey:
    return backend_key  # any RSA key of the session; what matters is which one signed


def _open(
    data: bytes,
    key: crypto.PrivateKey,
    *,
    running: str = "1.0.0",
    installed: str = "1.0.0",
    model: str = "smartlock-agent",
) -> object:
    return open_bundle(
        data,
        release_public=key.public_key(),
        running=parse_version(running),
        highest_installed=parse_version(installed),
        model=model,
    )


def _refusal(data: bytes, key: crypto.PrivateKey, **kwargs: str) -> str:
    with pytest.raises(UpdateRefused) as refused:
        _open(data, key, **kwargs)
    return refused.value.reason


def test_a_newer_bundle_signed_by_the_release_key_opens_with_its_payload(
    release_key: crypto.PrivateKey,
) -> None:
    data = make_bundle(WHEEL, release_key=release_key, version=(1, 1, 0))
    opened = _open(data, release_key)
    assert opened.payload == WHEEL  # type: ignore[attr-defined]
    manifest = opened.manifest  # type: ignore[attr-defined]
    assert manifest.version == (1, 1, 0)
    assert manifest.sha256 == hashlib.sha256(WHEEL).hexdigest()
    assert manifest.size == len(WHEEL)
    assert data.startswith(MAGIC)


def test_a_bundle_signed_by_another_key_is_refused(
    release_key: crypto.PrivateKey, lock_key: crypto.PrivateKey
) -> None:
    data = make_bundle(WHEEL, release_key=lock_key, version=(2, 0, 0))
    assert _refusal(data, release_key) == "bad_signature"


@pytest.mark.parametrize("where", ["manifest", "signature", "payload"])
def test_a_tampered_bundle_is_refused(release_key: crypto.PrivateKey, where: str) -> None:
    data = bytearray(make_bundle(WHEEL, release_key=release_key, version=(1, 1, 0)))
    manifest, _, _ = read_manifest_unverified(bytes(data))
    offset = {
        "manifest": len(MAGIC) + 2 + manifest.index(b'"1.1.0"') + 3,  # 1.1.0 -> 1.9.0
        "signature": len(MAGIC) + 2 + len(manifest) + 2 + 10,
        "payload": len(data) - 5,
    }[where]
    data[offset] = ord("9") if where == "manifest" else data[offset] ^ 0x01
    expected = "bad_hash" if where == "payload" else "bad_signature"
    assert _refusal(bytes(data), release_key) == expected


@pytest.mark.parametrize("keep", [0, 3, 10, 300, -1])
def test_a_truncated_download_is_refused(release_key: crypto.PrivateKey, keep: int) -> None:
    data = make_bundle(WHEEL, release_key=release_key, version=(1, 1, 0))
    cut = data[:keep]
    reason = _refusal(cut, release_key)
    assert reason in ("malformed", "bad_signature", "bad_hash")
    if keep == -1:  # the whole manifest and signature, one payload byte short
        assert reason == "bad_hash"


@pytest.mark.parametrize(
    ("version", "installed"), [("1.0.0", "1.0.0"), ("0.9.9", "1.0.0"), ("1.0.0", "2.0.0")]
)
def test_an_older_or_equal_version_is_refused_as_a_rollback(
    release_key: crypto.PrivateKey, version: str, installed: str
) -> None:
    data = make_bundle(WHEEL, release_key=release_key, version=parse_version(version))
    assert _refusal(data, release_key, installed=installed, running=installed) == "not_newer"


def test_a_bundle_for_another_model_is_refused(release_key: crypto.PrivateKey) -> None:
    data = make_bundle(WHEEL, release_key=release_key, version=(1, 1, 0), models=("garage-door",))
    assert _refusal(data, release_key) == "wrong_model"


def test_a_bundle_that_needs_a_newer_agent_first_is_refused(
    release_key: crypto.PrivateKey,
) -> None:
    data = make_bundle(WHEEL, release_key=release_key, version=(3, 0, 0), min_version=(2, 0, 0))
    assert _refusal(data, release_key, running="1.5.0", installed="1.5.0") == "too_old"


def test_not_a_bundle_is_refused_as_malformed(release_key: crypto.PrivateKey) -> None:
    assert _refusal(b"PK\x03\x04 a plain wheel", release_key) == "malformed"


@pytest.mark.parametrize("text", ["1.2", "1.2.3.4", "01.2.3", "1.2.x", "", "-1.0.0", "100000.0.0"])
def test_a_version_that_is_not_x_y_z_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"X\.Y\.Z"):
        parse_version(text)


def test_versions_compare_as_numbers_not_text() -> None:
    assert parse_version("1.10.0") > parse_version("1.9.9")
    assert version_text(parse_version("10.0.3")) == "10.0.3"


def test_a_manifest_not_in_canonical_form_is_refused() -> None:
    manifest = Manifest("x", (1, 0, 0), (0, 0, 0), ("smartlock-agent",), "00" * 32, 1)
    spaced = manifest.encode().replace(b",", b", ")
    with pytest.raises(UpdateRefused, match="canonical"):
        Manifest.decode(spaced)
    assert Manifest.decode(manifest.encode()) == manifest


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"version": (1, 0, 0), "min_version": (2, 0, 0)}, "above the version"),
        ({"version": (1, 0, 0), "models": ()}, "models are"),
        ({"version": (1, 0, 0), "models": ("Bad Model",)}, "models are"),
    ],
)
def test_a_bundle_that_makes_no_sense_is_not_made(
    release_key: crypto.PrivateKey, kwargs: dict[str, object], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        make_bundle(WHEEL, release_key=release_key, **kwargs)  # type: ignore[arg-type]


# --- the head alone: what a lock checks before it downloads anything -----------------------------


def _head(data: bytes) -> bytes:
    """The bundle without its payload: magic, manifest, signature."""
    _, _, payload = read_manifest_unverified(data)
    return data[: len(data) - len(payload)]


def _head_refusal(head: bytes, key: crypto.PrivateKey, **kwargs: str) -> str:
    with pytest.raises(UpdateRefused) as refused:
        check_head(
            head,
            release_public=key.public_key(),
            running=parse_version(kwargs.get("running", "1.0.0")),
            highest_installed=parse_version(kwargs.get("installed", "1.0.0")),
            model=kwargs.get("model", "smartlock-agent"),
        )
    return refused.value.reason


def test_check_head_accepts_a_head_without_its_payload(release_key: crypto.PrivateKey) -> None:
    data = make_bundle(WHEEL, release_key=release_key, version=(1, 1, 0))
    head = _head(data)
    assert len(head) == len(data) - len(WHEEL)
    manifest = check_head(
        head,
        release_public=release_key.public_key(),
        running=(1, 0, 0),
        highest_installed=(1, 0, 0),
    )
    assert manifest.version == (1, 1, 0)
    assert (manifest.size, manifest.sha256) == (len(WHEEL), hashlib.sha256(WHEEL).hexdigest())


@pytest.mark.parametrize(
    ("signer", "bundle_kwargs", "lock_kwargs", "reason"),
    [
        ("other", {"version": (2, 0, 0)}, {}, "bad_signature"),
        ("release", {"version": (1, 1, 0), "models": ("garage-door",)}, {}, "wrong_model"),
        ("release", {"version": (1, 1, 0)}, {"model": "garage-door"}, "wrong_model"),
        ("release", {"version": (1, 0, 0)}, {}, "not_newer"),
        ("release", {"version": (1, 5, 0)}, {"installed": "2.0.0"}, "not_newer"),
        ("release", {"version": (3, 0, 0), "min_version": (2, 0, 0)}, {}, "too_old"),
    ],
    ids=[
        "other-key",
        "bundle-for-another-model",
        "lock-of-another-model",
        "same-version",
        "below-highest-installed",
        "needs-a-newer-agent",
    ],
)
def test_check_head_refuses_from_the_head_alone(
    release_key: crypto.PrivateKey,
    lock_key: crypto.PrivateKey,
    signer: str,
    bundle_kwargs: dict[str, object],
    lock_kwargs: dict[str, str],
    reason: str,
) -> None:
    key = release_key if signer == "release" else lock_key
    data = make_bundle(WHEEL, release_key=key, **bundle_kwargs)  # type: ignore[arg-type]
    assert _head_refusal(_head(data), release_key, **lock_kwargs) == reason
    assert _refusal(data, release_key, **lock_kwargs) == reason  # the same as the whole bundle


@pytest.mark.parametrize("keep", [0, 1, len(WHEEL) // 2, len(WHEEL) - 1])
def test_open_bundle_refuses_a_head_that_passes_with_a_truncated_payload(
    release_key: crypto.PrivateKey, keep: int
) -> None:
    data = make_bundle(WHEEL, release_key=release_key, version=(1, 1, 0))
    cut = _head(data) + WHEEL[:keep]
    manifest = check_head(
        cut, release_public=release_key.public_key(), running=(1, 0, 0), highest_installed=(1, 0, 0)
    )
    assert manifest.size == len(WHEEL)  # the head passes: only the payload is wrong
    assert _refusal(cut, release_key) == "bad_hash"


def test_open_bundle_refuses_a_payload_with_extra_bytes_as_bad_hash(
    release_key: crypto.PrivateKey,
) -> None:
    data = make_bundle(WHEEL, release_key=release_key, version=(1, 1, 0))
    assert _refusal(data + b"\x00", release_key) == "bad_hash"
