"""smartlock.key_rotation, RotatingKey and ``smartlock rotate lock-key``: a lock's RSA key pair
replaced with an overlap, on a site provisioned in a temporary directory.

Creating a site's keys takes about a second, so one site is made per module and copied for
every test (each test rotates keys).  The backend's side of the overlap (republishing the
command key, accepting events signed with the previous key) is covered end to end.
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
from smartlock.adapters.key_files import RotatingKey
from smartlock.admin import create_site
from smartlock.broker import free_port
from smartlock.core.errors import ConfigError
from smartlock.key_rotation import (
    finish_lock_key_rotation,
    rotation_under_way,
    start_lock_key_rotation,
)
from smartlock.site import Site, write_private, write_public

pytestmark = pytest.mark.usefixtures("cli_isolated")

LOCK = "lock_01"
OTHER_LOCK = "lock_02"


@pytest.fixture(scope="module")
def new_keys() -> list[crypto.PrivateKey]:
    """The keys rotations hand out, made once: RSA key generation is slow."""
    return [crypto.generate_private_key() for _ in range(2)]


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
        locks=[LOCK, OTHER_LOCK],
        owners=["owner"],
        broker_port=free_port(),
    )


@pytest.fixture
def site(template: Site, tmp_path: Path) -> Site:
    """A copy of the template that the test may change."""
    return copy_site(template, tmp_path / "site")


def _key_files(site: Site, lock_id: str = LOCK) -> dict[str, bytes | None]:
    """The lock's current and previous key files, None for a missing one."""
    paths = {
        "private": site.private_key_path(lock_id),
        "public": site.public_key_path(lock_id),
        "previous private": site.previous_private_key_path(lock_id),
        "previous public": site.previous_public_key_path(lock_id),
    }
    return {name: path.read_bytes() if path.exists() else None for name, path in paths.items()}


def _fingerprint_of_file(path: Path) -> str:
    return crypto.public_key_fingerprint(crypto.load_public_key(path.read_bytes()))


def _fingerprint(key: crypto.PrivateKey) -> str:
    return crypto.public_key_fingerprint(key.public_key())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leave_a_crashed_start(site: Site) -> None:
    """What a start interrupted before the new key was written leaves: the previous pair is a
    copy of the current one."""
    write_public(site.previous_public_key_path(LOCK), site.public_key_path(LOCK).read_bytes())
    write_private(site.previous_private_key_path(LOCK), site.private_key_path(LOCK).read_bytes())


# --- start ---------------------------------------------------------------------------------------


def test_start_keeps_the_old_pair_as_the_previous_one(site: Site) -> None:
    before = _key_files(site)
    start_lock_key_rotation(site, LOCK)
    after = _key_files(site)
    assert after["previous private"] == before["private"]
    assert after["previous public"] == before["public"]


def test_start_writes_a_new_matching_pair(site: Site) -> None:
    before = _key_files(site)
    start_lock_key_rotation(site, LOCK)
    after = _key_files(site)
    assert after["private"] != before["private"]
    assert after["public"] != before["public"]
    assert _fingerprint(site.private_key(LOCK)) == _fingerprint_of_file(site.public_key_path(LOCK))


def test_start_writes_private_keys_0600_and_public_keys_0644(site: Site) -> None:
    start_lock_key_rotation(site, LOCK)
    assert _mode(site.private_key_path(LOCK)) == 0o600
    assert _mode(site.previous_private_key_path(LOCK)) == 0o600
    assert _mode(site.public_key_path(LOCK)) == 0o644
    assert _mode(site.previous_public_key_path(LOCK)) == 0o644


def test_start_returns_the_fingerprints_of_the_previous_and_new_public_keys(site: Site) -> None:
    old = _fingerprint_of_file(site.public_key_path(LOCK))
    previous, new = start_lock_key_rotation(site, LOCK)
    assert previous == old == _fingerprint_of_file(site.previous_public_key_path(LOCK))
    assert new == _fingerprint_of_file(site.public_key_path(LOCK))
    assert new != previous


def test_start_leaves_the_other_locks_keys_alone(site: Site) -> None:
    before = _key_files(site, OTHER_LOCK)
    start_lock_key_rotation(site, LOCK)
    assert _key_files(site, OTHER_LOCK) == before
    assert rotation_under_way(site, LOCK)
    assert not rotation_under_way(site, OTHER_LOCK)


def test_second_start_is_refused_while_a_rotation_is_under_way(site: Site) -> None:
    start_lock_key_rotation(site, LOCK)
    during = _key_files(site)
    with pytest.raises(ConfigError, match=rf"under way.*rotate lock-key {LOCK} --finish"):
        start_lock_key_rotation(site, LOCK)
    assert _key_files(site) == during


