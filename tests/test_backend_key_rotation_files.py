"""smartlock.key_rotation's second half and ``smartlock rotate backend-key``: the files a rotation
of the backend's signing key writes, in which order, how a start cut short is completed, and what
the command prints and audits.

Creating a site's keys takes about a second, so one site is made per module and copied for
every test; the keys rotations hand out are made once too.  What the running backend and the
devices make of the files is covered in tests/services/test_backend_key_notices.py,
tests/adapters/test_backend_trust.py and end to end in tests/e2e/test_backend_key_rotation.py.
"""

from __future__ import annotations

import itertools
import json
import stat
from pathlib import Path

import pytest

from cli_support import assert_clean_error, invoke
from site_copies import copy_site
from smartlock import crypto
from smartlock.admin import create_site
from smartlock.broker import free_port
from smartlock.core.errors import ConfigError
from smartlock.key_rotation import (
    backend_rotation_under_way,
    finish_backend_key_rotation,
    start_backend_key_rotation,
)
from smartlock.site import BACKEND_USER, Site, write_private, write_public

pytestmark = pytest.mark.usefixtures("cli_isolated")


@pytest.fixture(scope="module")
def new_keys() -> list[crypto.PrivateKey]:
    """The keys rotations hand out, made once: RSA key generation is slow."""
    return [crypto.generate_private_key() for _ in range(2)]


@pytest.fixture(scope="module")
def staged_key() -> crypto.PrivateKey:
    """The key a start cut short left staged: not one a start would make."""
    return crypto.generate_private_key()


@pytest.fixture(autouse=True)
def _new_keys_made_in_advance(
    monkeypatch: pytest.MonkeyPatch, new_keys: list[crypto.PrivateKey]
) -> None:
    """Each rotation's new key is the next of ``new_keys`` (then the first again)."""
    handed_out = itertools.cycle(new_keys)
    monkeypatch.setattr(crypto, "generate_private_key", lambda: next(handed_out))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return create_site(
        tmp_path_factory.mktemp("template") / "site",
        locks=["lock_01"],
        owners=["owner"],
        broker_port=free_port(),
    )


@pytest.fixture(scope="module")
def old_key(template: Site) -> crypto.PrivateKey:
    return template.private_key(BACKEND_USER)


@pytest.fixture
def site(template: Site, tmp_path: Path) -> Site:
    """A copy of the template that the test may change."""
    return copy_site(template, tmp_path / "site")


def _paths(site: Site) -> dict[str, Path]:
    private = site.private_key_path(BACKEND_USER)
    return {
        "private": private,
        "staged": private.with_name("backend.key.next"),
        "previous private": site.previous_private_key_path(BACKEND_USER),
        "public": site.public_key_path(BACKEND_USER),
        "previous public": site.previous_public_key_path(BACKEND_USER),
        "retired": site.retired_backend_key_path,
    }


def _files(site: Site) -> dict[str, bytes | None]:
    """The backend's key files, None for a missing one."""
    return {
        name: path.read_bytes() if path.exists() else None for name, path in _paths(site).items()
    }


def _pem(key: crypto.PrivateKey) -> bytes:
    return crypto.private_key_to_pem(key)


def _public_pem(key: crypto.PrivateKey) -> bytes:
    return crypto.public_key_to_pem(key.public_key())


def _fingerprint(key: crypto.PrivateKey) -> str:
    return crypto.public_key_fingerprint(key.public_key())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _the_key_files_of_a_finished_start(
    old: crypto.PrivateKey, new: crypto.PrivateKey
) -> dict[str, bytes | None]:
    return {
        "private": _pem(new),
        "staged": None,
        "previous private": _pem(old),
        "public": _public_pem(new),
        "previous public": _public_pem(old),
        "retired": None,
    }


# --- start ---------------------------------------------------------------------------------------


def test_start_sets_the_old_pair_aside_and_puts_the_new_one_in_place(
    site: Site, old_key: crypto.PrivateKey, new_keys: list[crypto.PrivateKey]
) -> None:
    assert _files(site)["private"] == _pem(old_key)

    start_backend_key_rotation(site)

    assert _files(site) == _the_key_files_of_a_finished_start(old_key, new_keys[0])


def test_start_returns_the_previous_and_the_new_fingerprint(
    site: Site, old_key: crypto.PrivateKey, new_keys: list[crypto.PrivateKey]
) -> None:
    assert start_backend_key_rotation(site) == (
        _fingerprint(old_key),
        _fingerprint(new_keys[0]),
    )


def test_start_writes_private_keys_0600_and_public_keys_0644(site: Site) -> None:
    start_backend_key_rotation(site)

    paths = _paths(site)
    assert _mode(paths["private"]) == 0o600
    assert _mode(paths["previous private"]) == 0o600
    assert _mode(paths["public"]) == 0o644
    assert _mode(paths["previous public"]) == 0o644


def test_the_private_key_in_place_matches_the_published_key(site: Site) -> None:
    start_backend_key_rotation(site)

    assert _public_pem(site.private_key(BACKEND_USER)) == _paths(site)["public"].read_bytes()


