"""smartlock.adapters.backend_trust: the backend keys a device trusts, read from its site's
``public/`` files and changed by the backend's signed notices.

Two kinds of device: one that reads the site's own files (it follows ``smartlock rotate
backend-key`` through them), and one that keeps its own copy of the site, made before the
rotation (it learns the new key only from a notice).  Creating a site's keys takes about a
second, so one site is made per module and copied for every test; the new backend key and a
stranger's key are made once too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from site_copies import copy_site
from smartlock import crypto
from smartlock.adapters.backend_trust import BackendTrust
from smartlock.admin import create_site
from smartlock.broker import free_port
from smartlock.core.backend_key import ENDORSE, RETIRE, make_backend_key_notice
from smartlock.core.errors import Reason, Rejected
from smartlock.key_rotation import finish_backend_key_rotation, start_backend_key_rotation
from smartlock.site import BACKEND_USER, Site

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def new_key() -> crypto.PrivateKey:
    """The key a rotation hands out (RSA key generation is slow: made once)."""
    return crypto.generate_private_key()


@pytest.fixture(scope="module")
def stranger_key() -> crypto.PrivateKey:
    return crypto.generate_private_key()


@pytest.fixture(autouse=True)
def _rotations_hand_out_the_new_key(
    monkeypatch: pytest.MonkeyPatch, new_key: crypto.PrivateKey
) -> None:
    monkeypatch.setattr(crypto, "generate_private_key", lambda: new_key)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return create_site(
        tmp_path_factory.mktemp("template") / "site",
        locks=["lock_01"],
        owners=["owner"],
        broker_port=free_port(),
    )


@pytest.fixture
def site(template: Site, tmp_path: Path) -> Site:
    """A copy of the template that the test may change."""
    return copy_site(template, tmp_path / "site")


@pytest.fixture
def device(template: Site, tmp_path: Path) -> Site:
    """A device's own copy of the site (an enrolled phone): it pins the site's first key."""
    return copy_site(template, tmp_path / "device")


@pytest.fixture(scope="module")
def old_key(template: Site) -> crypto.PrivateKey:
    """The site's first key, which every copy pins."""
    return template.private_key(BACKEND_USER)


def _ders(keys: tuple[crypto.PublicKey, ...]) -> list[bytes]:
    return [crypto.public_key_to_der(key) for key in keys]


def _der(key: crypto.PrivateKey) -> bytes:
    return crypto.public_key_to_der(key.public_key())


def _fingerprint(key: crypto.PrivateKey) -> str:
    return crypto.public_key_fingerprint(key.public_key())


def _public_files(site: Site) -> dict[str, bytes]:
    """Every file under the site's ``public/`` and what it holds."""
    public = site.root / "public"
    return {str(p.relative_to(public)): p.read_bytes() for p in public.rglob("*") if p.is_file()}


def _notice(kind: int, key: crypto.PrivateKey, signed_by: crypto.PrivateKey) -> bytes:
    return make_backend_key_notice(kind, key.public_key(), now=NOW, signing_key=signed_by)


@pytest.fixture
def endorsed(device: Site, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey) -> BackendTrust:
    """The device's trust after the backend's endorsement of the new key arrived."""
    trust = BackendTrust(device)
    trust.on_notice(_notice(ENDORSE, new_key, signed_by=old_key))
    return trust


# --- a device that reads the site's files --------------------------------------------------------


def test_before_any_rotation_the_pinned_key_alone_is_trusted(
    site: Site, old_key: crypto.PrivateKey
) -> None:
    assert _ders(BackendTrust(site).keys()) == [_der(old_key)]