@pytest.mark.parametrize("name", ["lock_03", "owner", "backend"])
def test_start_is_refused_for_anything_but_a_lock_of_the_site(site: Site, name: str) -> None:
    with pytest.raises(ConfigError, match=rf"no lock '{name}'.*locks: {LOCK}, {OTHER_LOCK}"):
        start_lock_key_rotation(site, name)
    assert not any(site.root.rglob("*.previous"))


# --- finish --------------------------------------------------------------------------------------


def test_finish_deletes_the_previous_pair_and_keeps_the_new_one(site: Site) -> None:
    start_lock_key_rotation(site, LOCK)
    during = _key_files(site)
    finish_lock_key_rotation(site, LOCK)
    assert _key_files(site) == {
        "private": during["private"],
        "public": during["public"],
        "previous private": None,
        "previous public": None,
    }
    assert not rotation_under_way(site, LOCK)


def test_second_finish_is_refused(site: Site) -> None:
    start_lock_key_rotation(site, LOCK)
    finish_lock_key_rotation(site, LOCK)
    with pytest.raises(ConfigError, match=f"no rotation of {LOCK}'s key is under way"):
        finish_lock_key_rotation(site, LOCK)


def test_finish_without_a_start_is_refused_and_changes_nothing(site: Site) -> None:
    before = _key_files(site)
    with pytest.raises(ConfigError, match=f"no rotation of {LOCK}'s key is under way"):
        finish_lock_key_rotation(site, LOCK)
    assert _key_files(site) == before


def test_finish_for_an_unknown_lock_is_refused(site: Site) -> None:
    with pytest.raises(ConfigError, match="no lock 'lock_03'"):
        finish_lock_key_rotation(site, "lock_03")


def test_a_new_rotation_can_start_once_the_last_one_is_finished(site: Site) -> None:
    _, first = start_lock_key_rotation(site, LOCK)
    finish_lock_key_rotation(site, LOCK)
    previous, second = start_lock_key_rotation(site, LOCK)
    assert previous == first != second
    assert _fingerprint_of_file(site.public_key_path(LOCK)) == second


# --- crash leftovers -----------------------------------------------------------------------------


def test_a_start_interrupted_before_the_new_key_counts_as_under_way(site: Site) -> None:
    _leave_a_crashed_start(site)
    assert rotation_under_way(site, LOCK)
    with pytest.raises(ConfigError, match="under way"):
        start_lock_key_rotation(site, LOCK)


def test_a_start_interrupted_before_the_new_key_is_finished_cleanly(site: Site) -> None:
    before = _key_files(site)
    _leave_a_crashed_start(site)
    finish_lock_key_rotation(site, LOCK)
    assert _key_files(site) == before  # the current pair, untouched; no previous pair
    assert not rotation_under_way(site, LOCK)
    previous, new = start_lock_key_rotation(site, LOCK)  # and a rotation can start again
    assert previous == _fingerprint_of_file(site.previous_public_key_path(LOCK)) != new


def test_a_start_interrupted_after_copying_only_the_public_key_can_be_run_again(
    site: Site,
) -> None:
    old_public = site.public_key_path(LOCK).read_bytes()
    write_public(site.previous_public_key_path(LOCK), old_public)
    assert not rotation_under_way(site, LOCK)
    start_lock_key_rotation(site, LOCK)
    assert site.previous_public_key_path(LOCK).read_bytes() == old_public
    assert rotation_under_way(site, LOCK)


def test_a_start_interrupted_before_the_new_public_key_ends_with_a_matching_pair(
    site: Site,
) -> None:
    old_private = site.private_key_path(LOCK).read_bytes()
    old_public = site.public_key_path(LOCK).read_bytes()
    write_public(site.previous_public_key_path(LOCK), old_public)
    write_private(site.previous_private_key_path(LOCK), old_private)
    new = crypto.generate_private_key()
    write_private(site.private_key_path(LOCK), crypto.private_key_to_pem(new))  # the crash
    with pytest.raises(ConfigError, match="under way"):
        start_lock_key_rotation(site, LOCK)  # refused, but the public half is completed
    assert _fingerprint(site.private_key(LOCK)) == _fingerprint_of_file(site.public_key_path(LOCK))
    finish_lock_key_rotation(site, LOCK)
    assert _fingerprint(site.private_key(LOCK)) == _fingerprint_of_file(site.public_key_path(LOCK))


# --- RotatingKey: the lock agent's view -----------------------------------------------------------


def _rotating_key(site: Site) -> RotatingKey:
    return RotatingKey(site.private_key_path(LOCK), site.previous_private_key_path(LOCK))


