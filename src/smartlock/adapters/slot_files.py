"""A lock's two software slots on disk, beside its own files (``locks/<id>/slots/``)::

    slots/slots.json     the slot state (:mod:`smartlock.core.update_slots`), 0600
    slots/outcome.json   how the last trial ended, until the agent has reported it, 0600
    slots/a/, slots/b/   an unpacked agent wheel each (a slot without one runs the installed
                         package: the factory version)

Rules: a slot is replaced whole (unpacked beside it, then renamed into place), so it is never
half-written; a wheel is checked before anything is written (no path leaving the slot, no
symlink, no more than 5000 files or 64 MiB) and refused as ``bad_payload`` otherwise, with a
message that never quotes the payload's content.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from smartlock.core.errors import ConfigError
from smartlock.core.release import UpdateRefused, Version, parse_version, version_text
from smartlock.core.update_slots import SLOTS, SlotState, SlotStateError
from smartlock.site import fsync_directory, write_private

if TYPE_CHECKING:
    from smartlock.site import Site

RESTART_FOR_UPDATE = 75  # exit code of an agent that installed an update (EX_TEMPFAIL)
SUPERVISOR_FD_ENV = "SMARTLOCK_SUPERVISOR_FD"  # fd number of the agent's end of the socket
GRACE_ENV = "SMARTLOCK_UPDATE_GRACE_S"  # seconds a trial has to report healthy

STATE_FILE = "slots.json"
OUTCOME_FILE = "outcome.json"
OUTCOME_VERSION = 1
MAX_WHEEL_FILES = 5000
MAX_WHEEL_SIZE = 64 * 1024 * 1024  # uncompressed, all members together
REQUIRED_FILES = ("smartlock/__init__.py", "smartlock/__main__.py")
STEPS = ("healthy", "rolled_back")
REASONS = ("exited", "not_healthy", "interrupted")  # why a trial was rolled back
_CHUNK = 1024 * 1024
# what zipfile raises for a damaged archive or member (bad CRC, truncated, unknown method, ...)
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    ValueError,
    RuntimeError,  # an encrypted member
)


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, kept until the agent has reported it to the backend."""

    version: Version
    step: str  # "healthy" | "rolled_back"
    reason: str  # "" when healthy; one of REASONS when rolled back
    detail: str  # one human line, e.g. "exited with code 1 before reporting healthy"

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise ValueError(f"unknown step {self.step!r}")
        if (self.step == "healthy") != (self.reason == "") or (
            self.reason and self.reason not in REASONS
        ):
            raise ValueError(f"reason {self.reason!r} does not fit step {self.step}")
        if "\n" in self.detail or "\r" in self.detail:
            raise ValueError("the detail is one line")

    def encode(self) -> bytes:
        return json.dumps(
            {
                "v": OUTCOME_VERSION,
                "version": version_text(self.version),
                "step": self.step,
                "reason": self.reason,
                "detail": self.detail,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Outcome:
        try:
            fields = json.loads(data)
            if not isinstance(fields, dict) or fields.get("v") != OUTCOME_VERSION:
                raise ValueError("unknown outcome version")
            texts = [fields[key] for key in ("version", "step", "reason", "detail")]
            if not all(isinstance(text, str) for text in texts):
                raise TypeError("fields must be strings")
            version, step, reason, detail = texts
            return cls(parse_version(version), step, reason, detail)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise ConfigError(f"the update outcome is damaged: {exc}") from None


class SlotFiles:
    """The slot state, the last trial's outcome and the two slots of one lock."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_lock(cls, site: Site, lock_id: str) -> SlotFiles:
        """Raises ConfigError for a lock the site does not have."""
        if lock_id not in site.locks:
            raise ConfigError(f"no lock {lock_id!r} in site {site.root}")
        return cls(site.identity_dir(lock_id) / "slots")

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def outcome_path(self) -> Path:
        return self.root / OUTCOME_FILE

    def slot_dir(self, slot: str) -> Path:
        if slot not in SLOTS:
            raise ValueError(f"unknown slot {slot!r}")
        return self.root / slot

    # --- state --------------------------------------------------------------------------------

    def load_state(self, factory_version: Version) -> SlotState:
        """The saved state; a lock that never installed an update runs slot a, the factory
        version."""
        data = self._read(self.state_path)
        if data is None:
            return SlotState("a", factory_version, factory_version)
        try:
            return SlotState.decode(data)
        except SlotStateError as exc:
            raise ConfigError(f"{self.state_path}: {exc}") from None

    def save_state(self, state: SlotState) -> None:
        self._make_root()
        write_private(self.state_path, state.encode())

    # --- outcome ------------------------------------------------------------------------------

    def write_outcome(self, outcome: Outcome) -> None:
        self._make_root()
        write_private(self.outcome_path, outcome.encode())

    def read_outcome(self) -> Outcome | None:
        data = self._read(self.outcome_path)
        if data is None:
            return None
        try:
            return Outcome.decode(data)
        except ConfigError as exc:
            raise ConfigError(f"{self.outcome_path}: {exc}") from None

    def clear_outcome(self) -> None:
        self.outcome_path.unlink(missing_ok=True)

    # --- slots --------------------------------------------------------------------------------

    def has_code(self, slot: str) -> bool:
        """Whether ``slot`` holds an unpacked agent (otherwise the installed package runs)."""
        return (self.slot_dir(slot) / "smartlock" / "__init__.py").is_file()

    def install_wheel(self, slot: str, wheel: bytes) -> None:
        """Unpack the agent's wheel into ``slot``, replacing what was there.

        Raises UpdateRefused("bad_payload") before anything is written for a wheel that is not
        a sound zip of the ``smartlock`` package (see the module's rules); an OSError is the
        disk's fault and leaves the slot as it was."""
        target = self.slot_dir(slot)
        self._make_root()
        self._remove_leftovers(slot)
        with _open_zip(wheel) as archive:
            members = _checked_members(archive)
            tag = secrets.token_hex(4)
            staging = self.root / f".{slot}.new-{tag}"
            try:
                _extract(archive, members, staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        old = self.root / f".{slot}.old-{tag}"
        if target.exists():
            target.rename(old)
        staging.rename(target)
        fsync_directory(self.root)
        shutil.rmtree(old, ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------------

    def _make_root(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _remove_leftovers(self, slot: str) -> None:
        """Half-unpacked or replaced copies of ``slot`` left by a crash or a power cut."""
        for pattern in (f".{slot}.new-*", f".{slot}.old-*"):
            for path in self.root.glob(pattern):
                shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _refuse(message: str) -> UpdateRefused:
    return UpdateRefused("bad_payload", f"the update's wheel is refused: {message}")


def _open_zip(wheel: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(wheel))
    except _ZIP_ERRORS:
        raise _refuse("it is not a zip archive, or a damaged one") from None


def _checked_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Every member, once the names, kinds and sizes are known to be safe to unpack."""
    members = archive.infolist()
    if len(members) > MAX_WHEEL_FILES:
        raise _refuse(f"more than {MAX_WHEEL_FILES} members")
    if sum(member.file_size for member in members) > MAX_WHEEL_SIZE:
        raise _refuse(f"more than {MAX_WHEEL_SIZE // 2**20} MiB uncompressed")
    files: set[str] = set()
    dirs: set[str] = set()
    for number, member in enumerate(members, 1):
        name = member.filename
        if (
            not name
            or name.startswith("/")
            or ".." in name
            or "\\" in name
            or "\0" in name
            or PureWindowsPath(name).drive
        ):
            raise _refuse(f"member {number} has an unsafe path")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise _refuse(f"member {number} is a symbolic link")
        parts = (name[:-1] if member.is_dir() else name).split("/")
        if any(part in ("", ".") for part in parts):
            raise _refuse(f"member {number} has an unsafe path")
        dirs.update("/".join(parts[:end]) for end in range(1, len(parts)))
        if member.is_dir():
            dirs.add("/".join(parts))
        elif name in files:
            raise _refuse(f"member {number} appears twice")
        else:
            files.add(name)
    if files & dirs:
        raise _refuse("a member is both a file and a directory")
    missing = [required for required in REQUIRED_FILES if required not in files]
    if missing:
        raise _refuse(f"it has no {' or '.join(missing)}")
    return members


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], staging: Path) -> None:
    """Write the checked members under ``staging``: files 0644, directories 0755, fsynced."""
    staging.mkdir(mode=0o755)
    staging.chmod(0o755)
    made = {staging}
    for number, member in enumerate(members, 1):
        path = staging.joinpath(*PurePosixPath(member.filename).parts)
        folder = path if member.is_dir() else path.parent
        _make_dirs(folder, made)
        if member.is_dir():
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, 0o644)
            _copy_member(archive, member, number, out)
            out.flush()
            os.fsync(fd)
    for folder in made:
        fsync_directory(folder)


def _make_dirs(folder: Path, made: set[Path]) -> None:
    missing: list[Path] = []
    while folder not in made:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o755)
        path.chmod(0o755)
        made.add(path)


def _copy_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, number: int, out: io.BufferedWriter
) -> None:
    """Copy one member; a damaged one (bad CRC, truncated) is the payload's fault, a failed
    write the disk's."""
    try:
        source = archive.open(member)
    except _ZIP_ERRORS:
        raise _refuse(f"member {number} is damaged") from None
    with source:
        while True:
            try:
                chunk = source.read(_CHUNK)
            except _ZIP_ERRORS:
                raise _refuse(f"member {number} is damaged") from None
            if not chunk:
                return
            out.write(chunk)