def test_a_started_rotation_is_followed_new_key_first_without_a_new_object(
    site: Site, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    trust = BackendTrust(site)

    start_backend_key_rotation(site)

    assert _ders(trust.keys()) == [_der(new_key), _der(old_key)]


def test_a_finished_rotation_is_followed_and_the_old_key_is_no_longer_trusted(
    site: Site, new_key: crypto.PrivateKey
) -> None:
    trust = BackendTrust(site)
    start_backend_key_rotation(site)
    trust.keys()

    finish_backend_key_rotation(site)

    assert _ders(trust.keys()) == [_der(new_key)]


def test_refresh_says_whether_the_trusted_keys_changed(site: Site) -> None:
    trust = BackendTrust(site)
    assert trust.refresh() is False

    start_backend_key_rotation(site)

    assert trust.refresh() is True
    assert trust.refresh() is False


def test_an_unreadable_pinned_file_keeps_the_key_already_pinned(
    site: Site, old_key: crypto.PrivateKey
) -> None:
    trust = BackendTrust(site)

    site.public_key_path(BACKEND_USER).write_bytes(b"not a key")

    assert _ders(trust.keys()) == [_der(old_key)]


# --- a device with its own copy of the site: the endorsement -------------------------------------


def test_an_endorsement_by_the_old_key_pins_the_new_key_and_keeps_the_old_one(
    device: Site, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    trust = BackendTrust(device)

    changed = trust.on_notice(_notice(ENDORSE, new_key, signed_by=old_key))

    assert changed == f"now trusts backend key {_fingerprint(new_key)}"
    assert _ders(trust.keys()) == [_der(new_key), _der(old_key)]
    files = _public_files(device)
    assert files["backend.pub"] == crypto.public_key_to_pem(new_key.public_key())
    assert files["backend.pub.previous"] == crypto.public_key_to_pem(old_key.public_key())


def test_the_endorsement_is_kept_on_disk_for_the_next_start_of_the_device(
    endorsed: BackendTrust, device: Site, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    assert _ders(BackendTrust(Site.load(device.root)).keys()) == [_der(new_key), _der(old_key)]


def test_an_endorsement_of_the_pinned_key_changes_nothing(
    endorsed: BackendTrust, device: Site, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    before = _public_files(device)

    assert endorsed.on_notice(_notice(ENDORSE, new_key, signed_by=old_key)) == ""
    assert endorsed.on_notice(_notice(ENDORSE, new_key, signed_by=new_key)) == ""

    assert _public_files(device) == before
    assert _ders(endorsed.keys()) == [_der(new_key), _der(old_key)]


def test_an_endorsement_of_the_key_already_pinned_before_any_rotation_writes_no_file(
    device: Site, old_key: crypto.PrivateKey
) -> None:
    trust = BackendTrust(device)
    before = _public_files(device)

    assert trust.on_notice(_notice(ENDORSE, old_key, signed_by=old_key)) == ""

    assert _public_files(device) == before


# --- a device with its own copy of the site: the retirement --------------------------------------


def test_a_retirement_by_the_new_key_of_the_old_key_drops_the_previous_file(
    endorsed: BackendTrust, device: Site, old_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    changed = endorsed.on_notice(_notice(RETIRE, old_key, signed_by=new_key))

    assert changed == f"retired backend key {_fingerprint(old_key)}"
    assert _ders(endorsed.keys()) == [_der(new_key)]
    assert not device.previous_public_key_path(BACKEND_USER).exists()
    assert _public_files(device)["backend.pub"] == crypto.public_key_to_pem(new_key.public_key())


def test_once_retired_the_old_key_is_trusted_for_nothing(
    endorsed: BackendTrust,
    old_key: crypto.PrivateKey,
    new_key: crypto.PrivateKey,
    stranger_key: crypto.PrivateKey,
) -> None:
    endorsed.on_notice(_notice(RETIRE, old_key, signed_by=new_key))

    with pytest.raises(Rejected) as caught:
        endorsed.on_notice(_notice(ENDORSE, stranger_key, signed_by=old_key))

    assert caught.value.reason == Reason.BAD_SIGNATURE
    assert _ders(endorsed.keys()) == [_der(new_key)]


def test_a_retirement_of_a_key_that_is_not_the_previous_one_changes_nothing(
    endorsed: BackendTrust,
    device: Site,
    new_key: crypto.PrivateKey,
    stranger_key: crypto.PrivateKey,
    old_key: crypto.PrivateKey,
) -> None:
    before = _public_files(device)

    assert endorsed.on_notice(_notice(RETIRE, stranger_key, signed_by=new_key)) == ""
    assert endorsed.on_notice(_notice(RETIRE, new_key, signed_by=new_key)) == ""

    assert _public_files(device) == before
    assert _ders(endorsed.keys()) == [_der(new_key), _der(old_key)]


def test_a_retirement_with_no_rotation_under_way_changes_nothing(
    device: Site, old_key: crypto.PrivateKey, stranger_key: crypto.PrivateKey
) -> None:
    trust = BackendTrust(device)
    before = _public_files(device)

    assert trust.on_notice(_notice(RETIRE, stranger_key, signed_by=old_key)) == ""
    assert trust.on_notice(_notice(RETIRE, old_key, signed_by=old_key)) == ""

    assert _public_files(device) == before
    assert _ders(trust.keys()) == [_der(old_key)]


# --- what changes nothing ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [ENDORSE, RETIRE], ids=["endorse", "retire"])
def test_a_notice_signed_by_an_unrelated_key_is_rejected_and_changes_no_file(
    device: Site, old_key: crypto.PrivateKey, stranger_key: crypto.PrivateKey, kind: int
) -> None:
    trust = BackendTrust(device)
    before = _public_files(device)

    with pytest.raises(Rejected) as caught:
        trust.on_notice(_notice(kind, stranger_key, signed_by=stranger_key))

    assert caught.value.reason == Reason.BAD_SIGNATURE
    assert _public_files(device) == before
    assert _ders(trust.keys()) == [_der(old_key)]


def test_an_endorsement_signed_by_the_key_it_endorses_is_rejected(
    device: Site, new_key: crypto.PrivateKey
) -> None:
    trust = BackendTrust(device)
    before = _public_files(device)

    with pytest.raises(Rejected) as caught:
        trust.on_notice(_notice(ENDORSE, new_key, signed_by=new_key))

    assert caught.value.reason == Reason.BAD_SIGNATURE
    assert _public_files(device) == before


def test_an_empty_payload_changes_nothing(device: Site, old_key: crypto.PrivateKey) -> None:
    """A retained notice cleared from the broker arrives as an empty message."""
    trust = BackendTrust(device)
    before = _public_files(device)

    assert trust.on_notice(b"") == ""

    assert _public_files(device) == before
    assert _ders(trust.keys()) == [_der(old_key)]