def test_rotating_key_reads_the_current_key_and_no_previous_one(site: Site) -> None:
    key = _rotating_key(site)
    assert _fingerprint(key.current) == _fingerprint_of_file(site.public_key_path(LOCK))
    assert key.previous == ()


def test_rotating_key_refresh_is_false_when_nothing_changed(site: Site) -> None:
    key = _rotating_key(site)
    current = key.current
    assert key.refresh() is False
    assert key.current is current


def test_rotating_key_refresh_after_start_gives_the_new_key_and_the_previous_one(
    site: Site,
) -> None:
    key = _rotating_key(site)
    previous, new = start_lock_key_rotation(site, LOCK)
    assert key.refresh() is True
    assert _fingerprint(key.current) == new
    assert [_fingerprint(k) for k in key.previous] == [previous]
    assert key.refresh() is False


def test_rotating_key_refresh_after_finish_drops_the_previous_key(site: Site) -> None:
    key = _rotating_key(site)
    _, new = start_lock_key_rotation(site, LOCK)
    key.refresh()
    finish_lock_key_rotation(site, LOCK)
    assert key.refresh() is True
    assert _fingerprint(key.current) == new
    assert key.previous == ()
    assert key.refresh() is False


def test_rotating_key_made_during_the_overlap_holds_both_keys(site: Site) -> None:
    previous, new = start_lock_key_rotation(site, LOCK)
    key = _rotating_key(site)
    assert _fingerprint(key.current) == new
    assert [_fingerprint(k) for k in key.previous] == [previous]


def test_rotating_key_of_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        RotatingKey(tmp_path / "lock.key", tmp_path / "lock.key.previous")


# --- the command ---------------------------------------------------------------------------------


def _rotations_audited(site: Site) -> list[dict[str, object]]:
    result = invoke(site, "audit", "--json")
    assert result.exit_code == 0, result.output
    return [entry for entry in json.loads(result.stdout) if entry["action"] == "lock_key_rotate"]


def test_rotate_lock_key_prints_the_new_and_previous_fingerprints(site: Site) -> None:
    old = _fingerprint_of_file(site.public_key_path(LOCK))
    result = invoke(site, "rotate", "lock-key", LOCK)
    assert result.exit_code == 0, result.output
    new = _fingerprint_of_file(site.public_key_path(LOCK))
    assert result.stdout.splitlines() == [
        f"New key pair for {LOCK}: {new} (was {old}).",
        "The lock and the backend use it from their next message; the previous key is still "
        f"accepted until 'smartlock rotate lock-key {LOCK} --finish'.",
    ]
    assert result.stderr == ""
    assert rotation_under_way(site, LOCK)


def test_rotate_lock_key_finish_says_the_previous_pair_is_deleted(site: Site) -> None:
    assert invoke(site, "rotate", "lock-key", LOCK).exit_code == 0
    result = invoke(site, "rotate", "lock-key", LOCK, "--finish")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Rotation of {LOCK}'s key finished: the previous key pair is deleted.\n"
    )
    assert not rotation_under_way(site, LOCK)


def test_rotate_lock_key_is_audited_with_both_fingerprints_then_the_finish(site: Site) -> None:
    old = _fingerprint_of_file(site.public_key_path(LOCK))
    invoke(site, "rotate", "lock-key", LOCK)
    new = _fingerprint_of_file(site.public_key_path(LOCK))
    invoke(site, "rotate", "lock-key", LOCK, "--finish")
    entries = _rotations_audited(site)
    assert [(e["lock"], e["channel"], e["result"], e["reason"]) for e in entries] == [
        (LOCK, "admin", "info", f"{old} -> {new}"),
        (LOCK, "admin", "info", "previous key deleted"),
    ]


def test_rotate_lock_key_of_an_unknown_lock_is_a_clear_error(site: Site) -> None:
    result = invoke(site, "rotate", "lock-key", "lock_03")
    assert_clean_error(
        result, f"no lock 'lock_03' in site {site.root} (locks: {LOCK}, ", one_line=True
    )
    assert _rotations_audited(site) == []


def test_rotate_lock_key_finish_with_nothing_under_way_is_a_clear_error(site: Site) -> None:
    result = invoke(site, "rotate", "lock-key", LOCK, "--finish")
    assert_clean_error(result, f"no rotation of {LOCK}'s key is under way", one_line=True)
    assert _rotations_audited(site) == []


def test_rotate_lock_key_twice_is_a_clear_error_naming_the_finish_command(site: Site) -> None:
    assert invoke(site, "rotate", "lock-key", LOCK).exit_code == 0
    result = invoke(site, "rotate", "lock-key", LOCK)
    assert_clean_error(result, f"(smartlock rotate lock-key {LOCK} --finish)", one_line=True)
    assert len(_rotations_audited(site)) == 1
