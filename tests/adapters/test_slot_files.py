"""smartlock.adapters.slot_files: the slot state and the last trial's outcome round-trip through
0600 files, and an update's wheel is unpacked whole into its slot -- or refused as
``bad_payload`` before anything is written when it could escape the slot or is not the agent."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from smartlock.adapters.slot_files import Outcome, SlotFiles
from smartlock.core.errors import ConfigError
from smartlock.core.release import UpdateRefused
from smartlock.core.update_slots import SlotState

FACTORY = (0, 1, 0)
AGENT = {
    "smartlock/__init__.py": b'__version__ = "1.1.0"\n',
    "smartlock/__main__.py": b"print('agent')\n",
    "smartlock/core/__init__.py": b"",
    "smartlock/core/policy.py": b"RULES = 1\n",
    "smartlock-1.1.0.dist-info/METADATA": b"Name: smartlock\n",
}


def wheel(
    files: dict[str, bytes] | None = None, *, extra: list[zipfile.ZipInfo] | None = None
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (AGENT if files is None else files).items():
            archive.writestr(name, data)
        for info in extra or []:
            archive.writestr(info, b"x")
    return buffer.getvalue()


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def files(tmp_path: Path) -> SlotFiles:
    return SlotFiles(tmp_path / "slots")


def refused(files: SlotFiles, payload: bytes) -> UpdateRefused:
    with pytest.raises(UpdateRefused) as caught:
        files.install_wheel("b", payload)
    assert caught.value.reason == "bad_payload"
    assert not files.slot_dir("b").exists()
    assert [path.name for path in files.root.iterdir()] == []  # nothing half-written is left
    return caught.value


# --- state and outcome ----------------------------------------------------------------------


def test_a_lock_that_never_updated_runs_the_factory_version_in_slot_a(files: SlotFiles) -> None:
    assert files.load_state(FACTORY) == SlotState("a", FACTORY, FACTORY)
    assert not files.state_path.exists()


def test_the_state_round_trips_through_a_private_file(files: SlotFiles) -> None:
    state = SlotState("a", FACTORY, FACTORY).start_trial((1, 1, 0), 1_800_000_000.0, 60)
    files.save_state(state)
    assert files.load_state(FACTORY) == state
    assert stat.S_IMODE(files.state_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.root.stat().st_mode) == 0o700


def test_a_damaged_state_is_a_config_error_naming_the_file(files: SlotFiles) -> None:
    files.root.mkdir()
    files.state_path.write_bytes(b'{"v": 1, "active": "c"}')
    with pytest.raises(ConfigError, match=r"slots\.json"):
        files.load_state(FACTORY)


def test_the_outcome_round_trips_and_is_cleared(files: SlotFiles) -> None:
    assert files.read_outcome() is None
    outcome = Outcome((1, 1, 0), "rolled_back", "exited", "exited with code 1 before reporting")
    files.write_outcome(outcome)
    assert files.read_outcome() == outcome
    assert Outcome.decode(outcome.encode()) == outcome
    assert stat.S_IMODE(files.outcome_path.stat().st_mode) == 0o600
    files.clear_outcome()
    assert files.read_outcome() is None
    files.clear_outcome()  # nothing to clear is fine


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v": 2, "version": "1.1.0", "step": "healthy", "reason": "", "detail": ""}',
        b'{"v": 1, "version": "1.1", "step": "healthy", "reason": "", "detail": ""}',
        b'{"v": 1, "version": "1.1.0", "step": "done", "reason": "", "detail": ""}',
        b'{"v": 1, "version": "1.1.0", "step": "rolled_back", "reason": "", "detail": ""}',
        b'{"v": 1, "version": "1.1.0", "step": "rolled_back", "reason": "why", "detail": ""}',
        b'{"v": 1, "version": "1.1.0", "step": "healthy", "reason": "", "detail": 3}',
        b'{"v": 1, "version": "1.1.0", "step": "healthy", "reason": ""}',
    ],
)
def test_a_damaged_outcome_is_a_config_error_naming_the_file(files: SlotFiles, data: bytes) -> None:
    files.root.mkdir()
    files.outcome_path.write_bytes(data)
    with pytest.raises(ConfigError, match=r"outcome\.json"):
        files.read_outcome()


def test_an_outcome_checks_itself() -> None:
    with pytest.raises(ValueError, match="one line"):
        Outcome((1, 1, 0), "rolled_back", "exited", "two\nlines")
    with pytest.raises(ValueError, match="does not fit"):
        Outcome((1, 1, 0), "healthy", "exited", "")


# --- installing a wheel ---------------------------------------------------------------------


def test_a_wheel_is_unpacked_into_its_slot_with_plain_modes(files: SlotFiles) -> None:
    assert not files.has_code("b")
    files.install_wheel("b", wheel())
    slot = files.slot_dir("b")
    assert tree(slot) == AGENT
    assert files.has_code("b")
    assert not files.has_code("a")
    for path in slot.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644)
    assert stat.S_IMODE(slot.stat().st_mode) == 0o755
    assert sorted(path.name for path in files.root.iterdir()) == ["b"]  # no staging left


def test_a_new_wheel_replaces_the_old_slot_completely(files: SlotFiles) -> None:
    files.install_wheel("b", wheel())
    newer = {
        "smartlock/__init__.py": b'__version__ = "1.2.0"\n',
        "smartlock/__main__.py": b"print('newer')\n",
    }
    files.install_wheel("b", wheel(newer))
    assert tree(files.slot_dir("b")) == newer


def test_a_refused_wheel_leaves_the_installed_slot_as_it_was(files: SlotFiles) -> None:
    files.install_wheel("b", wheel())
    with pytest.raises(UpdateRefused):
        files.install_wheel("b", b"garbage")
    assert tree(files.slot_dir("b")) == AGENT


def test_leftovers_of_an_interrupted_install_are_removed(files: SlotFiles) -> None:
    (files.root / ".b.new-dead").mkdir(parents=True)
    (files.root / ".b.new-dead" / "half").write_bytes(b"x")
    files.install_wheel("b", wheel())
    assert sorted(path.name for path in files.root.iterdir()) == ["b"]


def test_an_unknown_slot_is_a_programming_error(files: SlotFiles) -> None:
    with pytest.raises(ValueError, match="unknown slot"):
        files.slot_dir("../a")


def test_what_is_not_a_zip_is_refused(files: SlotFiles) -> None:
    refused(files, b"SECRET-CONTENT not a zip at all")
    refused(files, wheel()[:-30])  # truncated: the central directory is cut


def test_a_member_with_a_bad_crc_is_refused_and_its_content_not_quoted(
    files: SlotFiles,
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in {**AGENT, "smartlock/secret.py": b"SECRET-CONTENT" * 10}.items():
            archive.writestr(name, data)
    payload = buffer.getvalue().replace(b"SECRET-CONTENT" * 10, b"SECRET-CONTENX" * 10)
    error = refused(files, payload)
    assert "SECRET" not in str(error)
    assert "damaged" in str(error)


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd",
        "../outside.py",
        "smartlock/../../outside.py",
        "smartlock\\evil.py",
        "C:/evil.py",
        "C:evil.py",
        "smartlock//evil.py",
        "./smartlock/evil.py",
    ],
)
def test_a_member_that_could_leave_the_slot_is_refused(files: SlotFiles, name: str) -> None:
    info = zipfile.ZipInfo("placeholder")
    info.filename = name  # ZipInfo() would normalise some of these away
    error = refused(files, wheel(extra=[info]))
    assert "unsafe path" in str(error)


def test_a_symlink_member_is_refused(files: SlotFiles) -> None:
    link = zipfile.ZipInfo("smartlock/link.py")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    assert "symbolic link" in str(refused(files, wheel(extra=[link])))


def test_too_many_members_are_refused(files: SlotFiles) -> None:
    many = {**AGENT, **{f"smartlock/m{n}.py": b"" for n in range(5000)}}
    assert "more than 5000 members" in str(refused(files, wheel(many)))


def test_more_than_64_mib_uncompressed_is_refused(files: SlotFiles) -> None:
    bomb = {**AGENT, "smartlock/big.bin": bytes(64 * 1024 * 1024)}
    assert "64 MiB" in str(refused(files, wheel(bomb)))


def test_a_member_that_lies_about_its_size_is_refused(files: SlotFiles) -> None:
    payload = wheel({**AGENT, "smartlock/big.bin": bytes(100_000)})
    archive = zipfile.ZipFile(io.BytesIO(payload))
    assert archive.getinfo("smartlock/big.bin").file_size == 100_000
    # the central directory's size field (uncompressed, 4 bytes LE) says 100 bytes instead
    forged = payload.replace((100_000).to_bytes(4, "little"), (100).to_bytes(4, "little"))
    refused(files, forged)


@pytest.mark.parametrize("missing", ["smartlock/__init__.py", "smartlock/__main__.py"])
def test_a_wheel_without_the_agent_is_refused(files: SlotFiles, missing: str) -> None:
    others = {name: data for name, data in AGENT.items() if name != missing}
    assert missing in str(refused(files, wheel(others)))


def test_a_member_that_is_both_file_and_directory_is_refused(files: SlotFiles) -> None:
    assert "both" in str(refused(files, wheel({**AGENT, "smartlock/core": b"x"})))


def test_a_duplicate_member_is_refused(files: SlotFiles) -> None:
    duplicate = zipfile.ZipInfo("smartlock/__main__.py")
    with pytest.warns(UserWarning, match="Duplicate name"):
        payload = wheel(extra=[duplicate])
    assert "twice" in str(refused(files, payload))
