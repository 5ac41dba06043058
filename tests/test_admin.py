"""The management layer keeps the store and the site in step, and leaves a trace of every change."""

from __future__ import annotations

import shutil
import zoneinfo
from pathlib import Path

import pytest

from smartlock import admin
from smartlock.broker import free_port
from smartlock.core.errors import ConfigError, StoreError
from smartlock.core.roles import Role
from smartlock.site import Site


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return admin.create_site(
        tmp_path_factory.mktemp("template") / "site",
        locks=["lock_01"],
        owners=["owner"],
        guests=["guest_01"],
        broker_port=free_port(),
    )


@pytest.fixture
def site(template: Site, tmp_path: Path) -> Site:
    shutil.copytree(template.root, tmp_path / "site", symlinks=True)
    return Site.load(tmp_path / "site")


def _admin_actions(site: Site) -> list[tuple[str, str, str, str]]:
    with admin.open_store(site) as store:
        return [
            (e.record.action, e.record.who, e.record.lock_id, e.record.reason)
            for e in store.audit_entries()
            if e.record.channel == "admin"
        ]


def test_every_management_action_is_in_the_audit_log(site: Site) -> None:
    site, _, _ = admin.add_user(site, "guest_02", Role.GUEST)
    site, _, _ = admin.add_lock(site, "lock_02")
    granted = admin.grant_pass(site, "guest_02", "lock_02", valid_until="+1h")
    admin.revoke_pass(site, granted.pass_id)
    admin.reset_lock(site, "lock_02")
    admin.remove_user(site, "guest_02")
    assert _admin_actions(site) == [
        ("user_add", "guest_02", "", "guest"),
        ("lock_add", "", "lock_02", ""),
        ("pass_grant", "guest_02", "lock_02", f"pass {granted.pass_id}"),
        ("pass_revoke", "guest_02", "lock_02", f"pass {granted.pass_id}"),
        ("lock_reset", "", "lock_02", "command key epoch 2"),
        ("user_remove", "guest_02", "", "passes revoked: 0"),
    ]
    with admin.open_store(site) as store:
        assert store.verify_audit() is None


def test_the_last_owner_cannot_be_removed(site: Site) -> None:
    with pytest.raises(ConfigError, match="last owner"):
        admin.remove_user(site, "owner")
    site, _, _ = admin.add_user(site, "owner_2", Role.OWNER)
    site, _, _ = admin.remove_user(site, "owner")
    assert "owner" not in site.users


@pytest.mark.parametrize("name", ["lock_01", "backend", "Bad Name"])
def test_a_user_name_the_site_cannot_take_leaves_no_trace(site: Site, name: str) -> None:
    with pytest.raises(ConfigError):
        admin.add_user(site, name, Role.GUEST)
    with admin.open_store(site) as store:
        assert store.get_user(name) is None
    assert Site.load(site.root).users == site.users


def test_a_lock_id_that_is_a_user_is_refused_before_the_store_changes(site: Site) -> None:
    with pytest.raises(ConfigError, match="already a user"):
        admin.add_lock(site, "guest_01")
    with admin.open_store(site) as store:
        assert store.get_lock("guest_01") is None


def test_adding_an_existing_user_is_a_store_error_and_changes_nothing(site: Site) -> None:
    with pytest.raises(StoreError, match="already exists"):
        admin.add_user(site, "guest_01", Role.RESIDENT)
    with admin.open_store(site) as store:
        user = store.get_user("guest_01")
    assert user is not None and user.role is Role.GUEST


@pytest.mark.parametrize(
    ("text", "expected"),
    [("now", 1000), ("+30m", 2800), ("+2h", 8200), ("+1d", 87400)],
)
def test_relative_times_are_read_from_now(text: str, expected: int) -> None:
    assert admin.parse_when(text, zoneinfo.ZoneInfo("UTC"), now=1000) == expected


def test_an_unreadable_time_says_what_it_accepts(site: Site) -> None:
    with pytest.raises(ConfigError, match=r"'now', '\+2h'"):
        admin.grant_pass(site, "guest_01", "lock_01", valid_from="tomorrow")


@pytest.mark.parametrize("uses", [0, 70_000])
def test_use_counts_outside_what_a_key_can_carry_are_refused(site: Site, uses: int) -> None:
    with pytest.raises(ConfigError, match="--uses"):
        admin.grant_pass(
            site, "guest_01", "lock_01", valid_from="+40d", valid_until="+41d", max_uses=uses
        )


def test_a_new_site_refuses_a_database_that_holds_another_site(tmp_path: Path) -> None:
    """Its audit log would become unverifiable: init would make a new audit key."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    admin.create_site(
        tmp_path / "first", locks=["lock_01"], owners=["owner"], db=db, broker_port=free_port()
    )
    with pytest.raises(ConfigError, match="already holds a site"):
        admin.create_site(
            tmp_path / "second", locks=["lock_01"], owners=["owner"], db=db, broker_port=free_port()
        )
    assert not (tmp_path / "second").exists()


def test_a_mistyped_database_is_refused_not_created(site: Site, tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    with (
        pytest.raises(ConfigError, match="no database at"),
        admin.open_store(site, f"sqlite:///{typo}"),
    ):
        pass
    assert not typo.exists()


@pytest.mark.parametrize("text", ["+9999999999d", "1900-01-01T00:00", "2200-01-01T00:00"])
def test_times_a_message_cannot_carry_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        admin.parse_when(text, zoneinfo.ZoneInfo("UTC"), now=1000)


def test_a_user_whose_key_pair_cannot_be_made_is_not_left_in_the_store(site: Site) -> None:
    (site.root / "users").mkdir(exist_ok=True)
    (site.root / "users" / "gina").write_text("in the way")  # a file where her directory goes
    with pytest.raises(FileExistsError):
        admin.add_user(site, "gina", Role.GUEST)
    with admin.open_store(site) as store:
        user = store.get_user("gina")
    assert user is None or not user.active
    (site.root / "users" / "gina").unlink()
    site, record, _ = admin.add_user(site, "gina", Role.GUEST)  # a retry works
    assert record.active and "gina" in site.users


def test_a_lock_add_that_stopped_half_way_is_finished_by_running_it_again(site: Site) -> None:
    (site.root / "locks").mkdir(exist_ok=True)
    (site.root / "locks" / "lock_02").write_text("in the way")
    with pytest.raises(FileExistsError):
        admin.add_lock(site, "lock_02")
    (site.root / "locks" / "lock_02").unlink()
    site, record, _ = admin.add_lock(site, "lock_02")
    assert record.lock_id == "lock_02" and "lock_02" in site.locks
    assert site.private_key_path("lock_02").exists()