def test_start_removes_the_key_the_last_finished_rotation_retired(
    site: Site, new_keys: list[crypto.PrivateKey]
) -> None:
    start_backend_key_rotation(site)
    finish_backend_key_rotation(site)
    assert _paths(site)["retired"].exists()

    start_backend_key_rotation(site)

    assert _files(site) == _the_key_files_of_a_finished_start(new_keys[0], new_keys[1])


def test_a_rotation_is_under_way_from_its_start_to_its_finish(site: Site) -> None:
    assert not backend_rotation_under_way(site)
    start_backend_key_rotation(site)
    assert backend_rotation_under_way(site)
    finish_backend_key_rotation(site)
    assert not backend_rotation_under_way(site)


def test_a_second_start_is_refused_while_a_rotation_is_under_way_and_changes_nothing(
    site: Site,
) -> None:
    start_backend_key_rotation(site)
    before = _files(site)

    with pytest.raises(ConfigError, match=r"under way: finish it first"):
        start_backend_key_rotation(site)

    assert _files(site) == before


def test_a_start_that_cannot_read_the_backend_key_is_a_config_error(site: Site) -> None:
    _paths(site)["private"].write_bytes(b"not a key")

    with pytest.raises(ConfigError, match="the backend's key"):
        start_backend_key_rotation(site)

    assert not backend_rotation_under_way(site)


# --- a start cut short ---------------------------------------------------------------------------


def _cut_start(site: Site, old: crypto.PrivateKey, staged: crypto.PrivateKey, steps: int) -> None:
    """What a start killed after its first ``steps`` writes leaves (the staged key first)."""
    paths = _paths(site)
    writes = [
        lambda: write_private(paths["staged"], _pem(staged)),
        lambda: write_public(paths["previous public"], _public_pem(old)),
        lambda: write_public(paths["public"], _public_pem(staged)),
        lambda: write_private(paths["previous private"], _pem(old)),
    ]
    for write in writes[:steps]:
        write()


@pytest.mark.parametrize(
    "steps",
    [1, 2, 3, 4],
    ids=["staged", "+previous-public", "+new-public", "+previous-private"],
)
def test_a_start_cut_after_the_staged_key_is_completed_with_it_by_the_next_start(
    site: Site, old_key: crypto.PrivateKey, staged_key: crypto.PrivateKey, steps: int
) -> None:
    _cut_start(site, old_key, staged_key, steps)

    fingerprints = start_backend_key_rotation(site)

    assert fingerprints == (_fingerprint(old_key), _fingerprint(staged_key))
    assert _files(site) == _the_key_files_of_a_finished_start(old_key, staged_key)


def test_a_completed_start_leaves_the_private_key_matching_the_published_one(
    site: Site, old_key: crypto.PrivateKey, staged_key: crypto.PrivateKey
) -> None:
    _cut_start(site, old_key, staged_key, 3)
    start_backend_key_rotation(site)

    assert _public_pem(site.private_key(BACKEND_USER)) == _paths(site)["public"].read_bytes()


def test_a_start_cut_after_the_old_key_was_set_aside_counts_as_under_way(
    site: Site, old_key: crypto.PrivateKey, staged_key: crypto.PrivateKey
) -> None:
    _cut_start(site, old_key, staged_key, 4)

    assert backend_rotation_under_way(site)


def test_a_damaged_staged_key_is_a_config_error_and_changes_nothing(site: Site) -> None:
    _paths(site)["staged"].write_bytes(b"half a key")
    before = _files(site)

    with pytest.raises(ConfigError, match="the backend's key"):
        start_backend_key_rotation(site)

    assert _files(site) == before


# --- finish --------------------------------------------------------------------------------------


def test_finish_retires_the_old_key_and_deletes_the_previous_pair(
    site: Site, old_key: crypto.PrivateKey, new_keys: list[crypto.PrivateKey]
) -> None:
    start_backend_key_rotation(site)

    retired = finish_backend_key_rotation(site)

    assert retired == _fingerprint(old_key)
    assert _files(site) == {
        "private": _pem(new_keys[0]),
        "staged": None,
        "previous private": None,
        "public": _public_pem(new_keys[0]),
        "previous public": None,
        "retired": _public_pem(old_key),
    }
    assert _mode(_paths(site)["retired"]) == 0o644


def test_finish_with_nothing_under_way_is_refused_and_changes_nothing(site: Site) -> None:
    before = _files(site)

    with pytest.raises(ConfigError, match="no rotation of the backend's key is under way"):
        finish_backend_key_rotation(site)

    assert _files(site) == before


def test_a_second_finish_is_refused(site: Site) -> None:
    start_backend_key_rotation(site)
    finish_backend_key_rotation(site)

    with pytest.raises(ConfigError, match="no rotation of the backend's key is under way"):
        finish_backend_key_rotation(site)


@pytest.mark.parametrize("steps", [1, 4], ids=["staged", "+previous-private"])
def test_finish_is_refused_while_a_staged_key_is_left_and_changes_nothing(
    site: Site, old_key: crypto.PrivateKey, staged_key: crypto.PrivateKey, steps: int
) -> None:
    _cut_start(site, old_key, staged_key, steps)
    before = _files(site)

    with pytest.raises(ConfigError, match="run 'smartlock rotate backend-key' again"):
        finish_backend_key_rotation(site)

    assert _files(site) == before


def test_a_finish_cut_after_its_first_deletion_is_completed_by_the_next_finish(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_backend_key_rotation(site)
    unlink = Path.unlink
    deleted: list[str] = []

    def cut_at_the_second_deletion(path: Path, missing_ok: bool = False) -> None:
        deleted.append(path.name)
        if len(deleted) == 2:
            raise KeyboardInterrupt("power cut")
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", cut_at_the_second_deletion)
    with pytest.raises(KeyboardInterrupt):
        finish_backend_key_rotation(site)
    monkeypatch.setattr(Path, "unlink", unlink)

    finish_backend_key_rotation(site)

    files = _files(site)
    assert files["previous private"] is None
    assert files["previous public"] is None


# --- smartlock rotate backend-key ----------------------------------------------------------------


def _rotations_audited(site: Site) -> list[tuple[object, ...]]:
    result = invoke(site, "audit", "--json")
    assert result.exit_code == 0, result.output
    return [
        (entry["who"], entry["lock"], entry["channel"], entry["result"], entry["reason"])
        for entry in json.loads(result.stdout)
        if entry["action"] == "backend_key_rotate"
    ]


def test_rotate_backend_key_prints_the_new_and_previous_fingerprints(
    site: Site, old_key: crypto.PrivateKey, new_keys: list[crypto.PrivateKey]
) -> None:
    result = invoke(site, "rotate", "backend-key")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"New backend key {_fingerprint(new_keys[0])} (was {_fingerprint(old_key)}).",
        "The running backend signs with it from its next tick and tells every lock and user "
        "device to trust it; the previous key is still trusted until "
        "'smartlock rotate backend-key --finish'.",
    ]
    assert result.stderr == ""
    assert backend_rotation_under_way(site)


def test_rotate_backend_key_finish_names_the_retired_key(
    site: Site, old_key: crypto.PrivateKey
) -> None:
    assert invoke(site, "rotate", "backend-key").exit_code == 0

    result = invoke(site, "rotate", "backend-key", "--finish")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Rotation of the backend's key finished: {_fingerprint(old_key)} is retired; the "
        "running backend tells every device to drop it.\n"
    )
    assert not backend_rotation_under_way(site)


def test_rotate_backend_key_is_audited_with_both_fingerprints_then_the_retired_one(
    site: Site, old_key: crypto.PrivateKey, new_keys: list[crypto.PrivateKey]
) -> None:
    invoke(site, "rotate", "backend-key")
    invoke(site, "rotate", "backend-key", "--finish")

    old, new = _fingerprint(old_key), _fingerprint(new_keys[0])
    assert _rotations_audited(site) == [
        ("", "", "admin", "info", f"{old} -> {new}"),
        ("", "", "admin", "info", f"{old} retired"),
    ]


def test_rotate_backend_key_twice_is_a_clear_error_naming_the_finish_command(
    site: Site,
) -> None:
    assert invoke(site, "rotate", "backend-key").exit_code == 0

    result = invoke(site, "rotate", "backend-key")

    assert_clean_error(result, "(smartlock rotate backend-key --finish)", one_line=True)
    assert len(_rotations_audited(site)) == 1


def test_rotate_backend_key_finish_with_nothing_under_way_is_a_clear_error(site: Site) -> None:
    result = invoke(site, "rotate", "backend-key", "--finish")

    assert_clean_error(result, "no rotation of the backend's key is under way", one_line=True)
    assert _rotations_audited(site) == []


def test_rotate_backend_key_finish_after_a_cut_start_is_a_clear_error_naming_the_start(
    site: Site, old_key: crypto.PrivateKey, staged_key: crypto.PrivateKey
) -> None:
    _cut_start(site, old_key, staged_key, 2)

    result = invoke(site, "rotate", "backend-key", "--finish")

    assert_clean_error(
        result, "run 'smartlock rotate backend-key' again to complete it", one_line=True
    )
    assert _rotations_audited(site) == []


def test_rotate_backend_key_after_a_cut_start_completes_it_and_is_audited(
    site: Site, old_key: crypto.PrivateKey, staged_key: crypto.PrivateKey
) -> None:
    _cut_start(site, old_key, staged_key, 4)

    result = invoke(site, "rotate", "backend-key")

    assert result.exit_code == 0, result.output
    old, staged = _fingerprint(old_key), _fingerprint(staged_key)
    assert f"New backend key {staged} (was {old})." in result.stdout
    assert _rotations_audited(site) == [("", "", "admin", "info", f"{old} -> {staged}")]
